//! The network flags every command shares (`--interface`, `--ipv6`,
//! `--seed`, `--seed-refresh`, `--unicast-only`): how they parse, what
//! `--help` says, and how a bad value is refused: those runs stop at the
//! command line or the configuration and open no socket (and pass
//! `--loopback` anyway). Then `shoal nodes --seed` across a router, in
//! namespaces (root only; skipped otherwise, see `require_netns!`).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::{Net, Proc};

/// `shoal args`, with the environment's network settings removed.
fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("SHOAL_KEY")
        .env_remove("SHOAL_KEY_FILE")
        .env_remove("SHOAL_PORT")
        .env_remove("SHOAL_BROADCAST")
        .env_remove("SHOAL_MULTICAST")
        .output()
        .expect("run shoal")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_empty_or_malformed_seed_is_a_usage_error_naming_the_field() {
    for seed in ["", "host:0", "host:99999", "bad host:7", "a..b:7"] {
        let out = shoal(&["--loopback", "--port", "47990", "nodes", "--seed", seed]);
        assert_eq!(out.status.code(), Some(2), "--seed {seed:?}: {out:?}");
        assert!(stderr(&out).contains("seeds"), "--seed {seed:?}: {out:?}");
    }
}

#[test]
fn loopback_cannot_be_combined_with_an_interface_or_ipv6() {
    for flags in [&["--interface", "eth0"][..], &["--ipv6"]] {
        let mut args = vec!["--loopback", "--port", "47990"];
        args.extend_from_slice(flags);
        args.push("nodes");
        let out = shoal(&args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {out:?}");
        assert!(stderr(&out).contains("cannot be used with"), "{out:?}");
    }
}

#[test]
fn unicast_only_needs_a_seed() {
    let out = shoal(&["--loopback", "--port", "47990", "nodes", "--unicast-only"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--seed"), "{out:?}");
}

#[test]
fn help_explains_interfaces_and_seeds_with_examples() {
    let out = shoal(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--interface <NAME>",
        "--ipv6",
        "--seed <HOST:PORT>",
        "--seed-refresh <MS>",
        "--unicast-only",
        "shoal nodes --interface eth0",
        "shoal nodes --seed 10.0.2.7:12345",
        "point-to-point",
        "docker0",
        "ff02::5ea1",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    // The short help lists the common flags too, on every command.
    let out = shoal(&["nodes", "-h"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["--interface", "--seed", "--ipv6"] {
        assert!(help.contains(needle), "nodes -h lacks {needle}:\n{help}");
    }
}

/// Two subnets joined by a router that forwards unicast and no broadcast:
/// `shoal nodes` on one side lists a node of the other side only with
/// `--seed` pointing at it.
#[test]
fn nodes_with_a_seed_lists_a_node_behind_a_router() {
    require_netns!();
    let mut net = Net::new().expect("net");
    let (s1, s2) = net.routed_subnets().unwrap();
    let mut near = net.host("near").unwrap();
    net.attach(&mut near, &s1, "eth0", &["10.250.1.1/24"])
        .unwrap();
    net.route(&near, &["default", "via", "10.250.1.254"])
        .unwrap();
    let mut far = net.host("far").unwrap();
    net.attach(&mut far, &s2, "eth0", &["10.250.2.1/24"])
        .unwrap();
    net.route(&far, &["default", "via", "10.250.2.254"])
        .unwrap();

    let port = "47871";
    let listener = far.command(
        env!("CARGO_BIN_EXE_shoal"),
        ["--port", port, "--weight", "0.9", "listen", "jobs"],
    );
    let mut listener = Proc::spawn("far", listener).expect("spawn");
    listener
        .wait_event("listening", Duration::from_secs(10))
        .expect("far listening");

    let nodes = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "--port", port, "nodes", "--format", "json", "--listen", "2000",
        ];
        args.extend_from_slice(extra);
        let out = near
            .run(env!("CARGO_BIN_EXE_shoal"), &args, Duration::from_secs(20))
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let far_addr = format!("10.250.2.1:{port}");
    let without = nodes(&[]);
    assert!(
        without.iter().all(|n| n["addr"] != far_addr.as_str()),
        "broadcast crossed the router: {without:#?}"
    );
    let seed = far_addr.clone();
    let with = nodes(&["--seed", &seed]);
    assert!(
        with.iter().any(|n| n["addr"] == far_addr.as_str()),
        "the seed was not listed: {with:#?}"
    );
    listener.terminate_cleanly(Duration::from_secs(10));
}
