//! `shoal register` with real processes on a private virtual LAN (three
//! hosts, 10.250.0.0/24, broadcast 10.250.0.255, shoal's default timers:
//! hello every 400 ms, node timeout 2.6 s):
//!
//! * an app registered on host 1 is listed by `shoal registrations` on
//!   host 3, and goes on SIGTERM: exit 0, `offline` reason `deregistered`
//!   everywhere, no longer listed;
//! * SIGKILLed, its registrations go (`ownerGone`) at the node timeout;
//! * `--check tcp` registers an app only while its port accepts;
//! * bad specs are usage errors (exit 2) that name the problem.
//!
//! Needs root and iproute2 for the LAN (skipped otherwise, see
//! `require_netns!`); the usage errors run anywhere. The LAN is declared
//! first in each test, so that the processes and the watcher go first.

#[path = "../../tests/support/mod.rs"]
mod support;

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal::registry::OfflineReason;

use common::{offline_reason, online, run_json, shoal, Watcher, STEP};
use support::{Lan, Proc};

/// shoal's default node timeout.
const NODE_TIMEOUT: Duration = Duration::from_millis(2_600);

/// The ids `shoal registrations --format json` lists on `host`.
fn listed(lan: &Lan, host: usize, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["registrations", "--format", "json"];
    args.extend_from_slice(extra);
    let json = run_json(lan.host(host), &args);
    json.as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn registered_apps_are_listed_elsewhere_and_go_on_sigterm() {
    require_netns!();
    let lan = Lan::new(3).expect("lan");
    let watcher = Watcher::start(&lan, 2);
    let cmd = shoal(
        lan.host(0),
        &[
            "register",
            "app@1.0.0:8080,other@2.1.0:9090",
            "--host",
            "10.250.0.1",
            "--meta",
            "zone=eu",
            "--meta",
            "weight=3",
        ],
    );
    let mut register = Proc::spawn("register", cmd).expect("spawn");
    let app = "/app/1.0.0/10.250.0.1/8080";
    let other = "/other/2.1.0/10.250.0.1/9090";
    for id in [app, other] {
        watcher
            .wait(|e| online(e, id), STEP)
            .unwrap_or_else(|| panic!("{id} online on host 3\n{}", register.dump()));
    }
    let started = register.wait_event("start", STEP).expect("start");
    assert_eq!(started["host"], "10.250.0.1");
    // The line follows the registration, which may reach host 3 first.
    let two = |lines: &[serde_json::Value]| {
        lines.iter().filter(|l| l["event"] == "registered").count() == 2
    };
    assert!(register.wait_until(two, STEP), "{}", register.dump());
    let lines = register.events("registered");
    assert_eq!(lines[0]["registration"]["id"], app);

    // Listed on host 3, in Thalassa's shape.
    let all = run_json(lan.host(2), &["registrations", "--format", "json"]);
    let found = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == app)
        .unwrap_or_else(|| panic!("{app} listed: {all}"));
    assert_eq!(found["name"], "app");
    assert_eq!(found["version"], "1.0.0");
    assert_eq!(found["host"], "10.250.0.1");
    assert_eq!(found["port"], 8080);
    assert_eq!(found["meta"]["zone"], "eu");
    assert_eq!(found["meta"]["weight"], 3, "JSON values keep their type");
    assert_eq!(found["meta"]["pid"], register.pid());
    assert!(found["lastKnown"].as_u64().unwrap() > 0, "{found}");
    // The filters: name, name and version, meta.
    assert_eq!(listed(&lan, 2, &["other"]), vec![other]);
    assert_eq!(listed(&lan, 2, &["app", "1.0.0"]), vec![app]);
    assert!(listed(&lan, 2, &["app", "9"]).is_empty());
    assert_eq!(listed(&lan, 2, &["--meta", "zone=eu"]).len(), 2);
    assert!(listed(&lan, 2, &["--meta", "zone=us"]).is_empty());

    // The table, for people.
    let out = common::run(lan.host(2), &["registrations"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let mut rows = table.lines();
    let header = rows.next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("LAST KNOWN"),
        "{table}"
    );
    let row = rows.find(|r| r.starts_with("app ")).expect(&table);
    for cell in ["1.0.0", "10.250.0.1", "8080", r#"{"weight":3,"zone":"eu"}"#] {
        assert!(row.contains(cell), "{cell} in {row}");
    }

    // SIGTERM: deregistered everywhere, then a goodbye; exit 0.
    register.terminate_cleanly(STEP);
    for id in [app, other] {
        let (_, event) = watcher
            .wait(|e| offline_reason(e, id).is_some(), STEP)
            .unwrap_or_else(|| panic!("{id} offline\n{}", register.dump()));
        assert_eq!(
            offline_reason(&event, id),
            Some(OfflineReason::Deregistered)
        );
    }
    let gone = register.events("deregistered");
    assert_eq!(gone.len(), 2, "{}", register.dump());
    assert!(gone.iter().all(|l| l["reason"] == "stopped"));
    assert!(listed(&lan, 2, &[]).is_empty());
}

#[test]
fn a_killed_register_loses_its_apps_at_the_node_timeout() {
    require_netns!();
    let lan = Lan::new(3).expect("lan");
    let watcher = Watcher::start(&lan, 2);
    // No --host: the default is this host's address towards the cluster.
    let cmd = shoal(lan.host(0), &["register", "app@1.0.0:8080"]);
    let mut register = Proc::spawn("register", cmd).expect("spawn");
    let id = "/app/1.0.0/10.250.0.1/8080";
    watcher
        .wait(|e| online(e, id), STEP)
        .unwrap_or_else(|| panic!("online\n{}", register.dump()));
    // Hellos and registry hold steady for a moment before the kill.
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    register.kill().expect("SIGKILL");
    let (at, event) = watcher
        .wait(|e| offline_reason(e, id).is_some(), STEP)
        .expect("offline after SIGKILL");
    assert_eq!(offline_reason(&event, id), Some(OfflineReason::OwnerGone));
    let after = at - killed;
    // Its last hello came at most one hello interval (400 ms) before the
    // kill, so not before the timeout less that; and within the timeout
    // plus a margin for a loaded machine.
    assert!(
        after >= NODE_TIMEOUT - Duration::from_millis(600),
        "offline {after:?} after the kill: before the node timeout"
    );
    assert!(
        after <= NODE_TIMEOUT + Duration::from_millis(1_900),
        "offline {after:?} after the kill: well after the node timeout"
    );
    eprintln!("offline {} ms after SIGKILL", after.as_millis());
}

/// A TCP listener inside a host, accepting (and closing) every connection
/// on a thread of its own so that its backlog never fills; it closes on
/// drop.
struct App {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl App {
    fn listen(lan: &Lan, host: usize, addr: &'static str) -> App {
        let listener = lan
            .host(host)
            .enter(move || TcpListener::bind(addr))
            .expect("enter")
            .expect("bind");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        App {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn check_tcp_registers_an_app_only_while_its_port_accepts() {
    require_netns!();
    let lan = Lan::new(3).expect("lan");
    let watcher = Watcher::start(&lan, 2);
    let cmd = shoal(
        lan.host(0),
        &[
            "register",
            "app@1.0.0:9100",
            "--host",
            "10.250.0.1",
            "--check",
            "tcp",
            "--check-interval",
            "200ms",
        ],
    );
    let mut register = Proc::spawn("register", cmd).expect("spawn");
    let id = "/app/1.0.0/10.250.0.1/9100";

    // Nothing listens: checked, failing, not registered.
    let failing = register
        .wait_for(|l| l["event"] == "check" && l["ok"] == false, STEP)
        .unwrap_or_else(|| panic!("a failed check\n{}", register.dump()));
    assert!(
        failing["error"].as_str().unwrap().contains("refused"),
        "{failing}"
    );
    assert_eq!(failing["target"], "10.250.0.1:9100");
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(
        register.events("registered").is_empty(),
        "{}",
        register.dump()
    );
    assert!(watcher.drain().is_empty());
    assert!(listed(&lan, 2, &[]).is_empty());

    // The app starts: registered at the next check.
    let app = App::listen(&lan, 0, "10.250.0.1:9100");
    watcher
        .wait(|e| online(e, id), STEP)
        .unwrap_or_else(|| panic!("online once the port accepts\n{}", register.dump()));
    let registered = register.wait_event("registered", STEP).unwrap();
    assert_eq!(registered["reason"], "check passed");

    // It stops: deregistered after two failed checks.
    drop(app);
    let (_, event) = watcher
        .wait(|e| offline_reason(e, id).is_some(), STEP)
        .unwrap_or_else(|| panic!("offline once the port closes\n{}", register.dump()));
    assert_eq!(
        offline_reason(&event, id),
        Some(OfflineReason::Deregistered)
    );
    let gone = register.wait_event("deregistered", STEP).unwrap();
    assert_eq!(gone["reason"], "check failed");

    // And back.
    let _app = App::listen(&lan, 0, "10.250.0.1:9100");
    watcher
        .wait(|e| online(e, id), STEP)
        .unwrap_or_else(|| panic!("online again\n{}", register.dump()));
    register.terminate_cleanly(STEP);
    let (_, event) = watcher
        .wait(|e| offline_reason(e, id).is_some(), STEP)
        .expect("offline on SIGTERM");
    assert_eq!(
        offline_reason(&event, id),
        Some(OfflineReason::Deregistered)
    );
}

#[test]
fn bad_specs_are_usage_errors_that_name_the_problem() {
    // Refused while parsing, before any node starts: nothing is sent
    // (and --loopback would keep it on this host anyway).
    let cases = [
        ("app", "not NAME@VERSION:PORT"),
        ("app@1.0.0", "not NAME@VERSION:PORT"),
        ("app@1.0.0:0", "port 0"),
        ("app@1.0.0:65536", "port 65536 is out of range"),
        ("app@1.0.0:http", "not a number"),
        ("my/app@1.0.0:80", "contains '/'"),
        ("app@1.0.0:80,bad", "\"bad\" is not NAME@VERSION:PORT"),
    ];
    for (spec, want) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["--loopback", "--port", "47864", "register", spec])
            .output()
            .expect("run shoal");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(want), "{spec}: {stderr}");
        assert!(out.stdout.is_empty(), "{spec}");
    }
    for flags in [
        &["--ttl", "0"][..],
        &["--ttl", "soon"],
        &["--meta", "novalue"],
        &["--host", "a/b"],
        &["--check", "http"],
        &["--check-interval", "1ms"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["--loopback", "--port", "47864", "register", "app@1:80"])
            .args(flags)
            .output()
            .expect("run shoal");
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
    }
}
