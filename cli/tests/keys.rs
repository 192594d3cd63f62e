//! Keys on the command line's terms: from `SHOAL_KEY` or `--key-file`,
//! never a bare argument. A node with the cluster's key hears the others;
//! one without it, or with another key, hears nobody. On loopback
//! (`--loopback`, UDP ports 47880-47882).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::Proc;

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const OTHER: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn shoal(port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["--loopback", "--port", &port.to_string()])
        .env_remove("SHOAL_KEY")
        .env_remove("SHOAL_KEY_FILE")
        .env_remove("SHOAL_PORT");
    cmd
}

/// `shoal registrations --format json` on `port`, with `setup` applied.
fn registrations(port: u16, setup: impl FnOnce(&mut Command)) -> Vec<Value> {
    let mut cmd = shoal(port);
    cmd.args(["registrations", "--format", "json"]);
    setup(&mut cmd);
    let out = cmd.output().expect("run shoal registrations");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

#[test]
fn only_nodes_with_the_key_hear_each_other() {
    let port = 47_880;
    let mut cmd = shoal(port);
    cmd.args(["register", "keyed@1.0.0:7000", "--host", "127.0.0.1"])
        .env("SHOAL_KEY", KEY);
    let mut owner = Proc::spawn("register", cmd).expect("spawn shoal register");
    owner
        .wait_event("registered", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("not registered:\n{}", owner.dump()));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", owner.pid())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(KEY),
        "the key is in the process list"
    );

    let dir = std::env::temp_dir().join(format!("shoal-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let right = dir.join("right.key");
    let wrong = dir.join("wrong.key");
    std::fs::write(&right, format!("{KEY}\n")).unwrap();
    std::fs::write(&wrong, OTHER).unwrap();

    let with_file = registrations(port, |c| {
        c.arg("--key-file").arg(&right);
    });
    assert_eq!(with_file.len(), 1, "{with_file:?}");
    assert_eq!(with_file[0]["id"], "/keyed/1.0.0/127.0.0.1/7000");
    let with_env = registrations(port, |c| {
        c.env("SHOAL_KEY", KEY);
    });
    assert_eq!(with_env.len(), 1, "{with_env:?}");
    assert_eq!(registrations(port, |_| {}), Vec::<Value>::new(), "no key");
    assert_eq!(
        registrations(port, |c| {
            c.arg("--key-file").arg(&wrong);
        }),
        Vec::<Value>::new(),
        "another key"
    );

    // A key file that cannot be read, or is not a key: a usage error.
    for (path, what) in [
        (dir.join("missing.key"), "cannot read"),
        (dir.clone(), "cannot read"),
    ] {
        let out = shoal(port + 1)
            .args(["nodes", "--key-file"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(what),
            "{out:?}"
        );
    }
    std::fs::write(dir.join("bad.key"), "a passphrase, not a key").unwrap();
    let out = shoal(port + 2)
        .args(["nodes", "--key-file"])
        .arg(dir.join("bad.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("secret_key"),
        "{out:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    owner.terminate_cleanly(Duration::from_secs(10));
}
