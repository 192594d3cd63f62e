//! `shoal serve`, the HTTP sidecar, as a real process on loopback, driven
//! by real HTTP clients: reqwest, and the `curl` binary for the documented
//! examples of Thalassa, bender and hera.
//!
//! Every sidecar runs with `--loopback --port 478xx` (this file's UDP range
//! is 47820–47859, one port per test so that tests running in parallel do
//! not see each other's registrations) and `--http 127.0.0.1:0`; its
//! address comes from the `listening` line it prints first.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::assert_thalassa_shape;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::Proc;

const STARTUP: Duration = Duration::from_secs(15);

/// A running sidecar.
struct Sidecar {
    proc: Proc,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Sidecar {
    /// `shoal --loopback --port udp_port serve --http 127.0.0.1:0 extra...`
    fn start(udp_port: u16, extra: &[&str]) -> Sidecar {
        Sidecar::start_with(udp_port, extra, None)
    }

    fn start_with(udp_port: u16, extra: &[&str], token: Option<&str>) -> Sidecar {
        let mut cmd = command(udp_port);
        cmd.args(["serve", "--http", "127.0.0.1:0"]).args(extra);
        if let Some(token) = token {
            cmd.env("SHOAL_TOKEN", token);
        }
        let proc = Proc::spawn(format!("serve:{udp_port}"), cmd).expect("spawn shoal serve");
        let listening = proc
            .wait_event("listening", STARTUP)
            .unwrap_or_else(|| panic!("no listening line\n{}", proc.dump()));
        let addr = listening["http"].as_str().expect("http address");
        assert!(addr.starts_with("127.0.0.1:"), "{listening}");
        Sidecar {
            base: format!("http://{addr}"),
            proc,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port`, for curl command lines.
    fn host_port(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = client().get(self.url(path)).send().await.expect("GET");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let response = client()
            .post(self.url(path))
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    /// The value of metric `name` (a series without labels) in /metrics.
    async fn metric(&self, name: &str) -> f64 {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        metric_value(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }
}

/// `shoal --loopback --port udp_port`, with no token in the environment.
fn command(udp_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["--loopback", "--port", &udp_port.to_string()])
        .env_remove("SHOAL_TOKEN")
        .env_remove("SHOAL_KEY")
        .env_remove("SHOAL_PORT");
    cmd
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Runs `curl` with these arguments; returns its stdout as JSON.
fn curl(args: &[&str]) -> Value {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("curl {args:?}: not JSON ({e}): {out:?}"))
}

/// The value of an unlabelled series in Prometheus text.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series == name).then(|| value.parse().ok())?
    })
}

/// The documented curl examples, with this sidecar's port in place of
/// theirs (the verbatim commands, ports and all, run in a namespace:
/// `serve_lan.rs`), and what each route answers in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_curl_examples_run_on_any_port() {
    let s = Sidecar::start(47_822, &[]);
    let hp = s.host_port().to_owned();

    // hera's README: PUT, then GET the service.
    let put = curl(&[
        "-XPUT",
        "-d",
        r#"{"host":"10.1.1.1", "port": 12345, "updated_at": "2012-12-18T13:27:01Z"}"#,
        &format!("http://{hp}/storage/1f11bbbb-df7a-47c5-8ba7-662f70261673"),
    ]);
    let object = json!({"host": "10.1.1.1", "port": 12345, "updated_at": "2012-12-18T13:27:01Z"});
    assert_eq!(put, object);
    let storage = curl(&[&format!("http://{hp}/storage")]);
    assert_eq!(
        storage,
        json!({"1f11bbbb-df7a-47c5-8ba7-662f70261673": object})
    );
    // Thalassa's GET shows the entry as a registration too.
    let all = curl(&[&format!("http://{hp}/registrations/storage")]);
    assert_eq!(all[0]["meta"]["hera"], object, "{all}");
    assert_eq!(all[0]["version"], "1f11bbbb-df7a-47c5-8ba7-662f70261673");

    // Thalassa: register with meta, then each GET route.
    let posted = curl(&[
        "-XPOST",
        "-d",
        r#"{"secondsToExpire": 10, "url": "http://192.168.8.106:8080/"}"#,
        &format!("http://{hp}/registrations/myapp/1.0.0/192.168.8.106/8080"),
    ]);
    assert_thalassa_shape(&posted, "myapp", "1.0.0", "192.168.8.106", 8080);
    assert_eq!(posted["meta"]["secondsToExpire"], 10);
    assert_eq!(posted["meta"]["url"], "http://192.168.8.106:8080/");
    for path in [
        "/registrations",
        "/registrations/myapp",
        "/registrations/myapp/1.0.0",
    ] {
        let list = curl(&[&format!("http://{hp}{path}")]);
        let found: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "myapp")
            .collect();
        assert_eq!(found.len(), 1, "{path}: {list}");
        assert_thalassa_shape(found[0], "myapp", "1.0.0", "192.168.8.106", 8080);
        assert_eq!(found[0]["meta"], posted["meta"]);
    }
    let other_version = curl(&[&format!("http://{hp}/registrations/myapp/2.0.0")]);
    assert_eq!(other_version, json!([]));

    // bender: POST /registrations.
    let bender = curl(&[
        "-XPOST",
        "-d",
        r#"{"app":"billing","version":"3.2.1","host":"10.0.0.9","port":4000}"#,
        &format!("http://{hp}/registrations"),
    ]);
    assert_thalassa_shape(&bender, "billing", "3.2.1", "10.0.0.9", 4000);
    assert_eq!(bender["meta"]["secondsToExpire"], 60);
    let listed = curl(&[&format!("http://{hp}/registrations/billing")]);
    assert_eq!(listed[0]["id"], "/billing/3.2.1/10.0.0.9/4000");

    // Thalassa's DELETE.
    let deleted = curl(&[
        "-XDELETE",
        &format!("http://{hp}/registrations/myapp/1.0.0/192.168.8.106/8080"),
    ]);
    assert_eq!(deleted["deregistered"], true);
    assert_eq!(
        curl(&[&format!("http://{hp}/registrations/myapp")]),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_and_stores_nothing() {
    let s = Sidecar::start(47_823, &[]);
    let (status, _) = s.post("/registrations/keep/1/10.0.0.1/80", "{}").await;
    assert_eq!(status, 200);
    let (_, before) = s.get("/registrations").await;
    assert_eq!(before.as_array().unwrap().len(), 1);

    let long = "x".repeat(256);
    let big = format!(r#"{{"pad": "{}"}}"#, "a".repeat(70 * 1024));
    // (method, path, body, status, field)
    let cases: Vec<(&str, String, String, u16, Option<&str>)> = vec![
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            "{".into(),
            400,
            Some("body"),
        ),
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            "[1, 2]".into(),
            400,
            Some("body"),
        ),
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            "\"text\"".into(),
            400,
            Some("body"),
        ),
        (
            "POST",
            "/registrations/a/1/h/0".into(),
            "{}".into(),
            400,
            Some("port"),
        ),
        (
            "POST",
            "/registrations/a/1/h/65536".into(),
            "{}".into(),
            400,
            Some("port"),
        ),
        (
            "POST",
            "/registrations/a/1/h/http".into(),
            "{}".into(),
            400,
            Some("port"),
        ),
        (
            "POST",
            "/registrations/a%2Fb/1/h/1".into(),
            "{}".into(),
            400,
            Some("name"),
        ),
        (
            "POST",
            "/registrations/a/1%2F2/h/1".into(),
            "{}".into(),
            400,
            Some("version"),
        ),
        (
            "POST",
            "/registrations/a%0A/1/h/1".into(),
            "{}".into(),
            400,
            Some("name"),
        ),
        (
            "POST",
            "/registrations/a/1%07/h/1".into(),
            "{}".into(),
            400,
            Some("version"),
        ),
        (
            "POST",
            format!("/registrations/{long}/1/h/1"),
            "{}".into(),
            400,
            Some("name"),
        ),
        (
            "POST",
            format!("/registrations/a/{long}/h/1"),
            "{}".into(),
            400,
            Some("version"),
        ),
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            big.clone(),
            413,
            Some("body"),
        ),
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            r#"{"secondsToExpire": 0}"#.into(),
            400,
            Some("secondsToExpire"),
        ),
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            r#"{"secondsToExpire": 86401}"#.into(),
            400,
            Some("secondsToExpire"),
        ),
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            r#"{"secondsToExpire": "ten"}"#.into(),
            400,
            Some("secondsToExpire"),
        ),
        // Metadata over the registry's 4 KiB (but under the body's 64 KiB).
        (
            "POST",
            "/registrations/a/1/h/1".into(),
            format!(r#"{{"pad": "{}"}}"#, "a".repeat(5000)),
            413,
            Some("meta"),
        ),
        // bender
        (
            "POST",
            "/registrations".into(),
            r#"{"version":"1","host":"h","port":1}"#.into(),
            400,
            Some("app"),
        ),
        (
            "POST",
            "/registrations".into(),
            r#"{"app":"a","version":"1","host":"h","port":0}"#.into(),
            400,
            Some("port"),
        ),
        (
            "POST",
            "/registrations".into(),
            r#"{"app":"a/b","version":"1","host":"h","port":1}"#.into(),
            400,
            Some("app"),
        ),
        (
            "POST",
            "/registrations".into(),
            r#"{"app":7,"version":"1","host":"h","port":1}"#.into(),
            400,
            Some("app"),
        ),
        (
            "POST",
            "/registrations".into(),
            "nope".into(),
            400,
            Some("body"),
        ),
        // hera
        ("PUT", "/status/x".into(), "{}".into(), 400, Some("service")),
        ("PUT", "/registrations/x".into(), "{}".into(), 405, None),
        ("PUT", "/events/x".into(), "{}".into(), 400, Some("service")),
        ("PUT", "/nodes/x".into(), "{}".into(), 400, Some("service")),
        (
            "PUT",
            "/metrics/x".into(),
            "{}".into(),
            400,
            Some("service"),
        ),
        ("PUT", "/svc/a%2Fb".into(), "{}".into(), 400, Some("id")),
        ("PUT", "/svc/1".into(), "[]".into(), 400, Some("body")),
        ("PUT", "/svc/1".into(), big.clone(), 413, Some("body")),
        // Unknown routes, wrong methods, bad queries.
        (
            "GET",
            "/registrations/a/1/h".into(),
            String::new(),
            404,
            None,
        ),
        ("GET", "/a/b/c/d/e/f".into(), String::new(), 404, None),
        ("DELETE", "/registrations".into(), String::new(), 405, None),
        ("POST", "/status".into(), String::new(), 405, None),
        (
            "PATCH",
            "/registrations/a/1/h/1".into(),
            String::new(),
            405,
            None,
        ),
        (
            "GET",
            "/registrations?index=x".into(),
            String::new(),
            400,
            Some("index"),
        ),
        (
            "GET",
            "/registrations?index=1&wait=soon".into(),
            String::new(),
            400,
            Some("wait"),
        ),
        (
            "GET",
            "/registrations/a%2Fb".into(),
            String::new(),
            400,
            Some("name"),
        ),
        (
            "GET",
            "/events?version=1".into(),
            String::new(),
            400,
            Some("version"),
        ),
        (
            "GET",
            "/events?snapshot=maybe".into(),
            String::new(),
            400,
            Some("snapshot"),
        ),
        // Not ours to delete.
        (
            "DELETE",
            "/registrations/nobody/1/h/1".into(),
            String::new(),
            404,
            Some("id"),
        ),
        (
            "DELETE",
            "/svc/nobody".into(),
            String::new(),
            404,
            Some("id"),
        ),
    ];
    for (method, path, body, want, field) in cases {
        let response = client()
            .request(method.parse().unwrap(), s.url(&path))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let what = format!("{method} {}: {status} {text}", &path[..path.len().min(80)]);
        assert_eq!(status, want, "{what}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_eq!(error["field"].as_str(), field, "{what}");
    }
    // A chunked body over the limit (no Content-Length to refuse it by).
    let big_file = std::env::temp_dir().join(format!("shoal-serve-big-{}", std::process::id()));
    std::fs::write(&big_file, &big).unwrap();
    let chunked = curl(&[
        "-XPOST",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", big_file.display()),
        &s.url("/registrations/a/1/h/1"),
    ]);
    std::fs::remove_file(&big_file).unwrap();
    assert_eq!(chunked["field"], "body", "{chunked}");
    // Nothing was stored, and the server still answers.
    let (status, after) = s.get("/registrations").await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    let (status, storage) = s.get("/svc").await;
    assert_eq!((status, storage), (StatusCode::OK, json!({})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_query_waits_for_a_change_or_the_wait() {
    let s = Sidecar::start(47_824, &[]);
    let index = |r: &reqwest::Response| -> u64 {
        let i: u64 = r.headers()["x-shoal-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.headers()["x-consul-index"], r.headers()["x-shoal-index"]);
        i
    };
    let first = client().get(s.url("/registrations")).send().await.unwrap();
    let now_index = index(&first);
    assert!(now_index >= 1);

    // A stale index answers at once.
    s.post("/registrations/web/1/h/80", "{}").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let stale = client()
        .get(s.url(&format!("/registrations?index={now_index}&wait=30s")))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let current = index(&stale);
    assert!(current > now_index);
    assert_eq!(stale.json::<Value>().await.unwrap()[0]["name"], "web");

    // The current index blocks until a POST.
    let url = s.url(&format!("/registrations/api?index={current}&wait=60s"));
    let waiting = tokio::spawn(async move {
        let r = client().get(url).send().await.unwrap();
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "returned before any change");
    let posted_at = Instant::now();
    let (status, _) = s.post("/registrations/api/2/h/81", "{}").await;
    assert_eq!(status, 200);
    let (returned_at, response) = waiting.await.unwrap();
    assert!(returned_at >= posted_at);
    assert!(index(&response) > current);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body[0]["id"], "/api/2/h/81", "{body}");

    // Nothing happens: it returns when the wait runs out.
    let (_, _) = s.get("/registrations").await;
    let r = client().get(s.url("/registrations")).send().await.unwrap();
    let quiet = index(&r);
    let started = Instant::now();
    let r = client()
        .get(s.url(&format!("/registrations?index={quiet}&wait=1s")))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(index(&r), quiet);
}

/// Server-Sent Events, parsed from a streaming body.
struct SseReader {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buf: String,
}

/// One event: its name, its data as JSON, its id.
#[derive(Debug)]
struct SseEvent {
    event: String,
    data: Value,
    id: u64,
}

impl SseReader {
    async fn open(url: &str) -> SseReader {
        let response = client().get(url).send().await.expect("GET /events");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader {
            stream: Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map(|b| b.to_vec())),
            ),
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: String::new(),
                    data: Value::Null,
                    id: 0,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).expect("data is JSON");
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = v.parse().expect("id is the index");
                    }
                }
                if any {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_online_and_offline_filtered_by_name_and_version() {
    let s = Sidecar::start(47_825, &[]);
    s.post("/registrations/before/1/h/1", "{}").await;
    let wait = Duration::from_secs(10);

    let mut all = SseReader::open(&s.url("/events?name=&version=")).await;
    let mut changes = SseReader::open(&s.url("/events?snapshot=false")).await;
    let mut named = SseReader::open(&s.url("/events?name=cache")).await;
    let mut versioned = SseReader::open(&s.url("/events?name=cache&version=2")).await;

    // The snapshot: what was live when the stream opened.
    let e = all.next(wait).await.expect("snapshot");
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("online", &json!("/before/1/h/1"))
    );

    // online after a POST.
    s.post("/registrations/other/1/h/2", "{}").await;
    s.post("/registrations/cache/1/h/3", r#"{"secondsToExpire": 1}"#)
        .await;
    s.post("/registrations/cache/2/h/4", "{}").await;
    let e = changes.next(wait).await.expect("online other");
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("online", &json!("/other/1/h/2"))
    );
    assert!(e.id >= 1);
    let e = named.next(wait).await.expect("online cache 1");
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("online", &json!("/cache/1/h/3"))
    );
    assert_eq!(e.data["meta"]["secondsToExpire"], 1);
    let e = named.next(wait).await.expect("online cache 2");
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("online", &json!("/cache/2/h/4"))
    );
    let e = versioned.next(wait).await.expect("online cache 2");
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("online", &json!("/cache/2/h/4"))
    );

    // offline (expired) after secondsToExpire: 1.
    let e = named.next(wait).await.expect("expiry");
    assert_eq!(e.event, "offline");
    assert_eq!(e.data["id"], "/cache/1/h/3");
    assert_eq!(e.data["reason"], "expired");

    // offline (deregistered) after DELETE.
    let r = client()
        .delete(s.url("/registrations/cache/2/h/4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = named.next(wait).await.expect("deregistered");
    assert_eq!(
        (e.event.as_str(), &e.data["reason"]),
        ("offline", &json!("deregistered"))
    );
    assert_eq!(e.data["id"], "/cache/2/h/4");
    let e = versioned.next(wait).await.expect("deregistered");
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("offline", &json!("/cache/2/h/4"))
    );
    // The version filter saw nothing of version 1.
    assert!(versioned.next(Duration::from_millis(300)).await.is_none());

    // The unfiltered stream saw everything, in order.
    let mut seen = Vec::new();
    while let Some(e) = all.next(Duration::from_millis(500)).await {
        seen.push(format!("{} {}", e.event, e.data["id"].as_str().unwrap()));
    }
    assert_eq!(
        seen,
        [
            "online /other/1/h/2",
            "online /cache/1/h/3",
            "online /cache/2/h/4",
            "offline /cache/1/h/3",
            "offline /cache/2/h/4",
        ]
    );
    assert_eq!(s.metric("shoal_sse_streams").await, 4.0);
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// One client opens 1,000 event streams, reads the first event of each,
/// then vanishes; twice, so that memory kept by the first round would show
/// as growth in the second. The streams must close (`shoal_sse_streams`
/// back to 0) and the sidecar's RSS return near its baseline: within
/// 4 MiB or a quarter of it. (Measured on the dev VM: baseline about
/// 7.1 MiB, 36 MiB with 1,000 streams, 9.3-9.8 MiB after each round.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_from_a_client_that_vanishes_are_freed() {
    const STREAMS: usize = 1_000;
    const ROUNDS: usize = 2;
    let s = Sidecar::start(47_826, &[]);
    // Something for every stream to send at once, and a warm-up.
    for port in 1..=20 {
        s.post(
            &format!("/registrations/svc/1/h/{port}"),
            r#"{"note": "warm"}"#,
        )
        .await;
    }
    {
        let mut warm = SseReader::open(&s.url("/events")).await;
        warm.next(Duration::from_secs(5)).await.expect("snapshot");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss(s.proc.pid());
    let margin = (baseline / 4).max(4 << 20);

    for round in 1..=ROUNDS {
        // One client, 1,000 connections, each reading its first event.
        let vanishing = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let opened = futures_util::future::join_all((0..STREAMS).map(|_| {
            let client = vanishing.clone();
            let url = s.url("/events");
            async move {
                let r = client.get(url).send().await.expect("open a stream");
                assert_eq!(r.status(), 200);
                let mut body = Box::pin(r.bytes_stream());
                body.next().await.expect("first event").expect("bytes");
                body
            }
        }))
        .await;
        assert_eq!(s.metric("shoal_sse_streams").await, STREAMS as f64);
        let loaded = rss(s.proc.pid());

        // The client vanishes: every connection drops at once.
        drop(opened);
        drop(vanishing);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let open = s.metric("shoal_sse_streams").await;
            if open == 0.0 {
                break;
            }
            assert!(Instant::now() < deadline, "{open} streams still open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The sidecar gives freed memory back within a second or so.
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let after = rss(s.proc.pid());
            if after <= baseline + margin || Instant::now() > deadline {
                break after;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!(
            "round {round}: RSS baseline {} KiB, with {STREAMS} streams {} KiB, after {} KiB",
            baseline / 1024,
            loaded / 1024,
            after / 1024
        );
        assert!(
            after <= baseline + margin,
            "round {round}: RSS {after} after, baseline {baseline} (with {STREAMS} streams {loaded})"
        );
    }
    // Still serving.
    let (status, list) = s.get("/registrations/svc").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 20);
}

/// Past the registry's per-owner limit (`--max-registrations`, 1,000 by
/// default) a registration is refused with 507 and a JSON error naming the
/// limit; refreshing one already held still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_registry_is_507() {
    let s = Sidecar::start(47_833, &["--max-registrations", "50"]);
    let c = client();
    let posts = (1..=50u16).map(|port| {
        c.post(s.url(&format!("/registrations/many/1/h/{port}")))
            .body("{}")
            .send()
    });
    for r in futures_util::future::join_all(posts).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let (status, error) = s.post("/registrations/many/1/h/51", "{}").await;
    assert_eq!(status, 507, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("per_owner"),
        "{error}"
    );
    let (status, error) = s
        .post(
            "/registrations",
            r#"{"app":"b","version":"1","host":"h","port":1}"#,
        )
        .await;
    assert_eq!(status, 507, "{error}");
    let r = client()
        .put(s.url("/svc/1"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    let (status, _) = s.post("/registrations/many/1/h/7", "{}").await;
    assert_eq!(status, 200);
    let (_, list) = s.get("/registrations/many").await;
    assert_eq!(list.as_array().unwrap().len(), 50);
}

#[test]
fn a_non_loopback_bind_without_a_token_is_refused_before_binding() {
    let started = Instant::now();
    let mut cmd = command(47_827);
    // 0.0.0.0 would listen on every interface: it must refuse first.
    cmd.args(["serve", "--http", "0.0.0.0:0"]);
    let out = cmd.output().expect("run shoal");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "it printed a listening line: {out:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without a token") && stderr.contains("SHOAL_TOKEN"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // An empty token is refused too.
    let mut cmd = command(47_827);
    cmd.args(["serve", "--http", "0.0.0.0:0"])
        .env("SHOAL_TOKEN", "");
    let out = cmd.output().expect("run shoal");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_requires_it() {
    let token = "a9f3c0e1b2d4f6a8c0e2b4d6f8a0c2e4";
    let s = Sidecar::start_with(47_828, &[], Some(token));
    for path in [
        "/registrations",
        "/metrics",
        "/nodes",
        "/status",
        "/storage",
        "/no/such/route",
    ] {
        let r = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"shoal\"");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        let r = client()
            .get(s.url(path))
            .bearer_auth("a9f3c0e1b2d4f6a8c0e2b4d6f8a0c2e5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = client()
        .post(s.url("/registrations/x/1/h/1"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for path in [
        "/registrations",
        "/metrics",
        "/nodes",
        "/status",
        "/storage",
    ] {
        let r = client()
            .get(s.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Nothing was registered without the token.
    let r = client()
        .get(s.url("/registrations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_nodes_and_status_describe_the_cluster() {
    let a = Sidecar::start(47_829, &[]);
    let b = Sidecar::start(47_829, &[]);
    b.post("/registrations/m/1/h/1", "{}").await;

    // a sees b as a node, and b's registration.
    let deadline = Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        let (status, nodes) = a.get("/nodes").await;
        assert_eq!(status, 200);
        let (_, regs) = a.get("/registrations/m").await;
        if nodes["nodes"].as_array().unwrap().len() == 1 && regs.as_array().unwrap().len() == 1 {
            break nodes;
        }
        assert!(Instant::now() < deadline, "{nodes}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, b_nodes) = b.get("/nodes").await;
    assert_eq!(nodes["nodes"][0]["id"], b_nodes["self"]["id"]);
    assert_eq!(nodes["self"]["self"], true);
    assert!(nodes["nodes"][0]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127."));
    // One master, named in both views (after the election settles).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, x) = a.get("/nodes").await;
        let (_, y) = b.get("/nodes").await;
        if x["masters"].as_array().unwrap().len() == 1 && x["masters"] == y["masters"] {
            break;
        }
        assert!(Instant::now() < deadline, "{x}\n{y}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let text = client().get(a.url("/metrics")).send().await.unwrap();
    assert_eq!(
        text.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = text.text().await.unwrap();
    // Every line is a comment or `series value`, and every series has a TYPE.
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        value.parse::<f64>().expect(line);
        let name = series.split('{').next().unwrap();
        assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
    }
    assert_eq!(metric_value(&text, "shoal_nodes"), Some(2.0));
    assert_eq!(metric_value(&text, "shoal_masters"), Some(1.0));
    assert_eq!(metric_value(&text, "shoal_registrations"), Some(1.0));
    assert_eq!(metric_value(&text, "shoal_sse_streams"), Some(0.0));
    for counter in [
        "shoal_packets_in_total",
        "shoal_packets_out_total",
        "shoal_bytes_in_total",
        "shoal_bytes_out_total",
        "shoal_messages_in_total",
        "shoal_messages_out_total",
    ] {
        assert!(metric_value(&text, counter).unwrap() > 0.0, "{counter}");
    }
    for reason in ["malformed", "decrypt", "own", "registry_limit", "replay"] {
        assert!(
            text.contains(&format!("shoal_drops_total{{reason=\"{reason}\"}} ")),
            "{reason}\n{text}"
        );
    }

    assert!(
        text.contains("shoal_http_requests_total{route=\"/registrations/{name}\",status=\"200\"} "),
        "{text}"
    );

    let (status, st) = b.get("/status").await;
    assert_eq!(status, 200);
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert!(st["memory"]["rss"].as_u64().unwrap() > 1 << 20, "{st}");
    assert!(st["uptime"].as_f64().unwrap() > 0.0, "{st}");
    assert!(st["registrationsPerSecond"].as_f64().unwrap() > 0.0, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hera_entries_from_two_sidecars_and_the_newest_wins() {
    let a = Sidecar::start(47_830, &[]);
    let b = Sidecar::start(47_830, &["--liveness", "2"]);
    let put = |s: &Sidecar, path: &str, body: Value| {
        let url = s.url(path);
        async move {
            let r = client()
                .put(url)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    put(&a, "/jobs/1", json!({"from": "a"})).await;
    put(&b, "/jobs/2", json!({"from": "b"})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    put(&b, "/jobs/1", json!({"from": "b", "newer": true})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = json!({"1": {"from": "b", "newer": true}, "2": {"from": "b"}});
    loop {
        let (_, a_view) = a.get("/jobs").await;
        let (_, b_view) = b.get("/jobs").await;
        if a_view == want && b_view == want {
            break;
        }
        assert!(Instant::now() < deadline, "{a_view}\n{b_view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, one) = a.get("/jobs/1").await;
    assert_eq!(
        (status, one),
        (StatusCode::OK, json!({"from": "b", "newer": true}))
    );

    // b's entries expire after its --liveness of 2 s: a's copy shows again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, view) = a.get("/jobs").await;
        if view == json!({"1": {"from": "a"}}) {
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deleting is for the sidecar that stored it.
    let r = client().delete(b.url("/jobs/1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client().delete(a.url("/jobs/1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, view) = a.get("/jobs").await;
    assert_eq!(view, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_and_exits_zero() {
    let mut a = Sidecar::start(47_831, &[]);
    let b = Sidecar::start(47_831, &[]);
    a.post("/registrations/leaving/1/h/1", "{}").await;
    let mut events = SseReader::open(&b.url("/events?name=leaving")).await;
    let e = events.next(Duration::from_secs(10)).await.expect("online");
    assert_eq!(e.event, "online");
    // An open stream and a blocking query on the stopping sidecar do not hold it up.
    let mut own = SseReader::open(&a.url("/events")).await;
    own.next(Duration::from_secs(5)).await.expect("snapshot");
    let r = client().get(a.url("/registrations")).send().await.unwrap();
    let index = r.headers()["x-shoal-index"].to_str().unwrap().to_owned();
    let blocked = tokio::spawn(
        client()
            .get(a.url(&format!("/registrations?index={index}&wait=5m")))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let status = a.proc.terminate().expect("SIGTERM");
    assert!(status.success(), "{status}\n{}", a.proc.dump());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let e = events.next(Duration::from_secs(10)).await.expect("offline");
    assert_eq!(e.event, "offline");
    assert_eq!(e.data["reason"], "deregistered", "{e:?}");
    assert!(own.next(Duration::from_secs(2)).await.is_none());
    let _ = blocked.await.unwrap();
}

/// Reads from `stream` until the server closes it or `within` passes;
/// returns what arrived and when the close came (None: still open).
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> (String, Option<Duration>) {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(started.elapsed()),
                )
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
        }
    }
}

/// Opens a TCP connection to the sidecar and writes `request` (which may
/// be nothing, or half a request).
async fn raw(s: &Sidecar, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(s.host_port())
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

/// With `--read-timeout 1`: a connection that sends nothing, half its
/// headers, or half its body, and one left idle after a request, are
/// closed after about a second (the half body with a JSON 408, storing
/// nothing). An event stream and a blocking query that last longer are
/// not cut: the timeout is on what the client sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_at_the_read_timeout_but_long_answers_are_not() {
    let s = Sidecar::start(47_834, &["--read-timeout", "1"]);
    let opened = Instant::now();
    let closed_in_time = |what: &str, closed: Option<Duration>| {
        closed.unwrap_or_else(|| panic!("{what}: still open after 5 s"));
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_secs(4),
            "{what}: closed after {after:?}"
        );
    };

    let mut idle = raw(&s, "").await;
    let mut half_headers = raw(&s, "GET /status HTTP/1.1\r\nHost: x\r\n").await;
    let mut half_body = raw(
        &s,
        "POST /registrations/slow/1.0.0/10.0.0.1/80 HTTP/1.1\r\nHost: x\r\n\
         Content-Length: 100\r\n\r\n{\"secondsToExpire\"",
    )
    .await;
    let mut kept_alive = raw(&s, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut stream = raw(&s, "GET /events?name=late HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = client().get(s.url("/registrations")).send().await.unwrap();
    let index = r.headers()["x-shoal-index"].to_str().unwrap().to_owned();
    let blocking = tokio::spawn(
        client()
            .get(s.url(&format!("/registrations?index={index}&wait=2500ms")))
            .send(),
    );

    let (got, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert_eq!(got, "", "nothing is sent to a client that asked nothing");
    closed_in_time("idle", closed);
    let (got, closed) = read_until_closed(&mut half_headers, Duration::from_secs(5)).await;
    assert_eq!(got, "");
    closed_in_time("half the headers", closed);
    let (got, closed) = read_until_closed(&mut half_body, Duration::from_secs(5)).await;
    closed_in_time("half the body", closed);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    let body: Value = serde_json::from_str(got.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["field"], "body", "{body}");
    assert!(body["error"].as_str().unwrap().contains("1s"), "{body}");
    let (got, closed) = read_until_closed(&mut kept_alive, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    closed_in_time("kept alive and idle", closed);

    // The blocking query waited its 2.5 s and was answered.
    let answered = blocking.await.unwrap().expect("blocking query answered");
    assert_eq!(answered.status(), 200);
    // The event stream is still open past the timeout, and carries an
    // event that comes now.
    let (got, closed) = read_until_closed(&mut stream, Duration::from_millis(200)).await;
    assert!(closed.is_none(), "the event stream was cut: {got}");
    let (status, _) = s.post("/registrations/late/1/h/1", "{}").await;
    assert_eq!(status, 200);
    let (got, _) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(got.contains("event: online"), "{got}");

    // Nothing was stored by the half body; four connections timed out.
    let (_, slow) = s.get("/registrations/slow").await;
    assert_eq!(slow, json!([]));
    assert!(s.metric("shoal_http_read_timeouts_total").await >= 3.0);
}

/// Sockets (file descriptors) the process `pid` holds.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// With `--max-connections 50`, a crowd of 250 connections that send
/// nothing holds no more than 50 of the sidecar's descriptors; a client
/// behind them waits in the listen queue (which holds more than std's
/// 128) and is answered as soon as some
/// of the crowd leave. When the crowd vanishes, every connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_to_be_accepted() {
    const LIMIT: usize = 50;
    // All from 127.0.0.1: the per-client share is the whole limit here.
    let s = Sidecar::start(
        47_835,
        &[
            "--max-connections",
            "50",
            "--max-connections-per-client",
            "50",
        ],
    );
    let (status, _) = s.get("/status").await;
    assert_eq!(status, 200);
    let before = sockets(s.proc.pid());

    let mut crowd = Vec::new();
    for _ in 0..LIMIT {
        crowd.push(raw(&s, "").await);
    }
    let mut late = raw(&s, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
    for _ in 0..200 {
        crowd.push(raw(&s, "").await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = sockets(s.proc.pid());
    assert!(
        held <= before + LIMIT,
        "{held} sockets with the crowd, {before} before"
    );
    let (got, _) = read_until_closed(&mut late, Duration::from_millis(300)).await;
    assert_eq!(got, "", "answered beyond the limit");

    // Ten of the first fifty leave: the late client is accepted and answered.
    crowd.drain(..10);
    let (got, _) = read_until_closed(&mut late, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");

    drop(crowd);
    drop(late);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = s.metric("shoal_http_connections").await;
        // The scrape's own connection.
        if open == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} connections still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.metric("shoal_http_connections_accepted_total").await >= 250.0);
}

/// Connects to the sidecar from `from`, one of loopback's many addresses
/// (127.0.0.0/8 all reach this host), as a client on another host would.
async fn raw_from(s: &Sidecar, from: &str, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind a loopback address");
    let mut stream = socket
        .connect(s.host_port().parse().unwrap())
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

/// With `--max-connections-per-client 5`, a client at 127.0.0.2 holding
/// five idle connections has its sixth closed at once, unanswered, while a
/// client at 127.0.0.3 is served; when the first lets one go, it may
/// connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection() {
    let s = Sidecar::start(
        47_836,
        &[
            "--max-connections",
            "20",
            "--max-connections-per-client",
            "5",
        ],
    );
    let mut greedy = Vec::new();
    for _ in 0..5 {
        greedy.push(raw_from(&s, "127.0.0.2", "").await);
    }
    let status = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut sixth = raw_from(&s, "127.0.0.2", status).await;
    let (got, closed) = read_until_closed(&mut sixth, Duration::from_secs(5)).await;
    assert_eq!(got, "", "the sixth was answered");
    assert!(closed.is_some(), "the sixth stayed open");

    let mut other = raw_from(&s, "127.0.0.3", status).await;
    let (got, _) = read_until_closed(&mut other, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");

    drop(greedy.pop());
    // The sidecar sees the close, then the share is free.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = raw_from(&s, "127.0.0.2", status).await;
        let (got, _) = read_until_closed(&mut again, Duration::from_millis(500)).await;
        if got.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 never got its share back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.metric("shoal_http_connections_refused_total").await >= 1.0);
}
