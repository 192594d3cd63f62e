//! `examples/event_emitter.rs` as separate processes on loopback: every
//! node's events reach every other node exactly once, through the master's
//! hub; after the master is SIGKILLed the survivors elect another, reconnect
//! to its hub, deliver what was emitted meanwhile, and go on. A second test
//! speaks the hub's JSON-lines protocol over a raw TCP connection.
//!
//! Discovery goes only to 127.255.255.255 (broadcast on `lo`) and the hubs
//! listen on 127.0.0.1: nothing leaves the host. Each test has its own port,
//! and each run its own discovery key, so that two runs at once (another
//! `cargo test` on this host) do not merge into one cluster.
//! The example is built first (`support::peer::build_example`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::peer::build_example;
use support::proc::{dump_all, Proc};

/// Bound for one expected step once its cause is under way. Generous for a
/// loaded machine; the happy path never waits it out.
const STEP: Duration = Duration::from_secs(10);
/// From SIGKILL of the master to every survivor connected to a new one.
const FAILOVER: Duration = Duration::from_secs(5);
/// How long we keep watching for duplicates once everything has arrived.
const GRACE: Duration = Duration::from_millis(300);

/// Short timers. The timeouts are 6.5 hellos (5 lost hellos and half an
/// interval of jitter): the deadline these tests always ran with, when
/// `missed_hellos` stretched a 300 ms timeout to it; an explicit timeout is
/// now exact, and three hellos leave a loaded machine too little margin.
const TIMING: [&str; 8] = [
    "--hello-interval",
    "100",
    "--check-interval",
    "300",
    "--node-timeout",
    "650",
    "--master-timeout",
    "650",
];

/// A key unique to this run (see the module docs).
fn run_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("event-emitter-test-{}-{nanos}", std::process::id())
}

fn spawn(id: &str, port: u16, weight: &str, key: &str) -> Proc {
    let mut cmd = Command::new(build_example("event_emitter"));
    cmd.args(["--id", id, "--port", &port.to_string(), "--weight", weight])
        .args(["--key", key])
        .args(["--broadcast", "127.255.255.255", "--hub-bind", "127.0.0.1"])
        .args(TIMING);
    let p = Proc::spawn_with_stdin(id, cmd).unwrap_or_else(|e| panic!("spawn {id}: {e}"));
    let ready = p.wait_event("ready", STEP);
    assert_eq!(
        ready.map(|r| r["id"].clone()),
        Some(json!(id)),
        "{}",
        p.dump()
    );
    p
}

/// Which hub `p` is on, from its latest status line: its own id when it
/// serves the hub, the master's id when connected, `None` when disconnected.
fn hub_of(p: &Proc) -> Option<String> {
    let lines = p.lines();
    let last = lines.iter().rev().find(|v| {
        ["hub", "connected", "disconnected"]
            .iter()
            .any(|e| v["event"] == *e)
    })?;
    match last["event"].as_str()? {
        "hub" => Some(p.name().to_owned()),
        "connected" => last["master"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// Polls until every proc is on the same hub, served by one of them other
/// than `not`. Returns that master's id, or `None` after `timeout`.
fn wait_agreed(procs: &[&Proc], not: Option<&str>, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let hubs: Vec<_> = procs.iter().map(|p| hub_of(p)).collect();
        if let Some(Some(master)) = hubs.first() {
            let served = procs.iter().any(|p| p.name() == master);
            if served && Some(master.as_str()) != not && hubs.iter().all(|h| h == &hubs[0]) {
                return Some(master.clone());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn received(p: &Proc, name: &str) -> Vec<Value> {
    p.events("received")
        .into_iter()
        .filter(|v| v["name"] == name)
        .collect()
}

fn emit(p: &Proc, name: &str, data: &Value) {
    p.send_line(&format!("emit {name} {data}"))
        .unwrap_or_else(|e| panic!("write to {}: {e}", p.name()));
}

/// Each proc emits `<prefix>.<its id>`; checks every other proc receives it
/// exactly once, with its data and origin, and the emitter does not.
fn each_emits_to_all_others(procs: &[&Proc], prefix: &str, already_emitted: bool) {
    let name = |p: &Proc| format!("{prefix}.{}", p.name());
    let data = |p: &Proc| json!({"from": p.name(), "text": "hello\nworld", "n": [1, 2.5, null]});
    if !already_emitted {
        for p in procs {
            emit(p, &name(p), &data(p));
        }
    }
    for to in procs {
        let expected: Vec<String> = procs
            .iter()
            .filter(|from| from.name() != to.name())
            .map(|from| name(from))
            .collect();
        let arrived = to.wait_until(
            |lines| {
                expected.iter().all(|n| {
                    lines
                        .iter()
                        .any(|v| v["event"] == "received" && v["name"] == n.as_str())
                })
            },
            STEP,
        );
        assert!(
            arrived,
            "{} did not receive all of {expected:?}\n{}",
            to.name(),
            dump_all(procs.iter().copied())
        );
    }
    thread::sleep(GRACE);
    for to in procs {
        for from in procs {
            let got = received(to, &name(from));
            if from.name() == to.name() {
                assert!(got.is_empty(), "{} got its own event {got:?}", to.name());
                continue;
            }
            assert_eq!(
                got.len(),
                1,
                "{} got {} {} times\n{}",
                to.name(),
                name(from),
                got.len(),
                dump_all(procs.iter().copied())
            );
            assert_eq!(got[0]["origin"], from.name());
            assert_eq!(got[0]["data"], data(from));
        }
    }
}

#[test]
fn events_reach_every_other_node_once_and_survive_failover() {
    let port = 47_310;
    let key = run_key();
    let mut procs: Vec<Proc> = [("n0", "0.9"), ("n1", "0.7"), ("n2", "0.5"), ("n3", "0.3")]
        .iter()
        .map(|(id, w)| spawn(id, port, w, &key))
        .collect();
    let all: Vec<&Proc> = procs.iter().collect();
    let master = wait_agreed(&all, None, STEP)
        .unwrap_or_else(|| panic!("no agreed hub\n{}", dump_all(all.iter().copied())));
    each_emits_to_all_others(&all, "before", false);

    // SIGKILL the master: its hub connections close at once, its hellos stop.
    let at = procs.iter().position(|p| p.name() == master).unwrap();
    let mut old = procs.remove(at);
    let disconnects: Vec<usize> = procs
        .iter()
        .map(|p| p.events("disconnected").len())
        .collect();
    let killed = Instant::now();
    old.kill().expect("kill the master");
    let survivors: Vec<&Proc> = procs.iter().collect();

    // While there is no hub, emits are queued...
    for (p, before) in survivors.iter().zip(&disconnects) {
        let lost = p.wait_until(
            |lines| {
                lines
                    .iter()
                    .filter(|v| v["event"] == "disconnected")
                    .count()
                    > *before
            },
            STEP,
        );
        assert!(
            lost,
            "{} did not notice the hub close\n{}",
            p.name(),
            p.dump()
        );
        emit(
            p,
            &format!("queued.{}", p.name()),
            &json!({"from": p.name(), "text": "hello\nworld", "n": [1, 2.5, null]}),
        );
    }
    // ...a new master is elected and everyone reconnects to its hub...
    let new_master = wait_agreed(&survivors, Some(&master), FAILOVER).unwrap_or_else(|| {
        panic!(
            "no new hub within {FAILOVER:?} of killing {master}\n{}",
            dump_all(survivors.iter().copied())
        )
    });
    let failover = killed.elapsed();
    eprintln!("master {master} killed; {new_master} serves the hub after {failover:?}");
    // ...and the queued events are delivered, once each.
    each_emits_to_all_others(&survivors, "queued", true);
    each_emits_to_all_others(&survivors, "after", false);

    // SIGTERM: a clean exit.
    for p in &mut procs {
        let status = p.terminate().expect("terminate");
        assert!(
            status.success(),
            "{} exited {status}\n{}",
            p.name(),
            p.dump()
        );
    }
}

/// Reads one JSON line from the hub, or panics with `what`.
fn read_json(reader: &mut impl BufRead, what: &str) -> Value {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e} in {line:?}"))
}

#[test]
fn the_hub_speaks_json_lines() {
    let port = 47_311;
    let solo = spawn("solo", port, "0.5", &run_key());
    let hub_port = solo.wait_event("ready", STEP).unwrap()["hub"]
        .as_u64()
        .expect("ready carries the hub port");
    // Alone, it elects itself and serves its hub.
    assert!(solo.wait_event("hub", STEP).is_some(), "{}", solo.dump());

    let stream = TcpStream::connect(("127.0.0.1", hub_port as u16)).expect("connect to the hub");
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writeln!(writer, r#"{{"hello":"raw"}}"#).unwrap();
    assert_eq!(
        read_json(&mut reader, "welcome"),
        json!({"welcome": "solo"})
    );

    // The master's own emits come to us as one line each.
    emit(&solo, "greet", &json!({"text": "two\nlines", "crab": "🦀"}));
    assert_eq!(
        read_json(&mut reader, "greet"),
        json!({"event": "greet", "data": {"text": "two\nlines", "crab": "🦀"}, "origin": "solo"})
    );

    // Ours reach the master; one claiming another origin than our hello is dropped.
    writeln!(writer, r#"{{"event":"spoof","data":1,"origin":"solo"}}"#).unwrap();
    writeln!(
        writer,
        r#"{{"event":"from-raw","data":[1,"ü"],"origin":"raw"}}"#
    )
    .unwrap();
    let got = solo.wait_for(
        |v| v["event"] == "received" && v["name"] == "from-raw",
        STEP,
    );
    assert_eq!(
        got,
        Some(json!({"event": "received", "name": "from-raw", "data": [1, "ü"], "origin": "raw"})),
        "{}",
        solo.dump()
    );
    assert!(received(&solo, "spoof").is_empty(), "{}", solo.dump());

    // A line that is not ours ends the connection.
    writeln!(writer, "garbage").unwrap();
    let mut rest = String::new();
    assert_eq!(reader.read_line(&mut rest).expect("EOF, not a timeout"), 0);

    let mut solo = solo;
    let status = solo.terminate().expect("terminate");
    assert!(status.success(), "{}", solo.dump());
}
