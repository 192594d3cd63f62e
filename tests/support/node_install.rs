//! Installs the pinned node-discovery (`npm ci` in `tests/node`, from the
//! committed lock file) the first time a test needs it, so that a plain
//! `cargo test` on a fresh machine runs the Node interop tests too.
//! Standalone: `tests/wire_vectors.rs` includes it by path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

fn installed(dir: &Path) -> bool {
    dir.join("node_modules/node-discovery/package.json")
        .is_file()
}

/// True when node-discovery is installed under `tests/node/node_modules`,
/// after running `npm ci` there if it was not (and npm exists). Test
/// binaries may run in parallel: a lock directory keeps it to one `npm ci`.
pub fn ensure_node_modules() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        let dir = node_dir();
        if installed(&dir) {
            return true;
        }
        let lock = dir.join(".npm-ci.lock");
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::fs::create_dir(&lock).is_err() {
            if Instant::now() > deadline {
                return installed(&dir);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !installed(&dir) {
            eprintln!("installing node-discovery for the interop tests: npm ci in tests/node");
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .status();
            if let Err(e) = status {
                eprintln!("npm ci failed to start: {e}");
            }
        }
        let _ = std::fs::remove_dir(&lock);
        installed(&dir)
    })
}
