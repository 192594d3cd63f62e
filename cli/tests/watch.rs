//! `shoal watch` with real processes: JSON lines on a namespace LAN
//! (joins, masters, goodbyes and timeouts, the filters), the live view
//! under a pseudo-terminal read back through a terminal emulator, and
//! `--once` and `--channel` on loopback.
//!
//! Loopback runs use UDP ports 47800-47819 only. Every wait is for a
//! line or a screen that shows something, bounded by a generous timeout.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Lan, Proc};

/// Long enough for a slow, loaded machine; the tests wait on conditions,
/// so a fast one never waits this long.
const LONG: Duration = Duration::from_secs(20);

/// The `shoal` binary under test.
fn shoal() -> &'static str {
    env!("CARGO_BIN_EXE_shoal")
}

/// The root package's `examples/node.rs`, built once per run.
fn node_binary() -> PathBuf {
    support::peer::build_example("node")
}

/// A node peer on loopback port `port`, advertising `{"id": id}`.
fn loopback_peer(id: &str, port: u16, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(node_binary());
    cmd.args(["--id", id, "--port", &port.to_string()])
        .args(extra);
    Proc::spawn(id, cmd).expect("spawn node peer")
}

/// A line's node advertises `{"id": id}`.
fn about(line: &Value, id: &str) -> bool {
    line["node"]["info"]["id"] == id
}

/// Waits for an `event` line about the peer advertising `id`.
fn wait_about(watcher: &Proc, event: &str, id: &str) -> Value {
    watcher
        .wait_for(|l| l["event"] == event && about(l, id), LONG)
        .unwrap_or_else(|| panic!("no {event} about {id}\n{}", watcher.dump()))
}

// ---------------------------------------------------------------------
// A namespace LAN: JSON lines

#[test]
fn json_lines_report_joins_masters_goodbyes_and_timeouts_and_filters_pick_them() {
    require_netns!();
    let lan = Lan::new(4).expect("namespace LAN");
    let broadcast = Lan::SUBNET_BROADCAST.to_string();
    let watch = |name: &str, filters: &[&str]| {
        let mut args = vec!["--broadcast", &broadcast, "watch", "--format", "json"];
        args.extend_from_slice(filters);
        let p = Proc::spawn(name, lan.host(0).command(shoal(), &args)).expect("spawn watch");
        p.wait_event("start", LONG)
            .unwrap_or_else(|| panic!("no start line\n{}", p.dump()));
        p
    };
    let all = watch("watch", &[]);
    let masters = watch("watch-master", &["--master"]);
    let named = watch("watch-b", &["--name", "b"]);
    assert_eq!(
        all.events("start")[0]["node"]["eligible"],
        false,
        "a watcher never stands"
    );

    let node = node_binary();
    let peer = |i: usize, id: &str, weight: &str, extra: &[&str]| {
        let mut args = vec!["--id", id, "--lan", "--broadcast", &broadcast];
        args.extend_from_slice(&["--weight", weight]);
        args.extend_from_slice(extra);
        Proc::spawn(id, lan.host(i).command(&node, args)).expect("spawn peer")
    };
    let mut a = peer(1, "a", "0.9", &["--register", "kv@1.0.0:7000"]);
    let _b = peer(2, "b", "0.5", &[]);
    let mut c = peer(3, "c", "0.1", &[]);

    for id in ["a", "b", "c"] {
        let join = wait_about(&all, "join", id);
        assert_eq!(
            join["node"]["host_name"].as_str().map(str::is_empty),
            Some(false)
        );
        let addr = join["node"]["addr"].as_str().unwrap();
        assert!(addr.starts_with("10.250.0."), "{join}");
        assert!(join["t"].is_f64());
    }
    let master = wait_about(&all, "master", "a");
    assert_eq!(master["node"]["master"], true);
    let kv = |l: &Value| l["registration"]["id"] == "/kv/1.0.0/127.0.0.1/7000";
    all.wait_for(|l| l["event"] == "online" && kv(l), LONG)
        .unwrap_or_else(|| panic!("kv never online\n{}", all.dump()));

    // A goodbye is reported as such, at once.
    c.terminate().expect("SIGTERM c");
    assert_eq!(wait_about(&all, "leave", "c")["reason"], "goodbye");

    // A crash is a timeout, and the next heaviest takes over.
    a.kill().expect("SIGKILL a");
    let leave = wait_about(&all, "leave", "a");
    assert_eq!(leave["reason"], "timeout");
    assert_eq!(leave["node"]["master"], true, "it left as master");
    wait_about(&all, "master", "b");
    let offline = all
        .wait_for(|l| l["event"] == "offline" && kv(l), LONG)
        .unwrap_or_else(|| panic!("kv never offline\n{}", all.dump()));
    assert_eq!(offline["reason"], "ownerGone");

    // --master: the masters' news only.
    wait_about(&masters, "master", "a");
    assert_eq!(wait_about(&masters, "leave", "a")["reason"], "timeout");
    wait_about(&masters, "master", "b");
    let lines = masters.lines();
    assert!(
        !lines.iter().any(|l| l["event"] == "join" && !about(l, "a")),
        "--master shows no non-master's join\n{}",
        masters.dump()
    );
    assert!(!lines.iter().any(|l| about(l, "c")), "{}", masters.dump());
    assert!(
        !lines.iter().any(|l| l.get("registration").is_some()),
        "--master shows no registrations\n{}",
        masters.dump()
    );

    // --name b: b's news only.
    wait_about(&named, "join", "b");
    wait_about(&named, "master", "b");
    let lines = named.lines();
    assert!(
        !lines
            .iter()
            .any(|l| about(l, "a") || about(l, "c") || l.get("registration").is_some()),
        "--name b shows only b (and no registration: none is named b)\n{}",
        named.dump()
    );

    for mut w in [all, masters, named] {
        w.terminate_cleanly(LONG);
    }
}

// ---------------------------------------------------------------------
// Loopback: --once and --channel

#[test]
fn once_prints_a_snapshot_as_json_or_tables_and_exits_0() {
    const PORT: u16 = 47_802;
    let port = PORT.to_string();
    let mut kv = loopback_peer(
        "kv-owner",
        PORT,
        &["--weight", "0.9", "--register", "kv@1.0.0:7000"],
    );
    // Registered, and master (alone, it promotes itself): the snapshot
    // has both to show.
    for event in ["registered", "promotion"] {
        kv.wait_event(event, LONG)
            .unwrap_or_else(|| panic!("no {event}\n{}", kv.dump()));
    }

    let once = |format: &[&str]| {
        let mut args = vec!["--loopback", "--port", &port, "watch", "--once"];
        args.extend_from_slice(format);
        let out = Command::new(shoal())
            .args(&args)
            .output()
            .expect("run watch --once");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };

    // In a pipe, JSON without asking: one document.
    let doc: Value = serde_json::from_str(once(&[]).trim()).expect("one JSON document");
    let nodes = doc["nodes"].as_array().expect("nodes");
    assert_eq!(nodes[0]["self"], true, "{doc}");
    assert_eq!(nodes[0]["eligible"], false, "{doc}");
    let peer = nodes
        .iter()
        .find(|n| n["info"]["id"] == "kv-owner")
        .expect("the peer");
    assert_eq!(peer["master"], true, "{doc}");
    let regs = doc["registrations"].as_array().expect("registrations");
    assert!(
        regs.iter().any(|r| r["id"] == "/kv/1.0.0/127.0.0.1/7000"),
        "{doc}"
    );

    // With --master: no registrations, and not this (ineligible) node.
    let doc: Value = serde_json::from_str(once(&["--master", "--format", "json"]).trim()).unwrap();
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["nodes"][0]["info"]["id"], "kv-owner");
    assert_eq!(doc["registrations"], serde_json::json!([]));

    let table = once(&["--format", "table"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("ROLE") && header.contains("INFO"),
        "the table of shoal nodes: {table}"
    );
    assert!(
        table.lines().any(|l| l.contains("  self  ")),
        "this node's row: {table}"
    );
    let peer_row = line_with(&table, "kv-owner").expect("peer row");
    assert!(peer_row.contains(" master "), "master marked: {table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("NAME") && l.contains("LAST KNOWN")),
        "{table}"
    );
    let reg = table
        .lines()
        .find(|l| l.starts_with("kv "))
        .expect("registration row");
    assert!(
        reg.contains("1.0.0") && reg.contains("127.0.0.1  7000"),
        "{table}"
    );
    kv.terminate().unwrap();
}

#[test]
fn messages_and_registrations_are_json_lines_and_the_live_view_needs_a_terminal() {
    const PORT: u16 = 47_803;
    let port = PORT.to_string();
    let mut cmd = Command::new(shoal());
    cmd.args(["--loopback", "--port", &port, "watch", "--channel", "jobs"]);
    let mut watcher = Proc::spawn("watch", cmd).unwrap();
    watcher.wait_event("start", LONG).expect("start");
    let _sender = loopback_peer(
        "sender",
        PORT,
        &[
            "--send-channel",
            "jobs",
            "--send-count",
            "3",
            "--send-delay",
            "500",
        ],
    );
    assert!(
        watcher.wait_until(
            |ls| ls.iter().filter(|l| l["event"] == "message").count() == 3,
            LONG
        ),
        "{}",
        watcher.dump()
    );
    let messages = watcher.events("message");
    let offline = |id: &str| {
        watcher
            .wait_for(
                |l| l["event"] == "offline" && l["registration"]["id"] == id,
                LONG,
            )
            .unwrap_or_else(|| panic!("{id} never offline\n{}", watcher.dump()))
    };
    let _dereg = loopback_peer(
        "dereg",
        PORT,
        &["--register", "kv@1.0.0:7000", "--deregister-after", "500"],
    );
    let _lapse = loopback_peer(
        "lapse",
        PORT,
        &[
            "--register",
            "tmp@1.0.0:7001",
            "--ttl",
            "500",
            "--refresh",
            "0",
        ],
    );
    assert_eq!(
        offline("/kv/1.0.0/127.0.0.1/7000")["reason"],
        "deregistered"
    );
    assert_eq!(offline("/tmp/1.0.0/127.0.0.1/7001")["reason"], "expired");
    let lines = watcher.lines();
    for id in ["/kv/1.0.0/127.0.0.1/7000", "/tmp/1.0.0/127.0.0.1/7001"] {
        let at = |event: &str| {
            lines
                .iter()
                .position(|l| l["event"] == event && l["registration"]["id"] == id)
        };
        assert!(
            at("online").is_some() && at("online") < at("offline"),
            "{}",
            watcher.dump()
        );
    }
    assert!(messages
        .iter()
        .all(|m| m["channel"] == "jobs" && m["data"]["from"] == "sender"));
    let seqs: Vec<&Value> = messages.iter().map(|m| &m["data"]["seq"]).collect();
    assert_eq!(seqs.len(), 3);
    assert_eq!(messages[0]["from"].as_str().unwrap().len(), 32, "whole id");
    watcher.terminate_cleanly(LONG);

    // --format table in a pipe is a usage error (exit 2), said on stderr.
    let out = Command::new(shoal())
        .args(["--loopback", "--port", &port, "watch", "--format", "table"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a terminal"));

    let help = Command::new(shoal())
        .args(["watch", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in [
        "Examples:",
        "--once",
        "leave",
        "goodbye",
        "ownerGone",
        "--master",
    ] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
}

// ---------------------------------------------------------------------
// The live view under a pseudo-terminal

/// `shoal watch` in a pty of 140x40, its output fed to a terminal
/// emulator.
struct Tty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Tty {
    fn spawn(args: &[&str]) -> Tty {
        use portable_pty::{native_pty_system, CommandBuilder, PtySize};
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 140,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut cmd = CommandBuilder::new(shoal());
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd).expect("spawn in the pty");
        drop(pair.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(nz(40), nz(140), 0)));
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().expect("pty writer");
        Tty {
            child,
            writer,
            screen,
            _master: pair.master,
        }
    }

    /// The screen's text now.
    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Whether the program is on the alternate screen.
    fn on_alternate_screen(&self) -> bool {
        self.screen.lock().unwrap().screen().alternate_screen()
    }

    /// Waits until `cond` holds of the screen's text; panics with the
    /// screen otherwise.
    fn wait(&self, what: &str, cond: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + LONG;
        loop {
            let text = self.text();
            if cond(&text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the exit, asserts it is 0 and that the terminal was given
    /// back: the alternate screen left and the cursor shown.
    fn assert_exits_restored(&mut self) {
        let deadline = Instant::now() + LONG;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit {status:?}:\n{}", self.text());
        // The reader thread may still be feeding the last bytes.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (alt, hidden) = {
                let parser = self.screen.lock().unwrap();
                (
                    parser.screen().alternate_screen(),
                    parser.screen().hide_cursor(),
                )
            };
            if !alt && !hidden {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "terminal not restored (alternate screen {alt}, cursor hidden {hidden})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nz(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("not zero")
}

/// The line of `text` that shows `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}

#[test]
fn the_live_view_shows_nodes_masters_registrations_and_departures() {
    const PORT: u16 = 47_801;
    let port = PORT.to_string();
    let mut tty = Tty::spawn(&["--loopback", "--port", &port, "watch", "--channel", "jobs"]);
    tty.wait("the alternate screen", |_| tty.on_alternate_screen());
    let _heavy = loopback_peer(
        "heavy",
        PORT,
        &["--weight", "0.9", "--register", "kv@1.0.0:7000"],
    );
    let light_args = [
        "--weight",
        "0.1",
        "--send-channel",
        "jobs",
        "--send-count",
        "2",
        "--send-delay",
        "1000",
    ];
    let mut light = loopback_peer("light", PORT, &light_args);

    tty.wait("both peers, the master marked, this node", |t| {
        line_with(t, r#"{"id":"heavy"}"#).is_some_and(|l| l.contains("* master"))
            && line_with(t, r#"{"id":"light"}"#).is_some_and(|l| !l.contains("master"))
            && t.contains("(this node)")
    });
    tty.wait("the registration row", |t| {
        t.lines().any(|l| {
            l.starts_with("kv ")
                && l.contains("1.0.0")
                && l.contains("127.0.0.1:7000")
                && l.contains("ago")
        })
    });
    tty.wait("light's messages on jobs", |t| {
        t.contains("Messages")
            && t.contains(r#"{"from":"light","seq":0}"#)
            && t.contains(r#"{"from":"light","seq":1}"#)
    });
    let text = tty.text();
    eprintln!("the screen:\n{text}");
    assert!(
        text.lines().next().unwrap().contains("shoal watch"),
        "{text}"
    );
    assert!(text.contains("joined: "), "joins flash:\n{text}");

    light.terminate().unwrap();
    tty.wait("the goodbye flash, and light gone", |t| {
        t.lines()
            .any(|l| l.contains("left: ") && l.contains("(said goodbye)"))
            && line_with(t, r#"{"id":"light"}"#).is_none()
    });

    tty.send(b"q");
    tty.assert_exits_restored();
}

#[test]
fn the_live_view_gives_the_terminal_back_on_esc_ctrl_c_sigterm_and_sighup() {
    const PORT: u16 = 47_804;
    let port = PORT.to_string();
    // Its advertisement holds a right-to-left override, which the view
    // must show escaped rather than let it reorder the line.
    let _peer = loopback_peer("p", PORT, &["--advertise", r#"{"note":"ab\u202ecd"}"#]);
    for how in ["Esc", "^C", "SIGTERM", "SIGHUP"] {
        let mut tty = Tty::spawn(&["--loopback", "--port", &port, "watch"]);
        tty.wait("the peer, its override escaped", |t| {
            t.contains(r#""id":"p""#) && t.contains(r#"ab\u{202e}cd"#) && !t.contains('\u{202e}')
        });
        eprintln!("quitting by {how}");
        match how {
            "Esc" => tty.send(b"\x1b"),
            "^C" => tty.send(b"\x03"),
            signal => {
                let signal = match signal {
                    "SIGTERM" => libc::SIGTERM,
                    _ => libc::SIGHUP,
                };
                let pid = tty.child.process_id().expect("pid") as libc::pid_t;
                // SAFETY: kill(2) on our own child, not yet reaped.
                assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
            }
        }
        tty.assert_exits_restored();
    }
}
