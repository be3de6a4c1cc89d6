//! A client in another language (issue 15): Python stubs generated from `proto/` at test time
//! by grpcio-tools, into a temporary folder, drive a real controller through
//! `tests/clients/python/flow.py`. SKIPPED (and passing) when python3 or grpc_tools is missing;
//! `.ci/run` installs grpcio-tools from PyPI.

use std::path::Path;
use std::process::Command;

use haven_tests::*;

fn python_with_grpc_tools() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

// clause RM3, RM5, KP2: a home, a child, a risk assessment and a plan revision as typed
// messages, a lockdown, its sanction and obligations, and typed refusals, from Python.
#[test]
fn rm3_rm5_a_python_client_drives_the_staff_api_from_proto_alone() {
    if !python_with_grpc_tools() {
        println!("SKIPPED: python3 with grpcio-tools is not installed (pip install grpcio-tools)");
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let client = workspace.join("tests/clients/python");
    let out = tempfile::tempdir().unwrap();
    let generated = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", workspace.join("proto").display()))
        .arg(format!("-I{}", client.display()))
        .arg(format!("--python_out={}", out.path().display()))
        .arg(format!("--grpc_python_out={}", out.path().display()))
        .args([
            "haven/admin/v1/admin.proto",
            "haven/admin/v1/plan.proto",
            "rpc_status.proto",
        ])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "grpc_tools.protoc failed:\n{}",
        String::from_utf8_lossy(&generated.stderr)
    );

    let home = Home::new();
    let run = Command::new("python3")
        .arg(client.join("flow.py"))
        .arg(&home.controller.url)
        .arg(home.controller.data_dir.join("ca.pem"))
        .arg(home.controller.first_token())
        .env("PYTHONPATH", out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stdout.contains("FLOW OK"),
        "flow.py failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("refused: LOCKDOWN_REASON_NOT_PROTECTIVE"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused: PERMISSION_NEEDS_RISK_ASSESSMENT (KP2)"),
        "{stdout}"
    );
    // Issue 15: a list paged one row at a time, and a token used with other filters refused.
    assert!(stdout.contains(" obligations, one a page"), "{stdout}");
    assert!(stdout.contains("refused: PAGE_TOKEN_INVALID"), "{stdout}");
    // Enums read in another language: the lockdown's reason and the manager's role by name.
    assert!(
        stdout.contains("lockdown reason: RESTRICTION_REASON_INJURY_TO_CHILD"),
        "{stdout}"
    );
    assert!(stdout.contains("as STAFF_ROLE_MANAGER"), "{stdout}");
    assert!(
        stdout.contains("review at, as a Timestamp both ways: 20"),
        "{stdout}"
    );
    assert!(stdout.contains("looked up: jordan is chd-"), "{stdout}");
    println!("{stdout}");
}
