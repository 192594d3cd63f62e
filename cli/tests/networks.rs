//! The network flags every command shares (`--interface`, `--ipv6`,
//! `--seed`, `--seed-refresh`, `--unicast-only`): how they parse, what
//! `--help` says, and how a bad value is refused. Nothing here opens a
//! socket: every run stops at the command line or the configuration,
//! and each one passes `--loopback` or a loopback seed anyway.

use std::process::{Command, Output};

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
