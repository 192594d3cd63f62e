//! Commands for the two interchangeable peers: `tests/node/peer.js` (the
//! unmodified node-discovery@0.2.1-1, run with `tests/node/shim.js`
//! preloaded) and the Rust example `examples/node.rs`. Both take the same
//! `--name value` flags and print the same JSON lines (see
//! `tests/node/README.md`), so a test can spawn either with
//! [`Proc::spawn`](super::Proc::spawn).
//!
//! [`build_example`] builds any example of this crate before a test runs it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::netns::{run_bounded, Host};
use super::proc::Proc;

/// `tests/node` in this crate.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// True when `node` runs and the pinned node-discovery is installed under
/// `tests/node/node_modules`.
pub fn node_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let installed = super::node_install::ensure_node_modules();
        let mut cmd = Command::new("node");
        cmd.arg("--version");
        installed && run_bounded(cmd, Duration::from_secs(10)).is_ok_and(|out| out.status.success())
    })
}

/// For tests: `false` when Node peers can run. Otherwise prints why and
/// returns `true` (the caller should return), or panics when
/// `SHOAL_REQUIRE_NODE=1`.
pub fn skip_unless_node() -> bool {
    if node_available() {
        return false;
    }
    if std::env::var("SHOAL_REQUIRE_NODE").as_deref() == Ok("1") {
        panic!(
            "SHOAL_REQUIRE_NODE=1 but node or tests/node/node_modules/node-discovery is missing"
        );
    }
    eprintln!("skipping: needs node and tests/node/node_modules (npm ci in tests/node)");
    true
}

/// `node -r shim.js peer.js <args>` inside `host`.
pub fn node_peer<I, S>(host: &Host, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let dir = node_dir();
    let mut cmd = host.command(
        "node",
        [
            OsStr::new("-r"),
            dir.join("shim.js").as_os_str(),
            dir.join("peer.js").as_os_str(),
        ],
    );
    cmd.args(args).current_dir(&dir);
    cmd
}

/// The compiled `examples/node.rs` binary, if cargo has built it (it does for
/// `cargo test` without `--test`, or after `cargo build --examples`). It may
/// be stale if only the library changed since: [`build_rust_peer`] (which
/// [`rust_peer`] calls) rebuilds it first.
pub fn rust_peer_binary() -> Option<PathBuf> {
    example_binary("node")
}

/// Upper bound for building the example (a cold build compiles clap & co.).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Builds `examples/node.rs` (see [`build_example`]) and returns its path.
pub fn build_rust_peer() -> PathBuf {
    build_example("node")
}

/// `examples/<name>` next to this test binary, if cargo has built it.
pub fn example_binary(name: &str) -> Option<PathBuf> {
    // The test binary is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// Builds `examples/<name>.rs` with `$CARGO build --example <name>` (once per
/// example per test binary; cargo itself skips the work when it is up to
/// date), so that `cargo test --test <test>` never runs a stale example, and
/// returns its path.
///
/// Panics with cargo's output if the build fails or the binary is not where
/// [`example_binary`] looks (e.g. a `--target` build).
pub fn build_example(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, Result<PathBuf, String>>> = Mutex::new(BTreeMap::new());
    // Held while building: concurrent tests wait for one build.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let result = built
        .entry(name.to_owned())
        .or_insert_with(|| build_example_now(name));
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("cannot build examples/{name}.rs: {e}"),
    }
}

fn build_example_now(name: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // `-p shoal`: the examples are the root package's, and this helper is
    // also compiled into the tests of other members (cli/tests), whose
    // own directory has none.
    cmd.args(["build", "-p", "shoal", "--example", name, "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // Build into the profile directory this test binary came from.
    let release = std::env::current_exe().ok().is_some_and(|exe| {
        exe.parent()
            .and_then(|deps| deps.parent())
            .and_then(|profile| profile.file_name())
            .is_some_and(|name| name == "release")
    });
    if release {
        cmd.arg("--release");
    }
    let desc = format!("{cmd:?}");
    let out = run_bounded(cmd, BUILD_TIMEOUT).map_err(|e| format!("{desc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{desc} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    example_binary(name)
        .ok_or_else(|| format!("{desc} succeeded but examples/{name} is not next to the tests"))
}

/// The Rust example peer with `args` inside `host`, built first (see
/// [`build_rust_peer`]). Always `Some`; a failed build panics.
pub fn rust_peer<I, S>(host: &Host, args: I) -> Option<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Some(host.command(build_rust_peer(), args))
}

/// Which implementation a peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// shoal: `examples/node.rs`.
    Shoal,
    /// node-discovery: `tests/node/peer.js`.
    Node,
}

/// Spawns a peer of `kind` inside `host` with `--id id` followed by `args`.
/// The [`Proc`] is named after `id`. Panics if it cannot be spawned.
pub fn spawn_peer(kind: Impl, host: &Host, id: &str, args: &[&str]) -> Proc {
    let mut all = vec!["--id", id];
    all.extend_from_slice(args);
    let cmd = match kind {
        Impl::Shoal => rust_peer(host, &all).expect("rust peer"),
        Impl::Node => node_peer(host, &all),
    };
    Proc::spawn(id, cmd).unwrap_or_else(|e| panic!("spawn {kind:?} peer {id}: {e}"))
}

/// Short timers for the namespace-LAN tests (hello < check <= node timeout
/// <= master timeout), as peer flags. The timeouts are 6.5 hellos (5 lost
/// hellos and half an interval of jitter): three hellos leave a loaded
/// machine too little margin.
pub const TIMING: [&str; 8] = [
    "--hello-interval",
    "200",
    "--check-interval",
    "600",
    "--node-timeout",
    "1300",
    "--master-timeout",
    "1300",
];
/// The check interval [`TIMING`] sets.
pub const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(600);
/// The node (and master) timeout [`TIMING`] sets.
pub const NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1300);
