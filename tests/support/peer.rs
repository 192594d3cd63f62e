//! Commands for the two interchangeable peers: `tests/node/peer.js` (the
//! unmodified node-discovery@0.2.1-1, run with `tests/node/shim.js`
//! preloaded) and the Rust example `examples/node.rs`. Both take the same
//! `--name value` flags and print the same JSON lines (see
//! `tests/node/README.md`), so a test can spawn either with
//! [`Proc::spawn`](super::Proc::spawn).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::netns::{run_bounded, Host};

/// `tests/node` in this crate.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// True when `node` runs and the pinned node-discovery is installed under
/// `tests/node/node_modules`.
pub fn node_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let installed = node_dir()
            .join("node_modules/node-discovery/package.json")
            .is_file();
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
/// be stale if only the library changed since.
pub fn rust_peer_binary() -> Option<PathBuf> {
    // The test binary is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir
        .join("examples")
        .join(format!("node{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// The Rust example peer with `args` inside `host`, if built.
pub fn rust_peer<I, S>(host: &Host, args: I) -> Option<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Some(host.command(rust_peer_binary()?, args))
}
