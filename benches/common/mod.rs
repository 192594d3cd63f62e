//! Fixtures shared by the criterion benches: a typical hello and the
//! configurations of the three wire modes.
#![allow(dead_code)] // each bench uses a different part

use std::time::Instant;

use serde_json::json;
use shoal::protocol::Protocol;
use shoal::wire::envelope::{Hello, Sender};
use shoal::{Config, Encryption};

/// A random-looking 32-byte key in hex (a raw key: no Argon2id).
pub const SECURE_KEY: &str = "8f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
/// node-discovery's key string, for the legacy cipher.
pub const LEGACY_KEY: &str = "shoal-bench-key";
/// Wall-clock origin given to every protocol (secure timestamps).
pub const WALL_MS: u64 = 1_700_000_000_000;

/// How packets are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No key: plain `WRAP` blocks.
    Plain,
    /// node-discovery's AES-256-CBC inside `WRAP`.
    Legacy,
    /// shoal's sealed AES-256-GCM datagrams.
    Secure,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Legacy => "legacy",
            Mode::Secure => "secure",
        }
    }
}

/// shoal's default configuration in `mode`, advertising `{"id": label}`
/// as examples/node.rs does.
pub fn config(mode: Mode, label: &str, weight: f64) -> Config {
    let b = Config::builder()
        .weight(weight)
        .host_name("bench-host-01")
        .advertise(json!({ "id": label }));
    let b = match mode {
        Mode::Plain => b,
        Mode::Legacy => b
            .legacy_key(LEGACY_KEY)
            .encryption(Encryption::LegacyNodeDiscovery),
        Mode::Secure => b.secret_key(SECURE_KEY),
    };
    b.build().expect("valid bench config")
}

/// A sender with node-discovery-shaped ids (32 hex digits each).
pub fn sender(n: u64) -> Sender {
    Sender {
        pid: format!("{:032x}", 0x5eed_0000_0000_0000_u128 + u128::from(n)),
        iid: format!("{:032x}", 0xbeef_0000_0000_0000_u128 * 3 + u128::from(n)),
        host_name: "bench-host-01".into(),
    }
}

/// A protocol node started at `t0`, its wall clock set to [`WALL_MS`].
pub fn node(mode: Mode, n: u64, weight: f64, t0: Instant) -> Protocol {
    let mut p = Protocol::new(
        &config(mode, &format!("node-{n}"), weight),
        sender(n),
        t0,
        n,
    );
    p.set_wall_clock(t0, WALL_MS);
    p
}

/// The body of a typical shoal hello in a running cluster: not master,
/// eligible, a label advertised, interval, sequence number and epoch.
pub fn typical_hello() -> Hello {
    Hello {
        is_master: false,
        is_master_eligible: true,
        weight: 0.418_273_645_192_837_4,
        address: "127.0.0.1".into(),
        info: Some(json!({"id": "node-42"})),
        interval: Some(400),
        seq: Some(12_345),
        epoch: Some(3),
        epoch_master: Some(format!("{:032x}", 0xabcd_u128)),
        reg: None,
        peers: None,
    }
}

/// CPU time of the calling thread: unlike wall time, it does not count the
/// time other processes hold the core, which on a shared 2-core machine
/// would otherwise inflate every figure.
pub fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A criterion measurement: the benchmark thread's CPU time (see
/// [`thread_cpu`]). Reported in the usual time units.
pub struct ThreadCpu;

impl criterion::measurement::Measurement for ThreadCpu {
    type Intermediate = std::time::Duration;
    type Value = std::time::Duration;

    fn start(&self) -> Self::Intermediate {
        thread_cpu()
    }
    fn end(&self, start: Self::Intermediate) -> Self::Value {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Self::Value, b: &Self::Value) -> Self::Value {
        *a + *b
    }
    fn zero(&self) -> Self::Value {
        std::time::Duration::ZERO
    }
    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        &CpuFormatter
    }
}

/// Formats nanoseconds of CPU time, and throughputs per CPU-second.
struct CpuFormatter;

impl criterion::measurement::ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &criterion::Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per, units) = match *throughput {
            criterion::Throughput::Elements(n) => (n as f64, ["elem/s", "Kelem/s", "Melem/s"]),
            criterion::Throughput::Bytes(n) | criterion::Throughput::BytesDecimal(n) => {
                (n as f64, ["B/s", "KB/s", "MB/s"])
            }
        };
        let rate = per * 1e9 / typical;
        let (div, unit) = if rate < 1e3 {
            (1.0, units[0])
        } else if rate < 1e6 {
            (1e3, units[1])
        } else {
            (1e6, units[2])
        };
        for v in values {
            *v = per * 1e9 / *v / div;
        }
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The criterion settings of these benches: thread CPU time, short runs.
pub fn criterion() -> criterion::Criterion<ThreadCpu> {
    criterion::Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4))
}
