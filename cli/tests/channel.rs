//! `shoal send` and `shoal listen` with real processes on a private
//! virtual LAN of three hosts: a message sent on host 3 is printed by the
//! listener on host 2, with its sender; JSON from stdin too; a message
//! that is not JSON is a usage error (exit 2) and sends nothing; the
//! listener stops on SIGINT with exit 0.
//!
//! Needs root and iproute2 (skipped otherwise, see `require_netns!`).

#[path = "../../tests/support/mod.rs"]
mod support;

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use common::{run, shoal, STEP};
use support::{Lan, Proc};

#[test]
fn a_message_sent_on_one_host_is_printed_on_another() {
    require_netns!();
    let lan = Lan::new(3).expect("lan");
    let mut listener =
        Proc::spawn("listen", shoal(lan.host(1), &["listen", "jobs"])).expect("spawn");
    let ready = listener.wait_event("listening", STEP).expect("listening");
    assert_eq!(ready["channel"], "jobs");

    let out = run(lan.host(2), &["send", "jobs", r#"{"id":7}"#]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    let got = listener
        .wait_event("message", STEP)
        .unwrap_or_else(|| panic!("the message\n{}", listener.dump()));
    assert_eq!(got["channel"], "jobs");
    assert_eq!(got["data"], json!({"id": 7}));
    assert_eq!(got["from"]["addr"], format!("10.250.0.3:{}", common::PORT));
    assert!(
        got["from"]["id"].as_str().is_some_and(|id| id.len() == 32),
        "{got}"
    );
    // The sender's first hello precedes its message: its name is known.
    assert!(got["from"]["host_name"].is_string(), "{got}");
    assert!(got["t"].as_f64().is_some());

    // Not JSON: exit 2, a message naming the problem, and nothing sent.
    let out = run(lan.host(2), &["send", "jobs", "{id: 8}"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not JSON"),
        "{out:?}"
    );
    // A reserved channel name: exit 2 too.
    assert_eq!(
        run(lan.host(2), &["send", "hello", "1"]).status.code(),
        Some(2)
    );

    // From stdin, with `-`.
    let mut child = shoal(lan.host(0), &["send", "jobs", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"["from", "stdin"]"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let from_stdin = listener
        .wait_for(|l| l["data"] == json!(["from", "stdin"]), STEP)
        .unwrap_or_else(|| panic!("the stdin message\n{}", listener.dump()));
    assert_eq!(
        from_stdin["from"]["addr"],
        format!("10.250.0.1:{}", common::PORT)
    );

    // Only the two messages: the refused one never left.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(listener.events("message").len(), 2, "{}", listener.dump());

    // SIGINT: exit 0.
    listener.signal(libc::SIGINT).unwrap();
    let status = listener.wait_timeout(STEP).unwrap().expect("exited");
    assert!(status.success(), "{status}\n{}", listener.dump());
}
