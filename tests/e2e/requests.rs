//! A child asks for something from their own device; staff answer with a decision and a reason
//! that goes back to the device (Regulation 7).

use std::time::Duration;

use haven_tests::*;

// clause R7
#[test]
fn r7_a_childs_request_reaches_staff_and_the_answer_comes_back_to_the_device() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    // Asked while the agent is not even running: kept on the device until it can be sent.
    let asked = agent.command(&["request", "Please can I phone my nan on Sundays?"]);
    assert!(asked.ok, "{}", asked.stderr);
    agent.start();

    let request = eventually("the request to reach staff", WAIT, || {
        let list = home.manager.json(&["requests", "list"]);
        list.as_array()?.first().cloned()
    });
    assert_eq!(request["text"], "Please can I phone my nan on Sundays?");
    assert_eq!(request["child_name"], "Amira Khan");
    let id = request["id"].as_str().unwrap().to_string();

    // Only a manager answers, always with a reason.
    let err = home.admin.fails(&[
        "requests",
        "answer",
        &id,
        "--decision",
        "agreed",
        "--reason",
        "ok",
    ]);
    assert!(err.contains("only a manager"), "{err}");
    let err = home.manager.fails(&[
        "requests",
        "answer",
        &id,
        "--decision",
        "maybe",
        "--reason",
        "x",
    ]);
    assert!(err.contains("not a decision"), "{err}");
    home.manager.ok(&[
        "requests",
        "answer",
        &id,
        "--decision",
        "agreed",
        "--reason",
        "Nan can call you on Sundays at 5pm; we will add her to your plan.",
    ]);
    let err = home.manager.fails(&[
        "requests",
        "answer",
        &id,
        "--decision",
        "no",
        "--reason",
        "x",
    ]);
    assert!(err.contains("already answered"), "{err}");
    assert_eq!(
        home.manager
            .json(&["requests", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    eventually("the answer to reach the device", WAIT, || {
        let text = format!("{}\n{}", agent.stdout.text(), agent.stderr.text());
        text.contains("answer to your request").then_some(())
    });
    agent.stop();
    let status = agent.command(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let mine = &v["requests"][0];
    assert_eq!(mine["state"], "answered", "{v}");
    assert!(
        mine["reason"].as_str().unwrap().contains("Sundays at 5pm"),
        "{v}"
    );
    let text = agent.command(&["status"]);
    assert!(text.stdout.contains("Sundays at 5pm"), "{}", text.stdout);
}

#[test]
fn an_answer_given_while_the_device_was_away_arrives_when_it_reconnects() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    assert!(
        agent
            .command(&["request", "Can I stay up for the match?"])
            .ok
    );
    let id = eventually("the request to reach staff", WAIT, || {
        let list = home.manager.json(&["requests", "list"]);
        list.as_array()?.first()?["id"].as_str().map(str::to_string)
    });
    agent.stop();
    home.manager.ok(&[
        "requests",
        "answer",
        &id,
        "--decision",
        "not-agreed",
        "--reason",
        "It finishes after midnight; we will record it for you.",
    ]);
    agent.start();
    eventually(
        "the answer after reconnecting",
        Duration::from_secs(30),
        || {
            let text = format!("{}\n{}", agent.stdout.text(), agent.stderr.text());
            text.contains("answer to your request").then_some(())
        },
    );
}
