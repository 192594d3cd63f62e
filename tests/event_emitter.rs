//! `examples/event_emitter.rs` as separate processes on loopback: every
//! node's events reach every other node exactly once, through the master's
//! hub; after the master is SIGKILLed the survivors elect another, reconnect
//! to its hub, deliver what was emitted meanwhile, and go on. The delivery
//! guarantee of the example's docs: a node started during a new master's
//! settle window gets none of the events emitted before it joined, and a
//! stream of events across a failover arrives at most once. A last test
//! speaks the hub's JSON-lines protocol over raw TCP connections. Every
//! line the example prints carries `t`, ms since the Unix epoch.
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

/// The new master keeps what it relays for late audience members this long
/// (`settle_window` with the timings below).
const SETTLE: Duration = Duration::from_secs(5);

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
        .args(["--passphrase", key])
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

fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Every line each proc printed carries `t`, ms since the Unix epoch, no
/// earlier than `since` (epoch ms) and not in the future.
fn assert_timestamped(procs: &[&Proc], since: f64) {
    let now = epoch_ms();
    for p in procs {
        let lines = p.lines();
        assert!(!lines.is_empty(), "{} printed nothing", p.name());
        for line in lines {
            let t = line["t"].as_f64();
            assert!(
                t.is_some_and(|t| t >= since && t <= now),
                "{}: a line without a current t: {line}",
                p.name()
            );
        }
    }
}

/// `line` without its `t`, to compare with an expected line.
fn untimed(mut line: Value) -> Value {
    if let Some(fields) = line.as_object_mut() {
        fields.remove("t");
    }
    line
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
    let since = epoch_ms();
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
    assert_timestamped(&procs.iter().collect::<Vec<_>>(), since);
    assert_timestamped(&[&old], since);
}

/// The old failure: a new master replayed what it relayed during its settle
/// window to every node that connected in that window, so a node started
/// then got events emitted before it existed. Now it gets none of them, and
/// what is emitted once it has joined reaches it once.
#[test]
fn a_node_started_in_a_new_masters_settle_window_gets_no_earlier_events() {
    let port = 47_312;
    let key = run_key();
    let mut n0 = spawn("n0", port, "0.9", &key);
    let n1 = spawn("n1", port, "0.5", &key);
    wait_agreed(&[&n0, &n1], None, STEP)
        .unwrap_or_else(|| panic!("no agreed hub\n{}", dump_all([&n0, &n1])));

    // n1 emits while it notices n0 is gone, then as the new master: all
    // before n2 exists.
    n0.kill().expect("kill the master");
    for k in 0..4 {
        emit(&n1, &format!("early.{k}"), &json!(k));
    }
    assert!(
        n1.wait_until(|lines| lines.iter().any(|v| v["event"] == "hub"), STEP),
        "n1 never served the hub\n{}",
        n1.dump()
    );
    let serving = Instant::now();
    for k in 4..8 {
        emit(&n1, &format!("early.{k}"), &json!(k));
    }
    assert!(
        n1.wait_until(
            |lines| lines.iter().filter(|v| v["event"] == "emitted").count() == 8,
            STEP
        ),
        "{}",
        n1.dump()
    );

    let n2 = spawn("n2", port, "0.1", &key);
    assert_eq!(
        wait_agreed(&[&n1, &n2], Some("n0"), STEP).as_deref(),
        Some("n1"),
        "{}",
        dump_all([&n1, &n2])
    );
    let joined = serving.elapsed();
    assert!(
        joined < SETTLE,
        "n2 connected {joined:?} after n1 began serving: outside the settle window, \
         so this run proves nothing\n{}",
        dump_all([&n1, &n2])
    );

    // Joined now: a new event reaches it, once.
    emit(&n1, "late", &json!("after n2 joined"));
    assert!(
        n2.wait_for(|v| v["event"] == "received" && v["name"] == "late", STEP)
            .is_some(),
        "{}",
        dump_all([&n1, &n2])
    );
    thread::sleep(GRACE);
    let got: Vec<Value> = n2.events("received");
    assert_eq!(
        got.iter().map(|v| v["name"].clone()).collect::<Vec<_>>(),
        [json!("late")],
        "n2 got events emitted before it joined\n{}",
        dump_all([&n1, &n2])
    );
    for mut p in [n1, n2] {
        p.terminate_cleanly(STEP);
    }
}

/// Three nodes emit a numbered stream while the master is SIGKILLed and
/// another takes over. No node receives any event twice, and the stream
/// reaches every survivor again once the new hub serves.
#[test]
fn no_event_is_delivered_twice_across_a_failover() {
    let since = epoch_ms();
    let port = 47_313;
    let key = run_key();
    let mut procs: Vec<Proc> = [("n0", "0.9"), ("n1", "0.7"), ("n2", "0.5"), ("n3", "0.3")]
        .iter()
        .map(|(id, w)| spawn(id, port, w, &key))
        .collect();
    let all: Vec<&Proc> = procs.iter().collect();
    let master = wait_agreed(&all, None, STEP)
        .unwrap_or_else(|| panic!("no agreed hub\n{}", dump_all(all.iter().copied())));
    let at = procs.iter().position(|p| p.name() == master).unwrap();
    let mut old = procs.remove(at);
    let survivors: Vec<&Proc> = procs.iter().collect();

    // 25 ms apart: about 20 before the kill, the rest through the election
    // and past the new hub's settle window start.
    let mut k = 0;
    let mut agreed_at = None;
    let deadline = Instant::now() + FAILOVER + STEP;
    loop {
        for p in &survivors {
            emit(p, "tick", &json!(k));
        }
        k += 1;
        if k == 20 {
            old.kill().expect("kill the master");
        }
        if k > 20 && agreed_at.is_none() {
            agreed_at = wait_agreed(&survivors, Some(&master), Duration::ZERO).map(|_| k);
        }
        if agreed_at.is_some_and(|at| k >= at + 20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new hub after killing {master}\n{}",
            dump_all(survivors.iter().copied())
        );
        thread::sleep(Duration::from_millis(25));
    }
    let last = k - 1;
    // The last tick of every other survivor arrives...
    for to in &survivors {
        let arrived = to.wait_until(
            |lines| {
                survivors
                    .iter()
                    .filter(|f| f.name() != to.name())
                    .all(|from| {
                        lines.iter().any(|v| {
                            v["event"] == "received"
                                && v["origin"] == from.name()
                                && v["data"] == last
                        })
                    })
            },
            STEP,
        );
        assert!(
            arrived,
            "{} missed a last tick\n{}",
            to.name(),
            dump_all(survivors.iter().copied())
        );
    }
    thread::sleep(GRACE);
    // ...and no (origin, tick) arrives twice.
    for to in &survivors {
        let mut seen = std::collections::HashSet::new();
        for v in received(to, "tick") {
            let id = (v["origin"].to_string(), v["data"].to_string());
            assert!(
                seen.insert(id.clone()),
                "{} got {id:?} twice\n{}",
                to.name(),
                dump_all(survivors.iter().copied())
            );
        }
        eprintln!(
            "{}: {} of {} ticks from others",
            to.name(),
            seen.len(),
            2 * k
        );
    }
    for p in &mut procs {
        p.terminate_cleanly(STEP);
    }
    assert_timestamped(&procs.iter().collect::<Vec<_>>(), since);
}

/// Reads one JSON line from the hub, or panics with `what`.
fn read_json(reader: &mut impl BufRead, what: &str) -> Value {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e} in {line:?}"))
}

/// Sends one JSON line to the hub.
fn send_json(writer: &mut TcpStream, line: Value) {
    writeln!(writer, "{line}").expect("write to the hub");
}

/// Connects to the hub on `port` and says hello as `id` with discovery id `node`.
fn hello(port: u16, id: &str, node: &str) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the hub");
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    send_json(&mut writer, json!({"hello": id, "node": node}));
    (writer, BufReader::new(stream))
}

#[test]
fn the_hub_speaks_json_lines() {
    let since = epoch_ms();
    let port = 47_311;
    let key = run_key();
    let solo = spawn("solo", port, "0.5", &key);
    let ready = solo.wait_event("ready", STEP).unwrap();
    let hub_port = ready["hub"].as_u64().expect("ready carries the hub port") as u16;
    let solo_node = ready["node"]
        .as_str()
        .expect("ready carries the node id")
        .to_owned();
    // Alone, it elects itself and serves its hub.
    assert!(solo.wait_event("hub", STEP).is_some(), "{}", solo.dump());

    // "raw" joins discovery as an event-emitter node (examples/node stands
    // in for its discovery) and speaks for it on a raw TCP connection;
    // "ghost" only connects: no node knows it, it is in no audience.
    let mut member = Command::new(build_example("node"));
    member
        .args([
            "--id",
            "raw",
            "--port",
            &port.to_string(),
            "--passphrase",
            &key,
        ])
        .args(["--broadcast", "127.255.255.255", "--weight", "0.1"])
        .args(["--advertise", r#"{"app": "event-emitter", "hub": 1}"#])
        .args(TIMING);
    let mut member = Proc::spawn("raw-discovery", member).expect("spawn examples/node");
    let raw_node = member.wait_event("ready", STEP).expect("ready")["iid"]
        .as_str()
        .expect("ready carries the discovery id")
        .to_owned();
    member
        .wait_for(|v| v["event"] == "added" && v["peer"] == "solo", STEP)
        .unwrap_or_else(|| panic!("{}", member.dump()));
    thread::sleep(Duration::from_millis(500)); // solo hears raw's hellos too

    let (mut writer, mut reader) = hello(hub_port, "raw", &raw_node);
    assert_eq!(
        read_json(&mut reader, "welcome"),
        json!({"welcome": "solo"})
    );
    let (_ghost_writer, mut ghost) = hello(hub_port, "ghost", "not-a-member");
    assert_eq!(read_json(&mut ghost, "welcome"), json!({"welcome": "solo"}));

    // The master's own emits come to its audience as one line each (without
    // the audience), numbered from 0...
    emit(&solo, "greet", &json!({"text": "two\nlines", "crab": "🦀"}));
    assert_eq!(
        read_json(&mut reader, "greet"),
        json!({"event": "greet", "data": {"text": "two\nlines", "crab": "🦀"}, "origin": "solo",
               "node": solo_node, "seq": 0})
    );
    // ...and to nobody outside it.
    ghost
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut nothing = String::new();
    assert!(
        ghost.read_line(&mut nothing).is_err(),
        "ghost got {nothing:?}"
    );

    // Ours reach the master when it is in the audience. Dropped: one claiming
    // another origin or node than our hello, and one whose audience lacks solo.
    let frame = |event: &str, origin: &str, node: &str, seq: u64, to: &[&str]| json!({"event": event, "data": [1, "ü"], "origin": origin, "node": node, "seq": seq, "to": to});
    let to_solo = [solo_node.as_str()];
    send_json(&mut writer, frame("spoof", "solo", &raw_node, 0, &to_solo));
    send_json(
        &mut writer,
        frame("spoof-node", "raw", "other", 0, &to_solo),
    );
    send_json(&mut writer, frame("not-for-solo", "raw", &raw_node, 0, &[]));
    send_json(
        &mut writer,
        frame("from-raw", "raw", &raw_node, 1, &to_solo),
    );
    // The same event again, as a misbehaving hub might hand it over: delivered once.
    send_json(
        &mut writer,
        frame("from-raw", "raw", &raw_node, 1, &to_solo),
    );
    send_json(&mut writer, frame("last", "raw", &raw_node, 2, &to_solo));
    let got = solo.wait_for(|v| v["event"] == "received" && v["name"] == "last", STEP);
    assert!(got.is_some(), "{}", solo.dump());
    let got: Vec<Value> = solo.events("received").into_iter().map(untimed).collect();
    assert_eq!(
        got,
        [
            json!({"event": "received", "name": "from-raw", "data": [1, "ü"], "origin": "raw"}),
            json!({"event": "received", "name": "last", "data": [1, "ü"], "origin": "raw"}),
        ],
        "{}",
        solo.dump()
    );

    // A line that is not ours ends the connection.
    writeln!(writer, "garbage").unwrap();
    let mut rest = String::new();
    assert_eq!(reader.read_line(&mut rest).expect("EOF, not a timeout"), 0);

    let mut solo = solo;
    let status = solo.terminate().expect("terminate");
    assert!(status.success(), "{}", solo.dump());
    member.stop(STEP);
    assert_timestamped(&[&solo], since);
}
