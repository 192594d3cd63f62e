//! `shoal nodes` (and the empty cases of both snapshots) with real
//! processes: on a private virtual LAN of three hosts, `shoal nodes` on
//! host 2 lists host 1's and host 3's nodes with the master marked, and
//! itself, as JSON and as a table; on loopback, an empty cluster is an
//! empty list and exit 0.
//!
//! The LAN needs root and iproute2 (skipped otherwise, see
//! `require_netns!`). Loopback runs use this test's ports (47865-47869).

#[path = "../../tests/support/mod.rs"]
mod support;

mod common;

use serde_json::Value;

use common::{run, run_json, shoal, STEP};
use support::{Lan, Proc};

/// `shoal nodes --format json` on `host`, retried until `done` holds (the
/// election takes a moment after the nodes start).
fn nodes_until(lan: &Lan, host: usize, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..5 {
        last = run_json(lan.host(host), &["nodes", "--format", "json"])
            .as_array()
            .expect("an array")
            .clone();
        if done(&last) {
            return last;
        }
    }
    panic!("never: {last:#?}");
}

#[test]
fn nodes_lists_every_node_with_the_master_marked() {
    require_netns!();
    let lan = Lan::new(3).expect("lan");
    // Two long-running nodes: host 1's heavy (it becomes master; --weight
    // makes a command eligible), host 3's light.
    let heavy = shoal(
        lan.host(0),
        &[
            "--weight",
            "0.9",
            "register",
            "app@1.0.0:8080",
            "--host",
            "10.250.0.1",
        ],
    );
    let mut heavy = Proc::spawn("heavy", heavy).expect("spawn");
    let light = shoal(lan.host(2), &["--weight", "0.1", "listen", "jobs"]);
    let mut light = Proc::spawn("light", light).expect("spawn");
    heavy.wait_event("registered", STEP).expect("heavy started");
    light.wait_event("listening", STEP).expect("light started");

    let addr = |i: u8| format!("10.250.0.{i}:{}", common::PORT);
    let find = |nodes: &[Value], a: &str| nodes.iter().find(|n| n["addr"] == a).cloned();
    let nodes = nodes_until(&lan, 1, |nodes| {
        find(nodes, &addr(1)).is_some_and(|n| n["master"] == true)
            && find(nodes, &addr(3)).is_some()
    });
    assert_eq!(nodes.len(), 3, "{nodes:#?}");
    let one = find(&nodes, &addr(1)).unwrap();
    assert_eq!(
        (one["eligible"].clone(), one["weight"].clone()),
        (true.into(), 0.9.into())
    );
    assert!(one["last_heard_ms"].as_u64().unwrap() < 2_000, "{one}");
    assert_eq!(one["hello_interval_ms"], 400);
    assert_eq!(one["epoch"]["master"], one["id"]);
    let three = find(&nodes, &addr(3)).unwrap();
    assert_eq!(
        (three["master"].clone(), three["eligible"].clone()),
        (false.into(), true.into())
    );
    // Itself, marked, and not eligible: a snapshot never takes mastership.
    let me = find(&nodes, &addr(2)).expect("itself");
    assert_eq!(me["self"], true);
    assert_eq!(
        (me["master"].clone(), me["eligible"].clone()),
        (false.into(), false.into())
    );
    assert_eq!(nodes.iter().filter(|n| n["master"] == true).count(), 1);

    // Filters.
    let masters = run_json(lan.host(1), &["nodes", "--format", "json", "--master"]);
    let masters = masters.as_array().unwrap();
    assert!(
        masters.len() == 1 && masters[0]["addr"] == addr(1).as_str(),
        "{masters:?}"
    );
    let id = one["id"].as_str().unwrap();
    let by_id = run_json(
        lan.host(1),
        &["nodes", "--format", "json", "--name", &id[4..12]],
    );
    assert_eq!(by_id.as_array().unwrap().len(), 1, "{by_id}");

    // The table: a header and a row per node, the master's marked.
    let out = run(lan.host(1), &["nodes"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "HOST", "ADDRESS", "WEIGHT", "ROLE", "LAST", "HEARD", "INFO"],
        "{table}"
    );
    let row = |a: &str| {
        *lines
            .iter()
            .find(|l| l.contains(a))
            .unwrap_or_else(|| panic!("{a}: {table}"))
    };
    let master_row = row(&addr(1));
    assert!(master_row.starts_with(&id[..8]), "{master_row}");
    assert!(
        master_row.contains(" 0.9 ") && master_row.contains(" master "),
        "{master_row}"
    );
    assert!(row(&addr(3)).contains(" eligible "), "{table}");
    assert!(row(&addr(2)).contains(" self "), "{table}");

    heavy.terminate_cleanly(STEP);
    light.terminate_cleanly(STEP);
}

#[test]
fn an_empty_cluster_is_an_empty_list_and_exit_zero() {
    // Loopback, this test's own port: nobody else is on it.
    for (args, want) in [
        (&["nodes", "--format", "json", "--master"][..], "[]\n"),
        (&["registrations", "--format", "json"], "[]\n"),
        (
            &["registrations", "web", "2.1.0", "--format", "json"],
            "[]\n",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["--loopback", "--port", "47865"])
            .args(args)
            .args(["--listen", "300"])
            .output()
            .expect("run shoal");
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{args:?}");
    }
    // A table with nothing in it is its header.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "--loopback",
            "--port",
            "47866",
            "registrations",
            "--listen",
            "300",
        ])
        .output()
        .expect("run shoal");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("NAME"), "{text}");
    // Usage errors exit 2.
    for args in [
        &["registrations", "a/b"][..],
        &["registrations", "--meta", "x"],
        &["nodes", "--name", "("],
        &["nodes", "--format", "yaml"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["--loopback", "--port", "47867"])
            .args(args)
            .output()
            .expect("run shoal");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
