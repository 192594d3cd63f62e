//! A closed terminal (SIGHUP) stops a long-running command as SIGINT and
//! SIGTERM do: what it registered goes offline at once and it exits 0,
//! rather than dying and leaving its peers to time it out. On loopback
//! (`--loopback`, UDP ports 47884-47886).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::Proc;

fn shoal(port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["--loopback", "--port", &port.to_string()])
        .args(args)
        .env_remove("SHOAL_KEY")
        .env_remove("SHOAL_PORT")
        .env_remove("SHOAL_TOKEN");
    cmd
}

#[test]
fn sighup_deregisters_and_exits_0() {
    let cmd = shoal(
        47_884,
        &["register", "hup@1.0.0:7000", "--host", "127.0.0.1"],
    );
    let mut register = Proc::spawn("register", cmd).expect("spawn shoal register");
    register
        .wait_event("registered", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("not registered:\n{}", register.dump()));
    assert!(register.signal(libc::SIGHUP).unwrap());
    let status = register
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("exited after SIGHUP");
    assert_eq!(status.code(), Some(0), "{}", register.dump());
    let gone = register.events("deregistered");
    assert_eq!(gone.len(), 1, "{}", register.dump());
    assert_eq!(gone[0]["registration"]["name"], "hup");
}

#[test]
fn sighup_ends_listen_and_serve_with_exit_0() {
    for (port, args, first) in [
        (47_885, &["listen", "jobs"][..], "listening"),
        (47_886, &["serve", "--http", "127.0.0.1:0"][..], "listening"),
    ] {
        let mut proc = Proc::spawn(args[0], shoal(port, args)).expect("spawn");
        proc.wait_event(first, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{args:?} did not start:\n{}", proc.dump()));
        assert!(proc.signal(libc::SIGHUP).unwrap());
        let status = proc
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("exited after SIGHUP");
        assert_eq!(status.code(), Some(0), "{args:?}: {}", proc.dump());
    }
}
