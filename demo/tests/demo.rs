//! The README's first command runs the demo: this test runs it too, and
//! checks that the tour shows what it promises: discovery, one election,
//! a message to every other node, a goodbye and a failover to one master.

use std::path::PathBuf;
use std::process::Command;

/// The demo's binary, built by cargo if this test run has not built it.
fn demo_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "shoal-demo", "--example", "demo"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --example demo failed");
    // target/<profile>/deps/this-test → target/debug/examples/demo
    let target = std::env::current_exe()
        .expect("test binary path")
        .ancestors()
        .nth(3)
        .expect("the target directory")
        .to_path_buf();
    target.join("debug").join("examples").join("demo")
}

#[test]
fn the_tour_ends_with_one_master_after_failover() {
    let output = Command::new(demo_binary()).output().expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let count = |needle: &str| stdout.lines().filter(|l| l.contains(needle)).count();
    assert!(
        stdout.starts_with("shoal demo: four nodes on 127.255.255.255:"),
        "{stdout}"
    );
    assert_eq!(
        count(" found "),
        12,
        "every node finds the three others:\n{stdout}"
    );
    assert_eq!(
        count("*** promoted to master ***"),
        2,
        "one election, one failover:\n{stdout}"
    );
    assert_eq!(
        count("got on chat from"),
        3,
        "the three other nodes hear the message:\n{stdout}"
    );
    assert_eq!(
        count("said goodbye"),
        3,
        "the master leaves with a goodbye:\n{stdout}"
    );
    // The highest weight (bravo, 0.9) is elected; when it leaves, the next
    // in rank (charlie, 0.7) takes over.
    assert_eq!(count("is a master;"), 2, "{stdout}");
    assert!(
        stdout.contains("bravo    is a master; knows alpha, charlie, delta"),
        "{stdout}"
    );
    assert!(stdout.contains("charlie  is a master; 2 peers"), "{stdout}");
    assert!(
        stdout.contains("exactly one master after failover"),
        "{stdout}"
    );
}
