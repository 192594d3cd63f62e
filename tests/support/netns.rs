//! A private virtual LAN built from Linux network namespaces.
//!
//! [`Lan::new(n)`](Lan::new) creates:
//!
//! * a "switch" namespace `shoal-<pid>-<k>-sw` holding bridge `br0`
//!   (multicast snooping off, so the bridge floods multicast like a dumb hub);
//! * `n` host namespaces `shoal-<pid>-<k>-h<i>`, each with one veth pair: `eth0`
//!   inside the host (10.250.0.(i+1)/24) and `vh<i>` enslaved to `br0` in the
//!   switch namespace; `lo` and every link are up;
//! * in each host, `default dev eth0`, so that the limited broadcast
//!   255.255.255.255 and multicast (224.0.0.0/4) are routable (without a
//!   route, sending to them fails with ENETUNREACH).
//!
//! Nothing is created in the root namespace and nothing is linked to a real
//! interface, so broadcast and multicast stay inside the LAN. Dropping the
//! [`Lan`] (also while unwinding from a panic) SIGKILLs whatever still runs in
//! its namespaces and deletes them by exact name, which also destroys the veths
//! and the bridge.
//!
//! Inside a host both 10.250.0.255 ([`Lan::broadcast`]) and 255.255.255.255
//! ([`Lan::LIMITED_BROADCAST`]) reach every other host.
//!
//! Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2; gate tests with
//! [`require_netns!`](crate::require_netns).

use std::ffi::OsStr;
use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for any single `ip` invocation.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_LAN: AtomicUsize = AtomicUsize::new(0);

/// One host of a [`Lan`]: a network namespace with a single `eth0`.
#[derive(Debug, Clone)]
pub struct Host {
    /// Host index within its LAN (0-based).
    pub index: usize,
    /// Namespace name, for `ip netns exec`.
    pub ns: String,
    /// The host's address on `eth0` (10.250.0.(index+1)).
    pub addr: Ipv4Addr,
}

impl Host {
    /// `ip netns exec <ns> <program> <args...>`. `ip netns exec` execs the
    /// program, so the spawned child's PID is the program's PID.
    pub fn command<P, I, S>(&self, program: P, args: I) -> Command
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.arg("netns")
            .arg("exec")
            .arg(&self.ns)
            .arg(program)
            .args(args);
        cmd
    }

    /// Runs a short command in this host and collects its output, killing it
    /// after `timeout` (then returns `ErrorKind::TimedOut`).
    pub fn run<P, I, S>(&self, program: P, args: I, timeout: Duration) -> io::Result<Output>
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_bounded(self.command(program, args), timeout)
    }

    /// Runs `f` on a fresh thread that has joined this host's network
    /// namespace (`setns(2)` on `/run/netns/<ns>`), and returns its result:
    /// sockets `f` opens are this host's, e.g. a TCP client talking to a
    /// server on the LAN without needing any client program installed. Only
    /// that thread moves (the network namespace is per thread); it ends
    /// with `f`.
    pub fn enter<R, F>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.ns);
        thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns(2) on an open namespace file; it affects only
            // this thread, which exits when `f` returns.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// A virtual LAN: one bridge and `n` hosts, torn down on drop.
#[derive(Debug)]
pub struct Lan {
    switch: String,
    hosts: Vec<Host>,
    /// Every namespace created so far, in creation order (deleted in reverse).
    created: Vec<String>,
}

impl Lan {
    /// The subnet's directed broadcast address.
    pub const SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 255);
    /// The limited broadcast address; routable inside hosts via the default route.
    pub const LIMITED_BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;
    /// The subnet prefix length.
    pub const PREFIX_LEN: u8 = 24;
    /// Name of the bridge inside the switch namespace.
    pub const BRIDGE: &'static str = "br0";

    /// Builds a LAN with `hosts` hosts (1..=253). On error, whatever was
    /// created is torn down before returning.
    pub fn new(hosts: usize) -> io::Result<Lan> {
        if hosts == 0 || hosts > 253 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a Lan holds 1..=253 hosts, not {hosts}"),
            ));
        }
        cleanup_stale();
        let prefix = format!(
            "shoal-{}-{}",
            std::process::id(),
            NEXT_LAN.fetch_add(1, Ordering::Relaxed)
        );
        let mut lan = Lan {
            switch: format!("{prefix}-sw"),
            hosts: Vec::with_capacity(hosts),
            created: Vec::new(),
        };
        // From here on, `lan`'s Drop cleans up after any `?`.
        let sw = lan.switch.clone();
        ip(["netns", "add", &sw])?;
        lan.created.push(sw.clone());
        ip(["-n", &sw, "link", "set", "lo", "up"])?;
        ip([
            "-n",
            &sw,
            "link",
            "add",
            "name",
            Self::BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(["-n", &sw, "link", "set", Self::BRIDGE, "up"])?;

        for i in 0..hosts {
            let ns = format!("{prefix}-h{i}");
            let port = format!("vh{i}");
            let addr = Ipv4Addr::new(10, 250, 0, (i + 1) as u8);
            let cidr = format!("{addr}/{}", Self::PREFIX_LEN);
            ip(["netns", "add", &ns])?;
            lan.created.push(ns.clone());
            // Created inside the switch namespace, peer moved straight into
            // the host: neither end ever exists in the root namespace.
            ip([
                "-n", &sw, "link", "add", "name", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(["-n", &sw, "link", "set", &port, "master", Self::BRIDGE])?;
            ip(["-n", &sw, "link", "set", &port, "up"])?;
            ip(["-n", &ns, "link", "set", "lo", "up"])?;
            ip(["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(["-n", &ns, "route", "add", "default", "dev", "eth0"])?;
            lan.hosts.push(Host { index: i, ns, addr });
        }
        lan.wait_carrier(Duration::from_secs(5))?;
        Ok(lan)
    }

    /// Host `i` (panics if out of range).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// All hosts, in index order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Always false: a Lan has at least one host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The subnet broadcast address, 10.250.0.255. 255.255.255.255 works too
    /// (see [`Lan::LIMITED_BROADCAST`]).
    pub fn broadcast(&self) -> Ipv4Addr {
        Self::SUBNET_BROADCAST
    }

    /// Name of the switch namespace (holds `br0` and the `vh<i>` ports).
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }

    /// Connects (`up = true`) or disconnects host `i` by setting its switch
    /// port up or down: a partition, as seen from the hosts.
    pub fn set_link(&self, i: usize, up: bool) -> io::Result<()> {
        let port = format!("vh{}", self.host(i).index);
        ip([
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
    }

    /// Waits until every host's eth0 reports LOWER_UP.
    fn wait_carrier(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        for host in &self.hosts {
            loop {
                let out = ip_output(["-n", &host.ns, "link", "show", "dev", "eth0"])?;
                if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{}: eth0 has no carrier", host.ns),
                    ));
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            kill_all_in(ns);
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(["netns", "delete", ns]) {
                eprintln!("netns: failed to delete namespace {ns}: {e}");
            }
        }
    }
}

/// SIGKILLs every process whose network namespace is `ns` (only our own test
/// processes ever run there) and waits up to 2 s for them to go.
fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = pids_in(ns);
        if pids.is_empty() || Instant::now() >= deadline {
            if !pids.is_empty() {
                eprintln!("netns: processes {pids:?} still in {ns}");
            }
            return;
        }
        for pid in pids {
            if pid > 0 && pid as u32 != std::process::id() {
                // SAFETY: plain kill(2) on a PID that is running inside a
                // namespace this harness created.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn pids_in(ns: &str) -> Vec<libc::pid_t> {
    match ip_output(["netns", "pids", ns]) {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Deletes namespaces left behind by earlier test processes of this harness
/// that died without unwinding (e.g. SIGKILL): exact names of the form
/// `shoal-<pid>-<k>-sw|h<i>` whose `<pid>` is no longer running.
fn cleanup_stale() {
    let Ok(out) = ip_output(["netns", "list"]) else {
        return;
    };
    let me = std::process::id();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = stale_owner(name) else {
            continue;
        };
        if owner != me && !std::path::Path::new(&format!("/proc/{owner}")).exists() {
            kill_all_in(name);
            let _ = ip(["netns", "delete", name]);
        }
    }
}

/// For a name this harness would create, the PID that created it.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("shoal-")?;
    if let Some(pid) = rest.strip_suffix("-probe") {
        return pid.parse().ok();
    }
    let mut parts = rest.splitn(3, '-');
    let pid: u32 = parts.next()?.parse().ok()?;
    let _k: usize = parts.next()?.parse().ok()?;
    let role = parts.next()?;
    let is_host = role
        .strip_prefix('h')
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    (role == "sw" || is_host).then_some(pid)
}

/// True when this process is root and can create namespaces, bridges and
/// veths (probed once with a throwaway namespace).
pub fn netns_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        if ip_output(["netns", "list"]).is_err() {
            return false;
        }
        let probe = format!("shoal-{}-probe", std::process::id());
        if let Err(e) = ip(["netns", "add", &probe]) {
            eprintln!("netns unavailable: {e}");
            return false;
        }
        let ok = ip([
            "-n",
            &probe,
            "link",
            "add",
            "name",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .and_then(|_| {
            ip([
                "-n", &probe, "link", "add", "name", "vp0", "type", "veth", "peer", "name", "vp1",
            ])
        })
        .map_err(|e| eprintln!("netns unavailable: {e}"))
        .is_ok();
        let _ = ip(["netns", "delete", &probe]);
        ok
    })
}

/// For tests: `false` when namespaces are available. Otherwise prints
/// "skipping: needs root and ip netns" and returns `true` (the caller should
/// return), or panics when `SHOAL_REQUIRE_NETNS=1`.
pub fn skip_unless_netns() -> bool {
    if netns_available() {
        return false;
    }
    if std::env::var("SHOAL_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!(
            "SHOAL_REQUIRE_NETNS=1 but network namespaces are unavailable (need root and ip netns)"
        );
    }
    eprintln!("skipping: needs root and ip netns");
    true
}

fn ip<I, S>(args: I) -> io::Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ip_output(args).map(|_| ())
}

/// Runs `ip <args>`; a non-zero exit becomes an error carrying its stderr.
fn ip_output<I, S>(args: I) -> io::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let desc = format!("{cmd:?}");
    let out = run_bounded(cmd, IP_TIMEOUT)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{desc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `cmd` to completion with piped output, killing it after `timeout`.
/// Output is collected by threads so a chatty child cannot block on a full pipe.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<Output> {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        let _ = tx.send((0, v));
    });
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        let _ = tx2.send((1, v));
    });
    let deadline = Instant::now() + timeout;
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{cmd:?} did not finish within {timeout:?}"),
        )
    };
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(timed_out());
        }
        thread::sleep(Duration::from_millis(2));
    };
    // A grandchild may still hold the pipes open: bound the wait for EOF too.
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(100))) {
            Ok((i, v)) => outputs[i] = v,
            Err(_) => return Err(timed_out()),
        }
    }
    let [stdout, stderr] = outputs;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stale_names() {
        assert_eq!(super::stale_owner("shoal-12-3-sw"), Some(12));
        assert_eq!(super::stale_owner("shoal-12-3-h10"), Some(12));
        assert_eq!(super::stale_owner("shoal-12-3-h"), None);
        assert_eq!(super::stale_owner("shoal-12-probe"), Some(12));
        assert_eq!(super::stale_owner("shoal-12-3-probe"), None);
        assert_eq!(super::stale_owner("shoal-x-3-sw"), None);
        assert_eq!(super::stale_owner("other-12-3-sw"), None);
    }
}
