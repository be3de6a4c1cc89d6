//! `haven filter …`: the web filter's category lists (administrators import them) and each
//! home's own exceptions (its managers allow or deny a site), WB1 and WB4.

// Records from an older controller carry only the deprecated words fields; `shown` falls back
// to them.
#![allow(deprecated)]

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use haven_proto::admin::v1 as api;

use crate::service::wire_enums::{shown, typed};

use super::Intercepted;
use super::client::explain;
use super::output::{json, table, when};
use crate::domain::filter::canonical_category;
use crate::domain::filter_lists::known_category;

pub type Filter = api::filter_service_client::FilterServiceClient<Intercepted>;

/// Bytes of list text per upload message (the controller takes messages up to 1 MB).
const UPLOAD_CHUNK: usize = 512 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum FilterCommand {
    /// Import a category list for every home (administrators). PATH is a list file (one
    /// domain a line, a hosts file or adblock rules), a UT1 category folder holding `domains`,
    /// or the UT1 folder itself (`<category>/domains` inside). Without --category, every
    /// category Haven knows in a UT1 folder is imported.
    Import {
        path: PathBuf,
        /// adult, gambling, drugs, violence, hacking, malware, self-harm, chat, vpn,
        /// stalkerware, social-networking or doh (UT1 names such as mixed_adult work too).
        #[arg(long)]
        category: Option<String>,
        /// Where the list came from; the UT1 lists by default.
        #[arg(long)]
        source: Option<String>,
        /// The list's licence; CC BY-SA 4.0 (UT1's) by default.
        #[arg(long)]
        licence: Option<String>,
    },
    /// The lists installed: category, names, source, licence, imported when and by whom.
    List,
    /// Let a site through the category lists on one home's devices (managers).
    Allow {
        #[arg(long)]
        home: String,
        domain: String,
    },
    /// Block a site on one home's devices (managers).
    Deny {
        #[arg(long)]
        home: String,
        domain: String,
    },
    /// Remove one of a home's exceptions (managers).
    Remove {
        #[arg(long)]
        home: String,
        domain: String,
    },
    /// A home's exceptions.
    Exceptions {
        #[arg(long)]
        home: String,
    },
}

/// The file to import for `category` from `path` (a file, a category folder or a UT1 folder).
fn list_file(path: &Path, category: &str) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(anyhow!(
            "{} is neither a list file nor a folder",
            path.display()
        ));
    }
    if path.join("domains").is_file() {
        return Ok(path.join("domains"));
    }
    let wanted = canonical_category(category);
    for entry in
        std::fs::read_dir(path).with_context(|| format!("could not read {}", path.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if canonical_category(&name) == wanted && entry.path().join("domains").is_file() {
            return Ok(entry.path().join("domains"));
        }
    }
    Err(anyhow!(
        "{} has no {category} list: expected {}/<category>/domains (the UT1 layout) or a list file",
        path.display(),
        path.display()
    ))
}

/// Every known category in a UT1 folder, with its file.
fn ut1_categories(path: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("could not read {}", path.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file = entry.path().join("domains");
        let name = entry.file_name().to_string_lossy().to_string();
        if file.is_file() {
            match known_category(&name) {
                Ok(_) => found.push((name, file)),
                Err(_) => eprintln!("skipping {name}: not a category Haven filters"),
            }
        }
    }
    if found.is_empty() {
        return Err(anyhow!(
            "{} holds no UT1 category folders Haven knows (<category>/domains); give --category and a list file",
            path.display()
        ));
    }
    Ok(found)
}

async fn import_one(
    c: &mut Filter,
    category: &str,
    file: &Path,
    source: &str,
    licence: &str,
) -> anyhow::Result<api::FilterList> {
    let text = std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
    let mut messages = Vec::with_capacity(text.len() / UPLOAD_CHUNK + 1);
    let mut chunks = text.chunks(UPLOAD_CHUNK);
    messages.push(api::FilterListUpload {
        category: category.to_string(),
        source: source.to_string(),
        licence: licence.to_string(),
        data: chunks.next().unwrap_or_default().to_vec(),
    });
    messages.extend(chunks.map(|d| api::FilterListUpload {
        data: d.to_vec(),
        ..Default::default()
    }));
    Ok(c.import_filter_list(tokio_stream::iter(messages))
        .await
        .map_err(explain)?
        .into_inner())
}

fn list_row(l: &api::FilterList) -> Vec<String> {
    vec![
        l.category.clone(),
        l.version.to_string(),
        l.domains.to_string(),
        l.source.clone(),
        l.licence.clone(),
        when(l.imported_at_unix_ms),
        if l.imported_by_name.is_empty() {
            l.imported_by.clone()
        } else {
            l.imported_by_name.clone()
        },
    ]
}

const LIST_HEADER: &[&str] = &[
    "category", "version", "domains", "source", "licence", "imported", "by",
];

pub async fn filter(c: &mut Filter, cmd: FilterCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        FilterCommand::Import {
            path,
            category,
            source,
            licence,
        } => {
            let source = source.unwrap_or_default();
            let licence = licence.unwrap_or_default();
            let todo = match &category {
                Some(cat) => vec![(cat.clone(), list_file(&path, cat)?)],
                None if path.is_dir() && !path.join("domains").is_file() => ut1_categories(&path)?,
                None => {
                    return Err(anyhow!(
                        "say which category this list is for: --category adult (or gambling, drugs, …)"
                    ));
                }
            };
            let mut done = Vec::new();
            for (cat, file) in todo {
                done.push(import_one(c, &cat, &file, &source, &licence).await?);
            }
            if as_json {
                return json(&done);
            }
            for l in &done {
                println!(
                    "Imported {} version {}: {} domains ({} lines skipped), {} bytes compiled; sent to {} connected device(s).",
                    l.category, l.version, l.domains, l.skipped, l.compiled_bytes, l.devices_sent
                );
            }
            if let Some(l) = done.first() {
                println!("Source: {} — licence {}.", l.source, l.licence);
            }
        }
        FilterCommand::List => {
            let lists = c
                .list_filter_lists(api::ListFilterListsRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .lists;
            if as_json {
                return json(&lists);
            }
            if lists.is_empty() {
                println!(
                    "No category lists installed: devices block only social networking and DNS-over-HTTPS. Import lists with `haven filter import` (see the README)."
                );
                return Ok(());
            }
            table(LIST_HEADER, lists.iter().map(list_row).collect());
        }
        FilterCommand::Allow { home, domain } => {
            set(c, home, domain, "allow", as_json).await?;
        }
        FilterCommand::Deny { home, domain } => {
            set(c, home, domain, "deny", as_json).await?;
        }
        FilterCommand::Remove { home, domain } => {
            let r = c
                .remove_web_exception(api::RemoveWebExceptionRequest { home, domain })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            let e = r.exception.unwrap_or_default();
            println!(
                "Removed the {} exception for {}: policy version {}, sent to {} connected device(s).",
                shown::<api::WebExceptionKind>(e.exception_kind, &e.kind),
                e.domain,
                r.policy_version,
                r.devices_sent
            );
        }
        FilterCommand::Exceptions { home } => {
            let list = c
                .list_web_exceptions(api::ListWebExceptionsRequest { home })
                .await
                .map_err(explain)?
                .into_inner()
                .exceptions;
            if as_json {
                return json(&list);
            }
            table(
                &["domain", "kind", "added", "by"],
                list.into_iter()
                    .map(|e| {
                        let kind = shown::<api::WebExceptionKind>(e.exception_kind, &e.kind);
                        vec![e.domain, kind, when(e.added_at_unix_ms), e.added_by]
                    })
                    .collect(),
            );
        }
    }
    Ok(())
}

async fn set(
    c: &mut Filter,
    home: String,
    domain: String,
    kind: &str,
    as_json: bool,
) -> anyhow::Result<()> {
    let r = c
        .set_web_exception(api::SetWebExceptionRequest {
            home,
            domain,
            exception_kind: typed::<api::WebExceptionKind>(kind).0,
            kind: typed::<api::WebExceptionKind>(kind).1,
        })
        .await
        .map_err(explain)?
        .into_inner();
    if as_json {
        return json(&r);
    }
    let e = r.exception.unwrap_or_default();
    let what = if kind == "allow" {
        "now opens on this home's devices (the category lists no longer block it; DNS-over-HTTPS services stay blocked)"
    } else {
        "is now blocked on this home's devices"
    };
    println!(
        "{} {what}: policy version {}, sent to {} connected device(s).",
        e.domain, r.policy_version, r.devices_sent
    );
    Ok(())
}

/// The line `haven plan show` and `haven device show` add about the web filter: what the
/// profile blocks, and what it names without a list. Quiet if the controller cannot say.
pub async fn print_coverage(c: &mut Filter, child: String, device: String) {
    let Ok(r) = c
        .filter_coverage(api::FilterCoverageRequest { child, device })
        .await
        .map(tonic::Response::into_inner)
    else {
        return;
    };
    if !r.web_on {
        return;
    }
    println!(
        "  web filter: \"{}\" blocks {}",
        r.filter_profile,
        r.blocked.join(", ")
    );
    if !r.staff_note.is_empty() {
        println!("  {}", r.staff_note);
    }
}
