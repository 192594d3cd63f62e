//! Two nodes with different keys are told about each other: `examples/node`
//! prints the core's `Event::Unauthenticated` as an `unauthenticated` line
//! naming the sender's address and key id, so a typo in a key is visible
//! where the user looks, not only in a counter. Loopback only: both nodes
//! broadcast to 127.255.255.255 on their own port.

mod support;

use std::process::Command;
use std::time::Duration;

use shoal::Key;
use support::peer::build_example;
use support::Proc;

const PORT: &str = "47641";
const STEP: Duration = Duration::from_secs(15);

fn node(id: &str, key: &str) -> Proc {
    let mut cmd = Command::new(build_example("node"));
    cmd.args(["--id", id, "--port", PORT, "--broadcast", "127.255.255.255"]);
    cmd.args([
        "--hello-interval",
        "100",
        "--key",
        key,
        "--exit-after",
        "3000",
    ]);
    Proc::spawn(id, cmd).expect("node starts")
}

#[test]
fn nodes_with_different_keys_report_each_other() {
    let (key_a, key_b) = ("a1".repeat(32), "b2".repeat(32));
    let a = node("a", &key_a);
    let b = node("b", &key_b);
    for (who, other_key) in [(&a, &key_b), (&b, &key_a)] {
        let other_id = Key::from_hex(other_key).expect("a key").id().to_string();
        let line = who
            .wait_event("unauthenticated", STEP)
            .unwrap_or_else(|| panic!("no unauthenticated line: {:#?}", who.lines()));
        assert_eq!(line["key_id"], other_id.as_str(), "{line}");
        assert!(
            line["from"].as_str().is_some_and(|f| f.starts_with("127.")),
            "{line}"
        );
        assert!(line["dropped"].as_u64() >= Some(1), "{line}");
        assert!(line["t"].as_f64().is_some(), "{line}");
        // Deaf to each other: neither ever adds the other.
        assert!(
            who.lines().iter().all(|l| l["event"] != "added"),
            "{:#?}",
            who.lines()
        );
    }
    // Rate-limited: one line per address per 10 s, so one each in 3 s
    // (the other's hellos, 10 a second, are only counted).
    for who in [&a, &b] {
        who.wait_event("exit", STEP).expect("exits after 3 s");
        let reports = who
            .lines()
            .iter()
            .filter(|l| l["event"] == "unauthenticated")
            .count();
        assert_eq!(reports, 1, "{:#?}", who.lines());
    }
}
