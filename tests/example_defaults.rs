//! The examples are safe to try: without flags they stay on this host.
//!
//! * `--print-config` shows each example's settings and exits before it
//!   opens a socket, so these checks send nothing at all: without network
//!   flags, discovery broadcasts to 127.255.255.255 on the example's own
//!   port and its TCP servers listen on 127.0.0.1; `--lan` gives the
//!   library's real-LAN defaults (255.255.255.255, port 12345); explicit
//!   flags win over either.
//! * `--help` says so, naming `--lan`.
//! * In a private virtual LAN (network namespaces, root only), `node`
//!   without network flags finds a node on its own host and none on
//!   another host. Even a regression there could reach only that private
//!   LAN. Every line it prints carries `t`, ms since the Unix epoch.

mod support;

use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::netns::run_bounded;
use support::peer::build_example;
use support::proc::dump_all;
use support::{Lan, Proc};

/// Bound for one process run or expected step; generous for a loaded machine.
const STEP: Duration = Duration::from_secs(15);

/// Each example, the arguments it needs anyway, and its own port on this host.
const EXAMPLES: [(&str, &[&str], u16); 4] = [
    ("node", &["--id", "x"], 40_123),
    ("event_emitter", &["--id", "x"], 47_320),
    ("service_readiness", &["--role", "kv"], 47_500),
    ("registry", &["--register", "kv@1.0.0:7000"], 47_700),
];

/// Runs `example` with `args` and `--print-config`; returns its `config` line.
fn print_config(example: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(build_example(example));
    cmd.args(args).arg("--print-config");
    let out = run_bounded(cmd, STEP).unwrap_or_else(|e| panic!("{example}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{example} {args:?}: {}\n{stdout}",
        out.status
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for line in &lines {
        assert!(line["t"].as_f64().is_some(), "{example}: no t in {line}");
    }
    let config = lines.iter().find(|v| v["event"] == "config");
    let config = config.unwrap_or_else(|| panic!("{example}: no config line\n{stdout}"));
    // Neither a node nor a server was started.
    for event in ["ready", "listening", "hub"] {
        assert!(
            lines.iter().all(|v| v["event"] != event),
            "{example}: {event}\n{stdout}"
        );
    }
    config.clone()
}

/// The TCP listening address in `config`, whichever example printed it.
fn tcp_addr(example: &str, config: &Value) -> Value {
    match example {
        "event_emitter" => config["hub_bind"].clone(),
        "service_readiness" => config["listen"].clone(),
        _ => json!(null), // node and registry have no TCP server
    }
}

#[test]
fn every_example_defaults_to_this_host_only() {
    for (example, needed, port) in EXAMPLES {
        let config = print_config(example, needed);
        assert_eq!(
            config["broadcast"], "127.255.255.255",
            "{example}: {config}"
        );
        assert_eq!(config["multicast"], Value::Null, "{example}: {config}");
        assert_eq!(config["port"], port, "{example}: {config}");
        assert_eq!(config["host_only"], true, "{example}: {config}");
        if !matches!(example, "node" | "registry") {
            assert_eq!(tcp_addr(example, &config), "127.0.0.1", "{example}");
        }
    }
}

#[test]
fn lan_gives_the_library_defaults_and_explicit_flags_win() {
    for (example, needed, _) in EXAMPLES {
        let lan = print_config(example, &[needed, &["--lan"]].concat());
        assert_eq!(lan["broadcast"], "255.255.255.255", "{example}: {lan}");
        assert_eq!(lan["port"], 12345, "{example}: {lan}");
        assert_eq!(lan["host_only"], false, "{example}: {lan}");
        if !matches!(example, "node" | "registry") {
            assert_eq!(tcp_addr(example, &lan), "0.0.0.0", "{example}");
        }

        let explicit = ["--broadcast", "10.9.8.255", "--port", "40999"];
        for with in [&[][..], &["--lan"]] {
            let config = print_config(example, &[needed, with, &explicit].concat());
            assert_eq!(config["broadcast"], "10.9.8.255", "{example}: {config}");
            assert_eq!(config["port"], 40999, "{example}: {config}");
            assert_eq!(config["host_only"], false, "{example}: {config}");
        }

        // Multicast is explicit too: it replaces broadcast, and reaches the LAN.
        let multicast = print_config(example, &[needed, &["--multicast", "239.255.7.7"]].concat());
        assert_eq!(
            multicast["multicast"], "239.255.7.7",
            "{example}: {multicast}"
        );
        assert_eq!(
            multicast["broadcast"],
            Value::Null,
            "{example}: {multicast}"
        );
        assert_eq!(multicast["host_only"], false, "{example}: {multicast}");
    }
}

/// `node`: without network flags it listens on the loopback interface only;
/// naming an interface, a seed or IPv6 is a choice of the real network, and
/// the `config` line shows each; a bad seed is refused naming the field.
#[test]
fn node_interface_seed_and_ipv6_flags_choose_the_real_network() {
    let quiet = print_config("node", &["--id", "x"]);
    assert_eq!(quiet["interfaces"], json!(["Loopback"]), "{quiet}");
    assert_eq!(quiet["seeds"], json!([]), "{quiet}");
    assert_eq!(quiet["ipv6"], false, "{quiet}");

    assert_eq!(quiet["per_interface"], false, "{quiet}");

    let lan = print_config("node", &["--id", "x", "--lan"]);
    assert_eq!(lan["per_interface"], true, "{lan}");
    let one = print_config("node", &["--id", "x", "--lan", "--broadcast", "10.9.8.255"]);
    assert_eq!(one["per_interface"], false, "one destination: {one}");
    assert_eq!(
        lan["interfaces"],
        Value::Null,
        "the library's default: {lan}"
    );

    let named = print_config(
        "node",
        &["--id", "x", "--interface", "eth7", "--interface", "br1"],
    );
    assert_eq!(named["interfaces"], json!(["eth7", "br1"]), "{named}");
    assert_eq!(named["host_only"], false, "{named}");
    assert_eq!(named["per_interface"], true, "{named}");

    let seeded = print_config(
        "node",
        &[
            "--id",
            "x",
            "--seed",
            "10.9.8.7:40999",
            "--seed",
            "db.example:7",
        ],
    );
    assert_eq!(
        seeded["seeds"],
        json!(["10.9.8.7:40999", "db.example:7"]),
        "{seeded}"
    );
    assert_eq!(seeded["host_only"], false, "{seeded}");
    assert_eq!(seeded["interfaces"], Value::Null, "{seeded}");

    let v6 = print_config("node", &["--id", "x", "--ipv6"]);
    assert_eq!(v6["ipv6"], true, "{v6}");
    assert_eq!(v6["host_only"], false, "{v6}");

    let mut cmd = Command::new(build_example("node"));
    cmd.args(["--id", "x", "--seed", "", "--print-config"]);
    let out = run_bounded(cmd, STEP).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("seeds"), "names the field: {stdout}");
}

#[test]
fn help_names_lan_and_the_loopback_default() {
    for (example, _, port) in EXAMPLES {
        let mut cmd = Command::new(build_example(example));
        cmd.arg("--help");
        let out = run_bounded(cmd, STEP).unwrap_or_else(|e| panic!("{example}: {e}"));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{example}: {}", out.status);
        for needle in [
            "--lan",
            "127.255.255.255",
            "255.255.255.255",
            "12345",
            &port.to_string(),
        ] {
            assert!(
                help.contains(needle),
                "{example} --help lacks {needle:?}:\n{help}"
            );
        }
    }
}

/// Two `node`s on host 0 and one on host 1, none with network flags: the
/// two on host 0 find each other; nobody finds the one on host 1.
#[test]
fn node_without_network_flags_stays_on_its_host() {
    require_netns!();
    let lan = Lan::new(2).expect("create lan");
    let node = build_example("node");
    // Short timers only: not one network flag.
    let timing = [
        "--hello-interval",
        "100",
        "--check-interval",
        "300",
        "--node-timeout",
        "300",
        "--master-timeout",
        "300",
    ];
    let spawn = |host: usize, id: &str| {
        let args = [&["--id", id][..], &timing].concat();
        Proc::spawn(id, lan.host(host).command(&node, &args)).expect("spawn node")
    };
    let procs = [spawn(0, "a"), spawn(0, "b"), spawn(1, "c")];
    let all = || dump_all(procs.iter());
    for p in &procs {
        let config = p
            .wait_event("config", STEP)
            .unwrap_or_else(|| panic!("{}", all()));
        assert_eq!(config["broadcast"], "127.255.255.255", "{}", all());
        assert_eq!(config["port"], 40_123, "{}", all());
    }
    let [a, b, c] = &procs;
    for (p, other) in [(a, "b"), (b, "a")] {
        p.wait_for(|v| v["event"] == "added" && v["peer"] == other, STEP)
            .unwrap_or_else(|| panic!("{} never found {other}\n{}", p.name(), all()));
    }
    // Ten hello intervals more: c would have been heard by now.
    thread::sleep(Duration::from_secs(1));
    for p in &procs {
        let added: Vec<Value> = p.events("added");
        let expected = match p.name() {
            "c" => 0,
            _ => 1,
        };
        assert_eq!(added.len(), expected, "{}: {added:?}\n{}", p.name(), all());
        for line in p.lines() {
            assert!(line["t"].as_f64().is_some(), "{}: no t in {line}", p.name());
        }
    }
    assert!(c.events("added").is_empty());
    for mut p in procs {
        p.stop(STEP);
    }
}

/// The registry example on loopback, two processes: one registers kv, the
/// other lists it after its listen, then sees it go offline when the
/// first stops (it deregisters on SIGTERM).
#[test]
fn registry_example_registers_lists_and_watches_on_loopback() {
    let bin = build_example("registry");
    // Its own port, on this host only.
    let net = ["--broadcast", "127.255.255.255", "--port", "47701"];
    let spawn = |name: &str, args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(net).args(["--hello-interval", "100"]).args(args);
        Proc::spawn(name, cmd).unwrap_or_else(|e| panic!("spawn {name}: {e}"))
    };
    // The listers first: on one host every process shares the UDP port, so
    // the owner's unicast answers to a late joiner's pull reach whichever
    // process the kernel picks; its broadcast delta reaches them all.
    let mut lister = spawn("lister", &["--listen", "4000"]);
    let mut watcher = spawn("watcher", &["--watch", "kv@1.0.0"]);
    for p in [&lister, &watcher] {
        p.wait_event("config", STEP)
            .unwrap_or_else(|| panic!("{}", p.dump()));
    }
    thread::sleep(Duration::from_millis(500));
    let mut owner = spawn("owner", &["--register", "kv@1.0.0:7000", "--ttl", "5"]);
    owner
        .wait_event("registered", STEP)
        .unwrap_or_else(|| panic!("{}", owner.dump()));
    let all = |procs: [&Proc; 3]| dump_all(procs);
    let listed = lister
        .wait_event("registration", STEP)
        .unwrap_or_else(|| panic!("{}", all([&owner, &lister, &watcher])));
    assert_eq!(listed["registration"]["id"], "/kv/1.0.0/127.0.0.1/7000");
    assert_eq!(listed["registration"]["meta"]["pid"], owner.pid());
    let online = watcher
        .wait_event("online", STEP)
        .unwrap_or_else(|| panic!("{}", all([&owner, &lister, &watcher])));
    assert_eq!(online["registration"]["name"], "kv");

    owner.stop(STEP);
    for p in [&lister, &watcher] {
        let offline = p
            .wait_event("offline", STEP)
            .unwrap_or_else(|| panic!("{}", p.dump()));
        assert_eq!(offline["reason"], "deregistered", "{}", p.dump());
    }
    // The lister listed kv once, and had no online for it on top.
    assert!(lister.events("online").is_empty(), "{}", lister.dump());
    lister.stop(STEP);
    watcher.stop(STEP);
}
