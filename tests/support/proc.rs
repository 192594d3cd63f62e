//! A child process whose stdout is JSON lines, collected as they arrive.
//!
//! ```ignore
//! let p = Proc::spawn("a", lan.host(0).command("node", ["peer.js"]))?;
//! let ready = p.wait_event("ready", Duration::from_secs(5)).expect("ready");
//! p.terminate()?;
//! ```
//!
//! [`Proc::spawn_with_stdin`] also pipes stdin, for children driven by
//! commands: [`Proc::send_line`] writes one line to it.
//!
//! stdout lines are parsed as JSON (`serde_json::Value`); a line that is not
//! JSON is kept as a `Value::String`. stderr is captured line by line (see
//! [`Proc::stderr`]). With `SHOAL_TEST_ECHO=1` both are echoed to the test's
//! stderr, prefixed with the process name, as they arrive.
//!
//! Everything that waits takes a timeout. Dropping a `Proc` SIGKILLs the
//! child if it is still running and reaps it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long [`Proc::terminate`] waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct State {
    lines: Vec<Value>,
    stderr: Vec<String>,
    stdout_eof: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking reader thread must not take the test down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A spawned child with collected JSON-lines stdout.
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    shared: Arc<Shared>,
    /// The write end of the child's stdin, with [`Proc::spawn_with_stdin`].
    stdin: Mutex<Option<ChildStdin>>,
}

impl Proc {
    /// Spawns `cmd` with stdin null and stdout/stderr piped, and starts the
    /// reader threads. `name` labels diagnostics.
    pub fn spawn(name: impl Into<String>, cmd: Command) -> io::Result<Proc> {
        Self::spawn_inner(name.into(), cmd, false)
    }

    /// As [`Proc::spawn`], but with stdin piped: write to it with
    /// [`Proc::send_line`]; it closes with [`Proc::close_stdin`] or on drop.
    pub fn spawn_with_stdin(name: impl Into<String>, cmd: Command) -> io::Result<Proc> {
        Self::spawn_inner(name.into(), cmd, true)
    }

    fn spawn_inner(name: String, mut cmd: Command, pipe_stdin: bool) -> io::Result<Proc> {
        cmd.stdin(if pipe_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let shared = Arc::new(Shared::default());
        let echo = std::env::var("SHOAL_TEST_ECHO").as_deref() == Ok("1");

        let stdout = child.stdout.take().expect("piped stdout");
        let sh = Arc::clone(&shared);
        let label = name.clone();
        thread::spawn(move || {
            for line in split_lines(stdout) {
                if echo {
                    eprintln!("[{label}] {line}");
                }
                let value = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
                sh.lock().lines.push(value);
                sh.cond.notify_all();
            }
            sh.lock().stdout_eof = true;
            sh.cond.notify_all();
        });

        let stderr = child.stderr.take().expect("piped stderr");
        let sh = Arc::clone(&shared);
        let label = name.clone();
        thread::spawn(move || {
            for line in split_lines(stderr) {
                if echo {
                    eprintln!("[{label} stderr] {line}");
                }
                sh.lock().stderr.push(line);
            }
        });

        Ok(Proc {
            name,
            child,
            status: None,
            shared,
            stdin: Mutex::new(stdin),
        })
    }

    /// Writes `line` and a newline to the child's stdin and flushes. Fails
    /// if stdin is not piped ([`Proc::spawn`]) or closed, or the child has
    /// exited (broken pipe). Blocks only if the child stops reading and the
    /// pipe buffer (64 KiB on Linux) fills.
    pub fn send_line(&self, line: &str) -> io::Result<()> {
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let pipe = stdin.as_mut().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{}: stdin is not piped or was closed", self.name),
            )
        })?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        pipe.write_all(&bytes)?;
        pipe.flush()
    }

    /// Closes the child's stdin (it reads EOF). Does nothing if it is not piped.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All stdout lines so far.
    pub fn lines(&self) -> Vec<Value> {
        self.shared.lock().lines.clone()
    }

    /// Stdout lines so far whose `"event"` field equals `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.shared
            .lock()
            .lines
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    }

    /// All stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.shared.lock().stderr.clone()
    }

    /// Whether stdout has been closed (the child exited or closed it).
    pub fn stdout_closed(&self) -> bool {
        self.shared.lock().stdout_eof
    }

    /// The first line (already received or arriving within `timeout`) that
    /// satisfies `pred`. Returns `None` on timeout, or early once stdout is
    /// closed without a match.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let mut found = None;
        self.wait_until(
            |lines| {
                found = lines.iter().find(|v| pred(v)).cloned();
                found.is_some()
            },
            timeout,
        );
        found
    }

    /// The first line with `"event": event`, as [`Proc::wait_for`].
    pub fn wait_event(&self, event: &str, timeout: Duration) -> Option<Value> {
        self.wait_for(|v| v["event"] == event, timeout)
    }

    /// Waits until `cond(all lines so far)` holds. Returns whether it did
    /// (false on timeout, or once stdout is closed and it still does not).
    pub fn wait_until(&self, mut cond: impl FnMut(&[Value]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if cond(&state.lines) {
                return true;
            }
            let now = Instant::now();
            if state.stdout_eof || now >= deadline {
                return false;
            }
            state = self
                .shared
                .cond
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Non-blocking exit check (reaps the child if it exited).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `sig` if the child has not been reaped yet (so its PID cannot
    /// have been reused). Returns whether a signal was sent.
    pub fn signal(&mut self, sig: libc::c_int) -> io::Result<bool> {
        if self.try_wait()?.is_some() {
            return Ok(false);
        }
        // SAFETY: kill(2) on our own unreaped child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }

    /// SIGTERM, wait up to [`TERM_GRACE`], then SIGKILL. Returns the exit status.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        if let Some(status) = self.wait_timeout(TERM_GRACE)? {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGTERM, then asserts that the process closed its stdout within
    /// `timeout` and exited successfully.
    pub fn terminate_cleanly(&mut self, timeout: Duration) {
        let status = self.terminate().expect("terminate");
        assert!(
            self.wait_stdout_closed(timeout),
            "stdout open\n{}",
            self.dump()
        );
        assert!(
            status.success(),
            "{} exited {status}\n{}",
            self.name(),
            self.dump()
        );
    }

    /// [`terminate_cleanly`](Self::terminate_cleanly), and the peer's last
    /// line is an `exit` event with code 0.
    pub fn stop(&mut self, timeout: Duration) {
        self.terminate_cleanly(timeout);
        let exit = self.wait_event("exit", Duration::ZERO);
        assert_eq!(
            exit.as_ref().map(|e| &e["code"]),
            Some(&Value::from(0)),
            "{}",
            self.dump()
        );
    }

    /// SIGKILL and reap. Returns the exit status.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.signal(libc::SIGKILL)?;
        match self.wait_timeout(Duration::from_secs(5))? {
            Some(status) => Ok(status),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} (pid {}) survived SIGKILL", self.name, self.pid()),
            )),
        }
    }

    /// Waits up to `timeout` for stdout to be closed (all output collected).
    pub fn wait_stdout_closed(&self, timeout: Duration) -> bool {
        self.wait_until(|_| false, timeout);
        self.stdout_closed()
    }

    /// Everything collected so far, for assertion messages.
    pub fn dump(&self) -> String {
        let state = self.shared.lock();
        let mut s = format!("--- {} (pid {}) stdout:\n", self.name, self.child.id());
        for line in &state.lines {
            s.push_str(&line.to_string());
            s.push('\n');
        }
        s.push_str(&format!("--- {} stderr:\n", self.name));
        for line in &state.stderr {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

/// [`Proc::dump`] of each of `procs`, concatenated, for assertion messages.
pub fn dump_all<'a>(procs: impl IntoIterator<Item = &'a Proc>) -> String {
    procs.into_iter().map(Proc::dump).collect()
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!("proc {}: {e}", self.name);
        }
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish()
    }
}

/// Lines of `r` as (lossy UTF-8) strings, without the newline.
fn split_lines(r: impl Read) -> impl Iterator<Item = String> {
    let mut r = BufReader::new(r);
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                    buf.pop();
                }
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
        }
    })
}
