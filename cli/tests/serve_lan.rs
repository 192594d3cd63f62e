//! The sidecar on a namespace LAN, as real processes: `shoal serve` on
//! several hosts of a private LAN (network namespaces joined by a bridge,
//! nothing linked to a real interface), each answering HTTP on its host's
//! own 127.0.0.1, and real HTTP clients (reqwest) inside those hosts.
//!
//! * A POST to the sidecar on host 1 is answered by a GET on host 3 within
//!   200 ms.
//! * The documented curl commands of hera, Thalassa and bender run
//!   verbatim, ports included (`localhost:8080`, `localhost:9000`), against
//!   two sidecars inside one host, where those ports are free.
//! * A Server-Sent Events client on host 3 sees `online`, then `offline`
//!   when the time to live runs out, and `offline` when host 1's sidecar is
//!   SIGKILLed, and nothing of another name.
//!
//! Needs root and `ip netns`; skips elsewhere unless
//! `SHOAL_REQUIRE_NETNS=1`.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{Host, Lan, Proc};

/// The cluster's UDP port: namespaces are isolated, any port will do.
const PORT: &str = "47990";

/// Starts `shoal serve` in `host` on its 127.0.0.1 (any free port) and
/// returns it with its base URL, read from its `listening` line.
fn sidecar(host: &Host, label: &str) -> (Proc, String) {
    sidecar_on(host, label, "127.0.0.1:0")
}

/// Starts `shoal serve --http http` in `host`; returns it with its base URL.
fn sidecar_on(host: &Host, label: &str, http: &str) -> (Proc, String) {
    let bcast = Lan::SUBNET_BROADCAST.to_string();
    let cmd = host.command(
        env!("CARGO_BIN_EXE_shoal"),
        [
            "--broadcast",
            &bcast,
            "--port",
            PORT,
            "serve",
            "--http",
            http,
        ],
    );
    let proc = Proc::spawn(label, cmd).expect("spawn shoal serve");
    let listening = proc
        .wait_event("listening", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{label} did not listen:\n{}", proc.dump()));
    let addr = listening["http"].as_str().expect("http address").to_owned();
    (proc, format!("http://{addr}"))
}

/// Runs `f` with a reqwest client on a fresh thread inside `host` (so its
/// connections are that host's), on a runtime of its own.
fn in_host<R, F, Fut>(host: &Host, f: F) -> thread::JoinHandle<R>
where
    R: Send + 'static,
    F: FnOnce(reqwest::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R>,
{
    let host = host.clone();
    thread::spawn(move || {
        host.enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            rt.block_on(f(client))
        })
        .expect("enter the host's namespace")
    })
}

/// GETs `url` as JSON, panicking on anything but 200.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let resp = client.get(url).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.expect("JSON body")
}

/// Runs the shell command line `line` in `host`, as a user would type it;
/// returns its standard output as JSON.
fn sh(host: &Host, line: &str) -> Value {
    let out = host
        .run("sh", ["-c", line], Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(out.status.success(), "{line}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{line}: not JSON ({e}): {out:?}"))
}

/// The commands of hera's, Thalassa's and bender's documentation, each
/// run verbatim by `sh` inside a host (so that `localhost:8080` and
/// `localhost:9000` are free, whatever runs on this machine): hera's
/// sidecar on 8080 and Thalassa's on 9000, two nodes of one cluster.
#[test]
fn the_documented_curl_commands_run_verbatim_on_their_own_ports() {
    require_netns!();
    let lan = Lan::new(1).expect("namespace LAN");
    let host = lan.host(0);
    let (_hera, _) = sidecar_on(host, "hera:8080", "127.0.0.1:8080");
    let (_thalassa, thalassa) = sidecar_on(host, "thalassa:9000", "127.0.0.1:9000");
    assert_eq!(thalassa, "http://127.0.0.1:9000");
    wait_cluster(host, &thalassa, 1);

    // hera's README.
    let object = json!({"host": "10.1.1.1", "port": 12345, "updated_at": "2012-12-18T13:27:01Z"});
    let put = sh(
        host,
        r#"curl -XPUT -d '{"host":"10.1.1.1", "port": 12345, "updated_at": "2012-12-18T13:27:01Z"}' http://localhost:8080/storage/1f11bbbb-df7a-47c5-8ba7-662f70261673"#,
    );
    assert_eq!(put, object);
    let storage = json!({"1f11bbbb-df7a-47c5-8ba7-662f70261673": object});
    assert_eq!(sh(host, "curl http://localhost:8080/storage"), storage);

    // Thalassa's routes, on the other sidecar: the entry has replicated.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sh(host, "curl -s http://localhost:9000/storage") != storage {
        assert!(
            Instant::now() < deadline,
            "hera's entry never reached :9000"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let posted = sh(
        host,
        r#"curl -X POST -d '{"secondsToExpire": 10}' http://localhost:9000/registrations/myapp/1.0.0/192.168.8.106/8080"#,
    );
    common::assert_thalassa_shape(&posted, "myapp", "1.0.0", "192.168.8.106", 8080);
    for line in [
        "curl http://localhost:9000/registrations",
        "curl http://localhost:9000/registrations/myapp",
        "curl http://localhost:9000/registrations/myapp/1.0.0",
    ] {
        let list = sh(host, line);
        let mine: Vec<&Value> = list
            .as_array()
            .unwrap_or_else(|| panic!("{line}: {list}"))
            .iter()
            .filter(|r| r["name"] == "myapp")
            .collect();
        assert_eq!(mine.len(), 1, "{line}: {list}");
        common::assert_thalassa_shape(mine[0], "myapp", "1.0.0", "192.168.8.106", 8080);
    }
    let all = sh(host, "curl http://localhost:9000/registrations/storage");
    assert_eq!(all[0]["meta"]["hera"], object, "{all}");

    // bender's POST /registrations.
    let bender = sh(
        host,
        r#"curl -X POST -H 'Content-Type: application/json' -d '{"app": "billing", "version": "3.2.1", "host": "10.0.0.9", "port": 4000}' http://localhost:9000/registrations"#,
    );
    common::assert_thalassa_shape(&bender, "billing", "3.2.1", "10.0.0.9", 4000);
    let on_hera = sh(host, "curl http://localhost:8080/registrations/billing");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut on_hera = on_hera;
    while on_hera.as_array().is_none_or(Vec::is_empty) {
        assert!(
            Instant::now() < deadline,
            "bender's registration never reached :8080"
        );
        thread::sleep(Duration::from_millis(50));
        on_hera = sh(host, "curl -s http://localhost:8080/registrations/billing");
    }
    assert_eq!(on_hera[0]["id"], "/billing/3.2.1/10.0.0.9/4000");
}

/// Waits until the sidecar at `base` (in `host`) sees `others` other nodes.
fn wait_cluster(host: &Host, base: &str, others: usize) {
    let url = format!("{base}/nodes");
    in_host(host, move |client| async move {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let nodes = get_json(&client, &url).await;
            let n = nodes["nodes"].as_array().map_or(0, Vec::len);
            if n == others {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} sees {n} nodes, not {others}: {nodes}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .join()
    .expect("waiting for the cluster");
}

#[test]
fn a_post_on_host_1_is_answered_on_host_3_within_200ms() {
    require_netns!();
    let lan = Lan::new(3).expect("namespace LAN");
    let mut procs: Vec<(Proc, String)> = (0..3)
        .map(|i| sidecar(lan.host(i), &format!("sidecar{i}")))
        .collect();
    for (i, (_, base)) in procs.iter().enumerate() {
        wait_cluster(lan.host(i), base, 2);
    }
    let writer = procs[0].1.clone();
    let reader = procs[2].1.clone();

    let mut latencies = Vec::new();
    for round in 0..5 {
        let name = format!("probe{round}");
        // The reader polls host 3's sidecar over one kept-alive
        // connection, already open when the POST goes out.
        let (ready_tx, ready_rx) = mpsc::channel();
        let url = format!("{reader}/registrations/{name}");
        let seen = in_host(lan.host(2), move |client| async move {
            assert_eq!(get_json(&client, &url).await, json!([]));
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let found = get_json(&client, &url).await;
                if found.as_array().is_some_and(|a| !a.is_empty()) {
                    return (Instant::now(), found);
                }
                assert!(Instant::now() < deadline, "{url} never listed it");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        ready_rx.recv().expect("reader ready");
        let url = format!("{writer}/registrations/{name}/1.0.0/10.250.0.1/8080");
        let writer = writer.clone();
        let posted = in_host(lan.host(0), move |client| async move {
            // Connect first, so that the clock starts at the request.
            let _ = client.get(format!("{writer}/status")).send().await;
            let started = Instant::now();
            let resp = client
                .post(&url)
                .json(&json!({"secondsToExpire": 60, "zone": "eu"}))
                .send()
                .await
                .expect("POST");
            assert_eq!(resp.status(), 200, "POST {url}");
            started
        })
        .join()
        .expect("writer");
        let (seen_at, found) = seen.join().expect("reader");
        let latency = seen_at.duration_since(posted);
        assert_eq!(found[0]["name"], name.as_str());
        assert_eq!(found[0]["host"], "10.250.0.1");
        assert_eq!(found[0]["port"], 8080);
        assert_eq!(found[0]["meta"]["zone"], "eu");
        latencies.push(latency);
    }
    eprintln!("POST on host 1 -> GET on host 3: {latencies:?}");
    let worst = latencies.iter().max().unwrap();
    assert!(
        *worst < Duration::from_millis(200),
        "a POST took {worst:?} to be answered on another host ({latencies:?})"
    );
    for (proc, _) in &mut procs {
        proc.terminate_cleanly(Duration::from_secs(10));
    }
}

/// One Server-Sent Event as the client parsed it.
#[derive(Debug)]
struct Sse {
    at: Instant,
    event: String,
    data: Value,
}

/// The registration an event's data carries (the data itself, or its
/// `registration`).
fn registration(data: &Value) -> &Value {
    data.get("registration").unwrap_or(data)
}

/// Opens `url` as an event stream inside `host`, says when its headers
/// have come (the subscription is live), then sends every event until the
/// stream ends or `stop` fires.
fn sse_client(
    host: &Host,
    url: String,
    events: mpsc::Sender<Sse>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = in_host(host, move |client| async move {
        let resp = client
            .get(&url)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .expect("GET /events");
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        ready_tx.send(()).unwrap();
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let read = async {
            while let Some(chunk) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream")));
                // Events end with a blank line.
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let (mut event, mut data) = (String::from("message"), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    let data = serde_json::from_str(&data).expect("data is JSON");
                    let _ = events.send(Sse {
                        at: Instant::now(),
                        event,
                        data,
                    });
                }
            }
        };
        tokio::select! {
            _ = read => {}
            _ = stop => {}
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the event stream opened");
    handle
}

/// The next event within `timeout`, or a panic naming what was awaited.
fn next(events: &mpsc::Receiver<Sse>, timeout: Duration, what: &str) -> Sse {
    events
        .recv_timeout(timeout)
        .unwrap_or_else(|e| panic!("no {what} within {timeout:?}: {e}"))
}

#[test]
fn an_event_stream_on_host_3_sees_online_expiry_and_a_killed_owner() {
    require_netns!();
    let lan = Lan::new(3).expect("namespace LAN");
    let (mut owner, owner_url) = sidecar(lan.host(0), "owner");
    let (mut middle, middle_url) = sidecar(lan.host(1), "middle");
    let (mut watcher, watcher_url) = sidecar(lan.host(2), "watcher");
    wait_cluster(lan.host(0), &owner_url, 2);
    wait_cluster(lan.host(1), &middle_url, 2);
    wait_cluster(lan.host(2), &watcher_url, 2);

    let (tx, events) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let client = sse_client(
        lan.host(2),
        format!("{watcher_url}/events?name=svc"),
        tx,
        stop_rx,
    );

    let post = |path: &'static str, body: Value| {
        let url = format!("{owner_url}{path}");
        in_host(lan.host(0), move |client| async move {
            let resp = client.post(&url).json(&body).send().await.expect("POST");
            assert_eq!(resp.status(), 200, "POST {url}");
        })
        .join()
        .expect("POST");
    };

    // Another name first: the filter must keep it out of the stream.
    post(
        "/registrations/other/1.0.0/10.250.0.1/9000",
        json!({"secondsToExpire": 60}),
    );
    post(
        "/registrations/svc/1.0.0/10.250.0.1/8080",
        json!({"secondsToExpire": 1}),
    );
    let online = next(&events, Duration::from_secs(5), "online");
    assert_eq!(online.event, "online", "{online:?}");
    assert_eq!(
        registration(&online.data)["id"],
        "/svc/1.0.0/10.250.0.1/8080"
    );
    let expired = next(&events, Duration::from_secs(5), "offline on expiry");
    assert_eq!(expired.event, "offline", "{expired:?}");
    assert_eq!(expired.data["reason"], "expired", "{expired:?}");
    assert_eq!(
        registration(&expired.data)["id"],
        "/svc/1.0.0/10.250.0.1/8080"
    );
    let lived = expired.at.duration_since(online.at);
    assert!(
        lived >= Duration::from_millis(900),
        "it expired after {lived:?}, before its 1 s"
    );

    post(
        "/registrations/svc/2.0.0/10.250.0.1/8080",
        json!({"secondsToExpire": 60}),
    );
    let online = next(&events, Duration::from_secs(5), "online");
    assert_eq!(online.event, "online", "{online:?}");
    assert_eq!(registration(&online.data)["version"], "2.0.0");

    // SIGKILL: no goodbye, no deregistration; the owner is missed after
    // the node timeout (2.6 s at the defaults).
    let killed = Instant::now();
    owner.kill().expect("SIGKILL the owner's sidecar");
    let gone = next(&events, Duration::from_secs(6), "offline after SIGKILL");
    assert_eq!(gone.event, "offline", "{gone:?}");
    assert_eq!(gone.data["reason"], "ownerGone", "{gone:?}");
    assert_eq!(registration(&gone.data)["version"], "2.0.0");
    let after = gone.at.duration_since(killed);
    eprintln!("offline {after:?} after SIGKILL");
    assert!(
        after <= Duration::from_millis(2_600 + 1_000),
        "offline {after:?} after SIGKILL"
    );

    let _ = stop_tx.send(());
    client.join().expect("SSE client");
    let rest: Vec<Sse> = events.try_iter().collect();
    assert!(
        rest.iter().all(|e| registration(&e.data)["name"] == "svc"),
        "the name filter let through {rest:?}"
    );
    middle.terminate_cleanly(Duration::from_secs(10));
    watcher.terminate_cleanly(Duration::from_secs(10));
}
