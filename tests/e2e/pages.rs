//! Lists that grow come a page at a time (issue 15): through the real command line and the
//! real gRPC API, every row comes once, in order, the last page says so with an empty
//! `next_page_token`, and a forged token or one used with other filters is refused with
//! `PAGE_TOKEN_INVALID` naming `page_token`.

use haven_proto::admin::v1 as api;
use haven_proto::trust::CONTROLLER_TLS_NAME;
use haven_tests::*;
use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};
use tonic_types::StatusExt;

async fn staff_channel(home: &Home) -> Channel {
    let ca = std::fs::read_to_string(home.controller.data_dir.join("ca.pem")).unwrap();
    Endpoint::from_shared(home.controller.url.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(CONTROLLER_TLS_NAME),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    r.metadata_mut().insert("authorization", value);
    r
}

fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_refused_token(status: &tonic::Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "PAGE_TOKEN_INVALID");
    assert_eq!(info.domain, "haven.homes");
    let fields: Vec<&str> = details
        .bad_request()
        .expect("a BadRequest")
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["page_token"]);
}

#[test]
fn lists_come_a_page_at_a_time_and_a_forged_token_is_refused() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    // Twelve children across two homes (Amira Khan is the harness's), two with one name.
    for (home_name, name) in [
        ("Oak House", "Ben Ali"),
        ("Oak House", "Cara Doyle"),
        ("Elm House", "Dev Patel"),
        ("Oak House", "Eli Stone"),
        ("Elm House", "Fay Wood"),
        ("Oak House", "Gus Hart"),
        ("Elm House", "Hana Sato"),
        ("Oak House", "Ivy Reed"),
        ("Oak House", "Ben Ali"),
        ("Elm House", "Jon Cole"),
        ("Oak House", "Kai Moss"),
    ] {
        home.admin.ok(&[
            "child",
            "add",
            "--home",
            home_name,
            "--name",
            name,
            "--dob",
            "2013-02-03",
        ]);
    }

    // By default the command line fetches the whole list, as before.
    let whole = ids(&home.admin.json(&["child", "list"]));
    assert_eq!(whole.len(), 12);

    // A script pages by hand: five at a time, the token printed beside the rows.
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut args = vec!["child", "list", "--page-size", "5"];
        if !token.is_empty() {
            args.extend(["--page-token", token.as_str()]);
        }
        let page = home.admin.json(&args);
        let rows = ids(&page["children"]);
        assert!(rows.len() <= 5, "{page}");
        paged.extend(rows);
        pages += 1;
        token = page["next_page_token"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "URL-safe: {token}"
        );
        assert!(pages < 10, "paging did not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, whole, "every child once, in the same order");

    // In a table, the next page is offered in words.
    let table = home.admin.ok(&["child", "list", "--page-size", "2"]);
    assert!(table.contains("--page-token "), "{table}");

    // The command line refuses a made-up token in one line, saying what to do.
    let err = home
        .admin
        .fails(&["child", "list", "--page-token", "bm90LWEtdG9rZW4"]);
    assert!(err.contains("page token"), "{err}");
    assert!(err.contains("leave it out"), "{err}");

    // The same through gRPC, as any program would.
    let token = home.controller.first_token();
    runtime().block_on(async {
        let channel = staff_channel(&home).await;
        let mut children = api::child_service_client::ChildServiceClient::new(channel.clone());
        let mut seen = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = children
                .list_children(with_token(
                    &token,
                    api::ListChildrenRequest {
                        page_size: 4,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert!(page.children.len() <= 4);
            seen.extend(page.children.into_iter().map(|c| c.id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(seen, whole);

        // A child added between pages neither repeats nor hides anyone already listed.
        let first = children
            .list_children(with_token(
                &token,
                api::ListChildrenRequest {
                    page_size: 6,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let mut seen: Vec<String> = first.children.into_iter().map(|c| c.id).collect();
        let second_token = first.next_page_token.clone();
        home.admin.ok(&[
            "child",
            "add",
            "--home",
            "Oak House",
            "--name",
            "Zoe Quinn",
            "--dob",
            "2013-02-03",
        ]);
        let rest = children
            .list_children(with_token(
                &token,
                api::ListChildrenRequest {
                    page_size: 100,
                    page_token: second_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(rest.next_page_token.is_empty());
        seen.extend(rest.children.into_iter().map(|c| c.id));
        assert_eq!(seen.len(), 13, "the new child once, after the cursor");
        assert_eq!(seen[..12], whole[..]);

        // A forged token, and a real one used with other filters, are refused by reason.
        let status = children
            .list_children(with_token(
                &token,
                api::ListChildrenRequest {
                    page_token: "AQAAAAAAAAAAAgAEbm9wZQ".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_refused_token(&status);
        let status = children
            .list_children(with_token(
                &token,
                api::ListChildrenRequest {
                    home: "Elm House".into(),
                    page_token: second_token,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_refused_token(&status);
        assert!(status.message().contains("different"), "{status:?}");

        // The deprecated `limit` of older clients still works, as the page size.
        let mut violations =
            api::violation_service_client::ViolationServiceClient::new(channel.clone());
        #[allow(deprecated)]
        let request = api::ListViolationsRequest {
            limit: 3,
            ..Default::default()
        };
        let listed = violations
            .list_violations(with_token(&token, request))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.violations.is_empty() && listed.next_page_token.is_empty());
        let status = violations
            .list_violations(with_token(
                &token,
                api::ListViolationsRequest {
                    page_token: "garbage!".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_refused_token(&status);
    });
}
