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
//! [`Net`] builds any other topology from the same parts: segments
//! (a bridge in a namespace of its own, or a "docker0-like" bridge inside a
//! host), hosts with several interfaces (IPv4 and/or IPv6), routers,
//! point-to-point links (a pair of TUN devices joined by a relay thread, so
//! the kernel marks them POINTOPOINT), per-namespace `/etc/hosts`, and
//! interfaces added to or removed from a running host.
//!
//! Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2; gate tests with
//! [`require_netns!`](crate::require_netns).

use std::ffi::OsStr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// A segment: a bridge, in a namespace of its own ([`Net::segment`]) or
/// inside a host ([`Net::bridge_in`], like docker0), that interfaces
/// [attach](Net::attach) to.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The namespace that holds the bridge.
    pub ns: String,
    /// The bridge's name in it.
    pub bridge: String,
}

/// Any topology of namespaces, torn down on drop (also while unwinding):
/// the relays of its point-to-point links stopped, every process in its
/// namespaces SIGKILLed, the namespaces deleted by exact name
/// (`shoal-<pid>-<k>-n-<name>`) and their `/etc/netns/<namespace>`
/// directories removed.
///
/// ```ignore
/// let mut net = Net::new()?;
/// let lan = net.segment("lan")?;
/// let mut a = net.host("a")?;
/// net.attach(&mut a, &lan, "eth0", &["10.250.0.1/24"])?;
/// ```
#[derive(Debug)]
pub struct Net {
    prefix: String,
    /// Every namespace created so far, in creation order (deleted in reverse).
    created: Vec<String>,
    /// Names of bridge ports, unique within this Net.
    next_port: usize,
    relays: Vec<TunRelay>,
}

impl Net {
    /// An empty topology (nothing is created yet).
    pub fn new() -> io::Result<Net> {
        cleanup_stale();
        let prefix = format!(
            "shoal-{}-{}-n",
            std::process::id(),
            NEXT_LAN.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Net {
            prefix,
            created: Vec::new(),
            next_port: 0,
            relays: Vec::new(),
        })
    }

    /// A namespace `name` (1 to 12 lowercase letters and digits, starting
    /// with a letter) with `lo` up, IPv6 on and duplicate address detection
    /// off (so link-local addresses are usable at once).
    fn namespace(&mut self, name: &str) -> io::Result<String> {
        if !valid_role(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("namespace name {name:?}: 1-12 of [a-z0-9], starting with a letter"),
            ));
        }
        let ns = format!("{}-{name}", self.prefix);
        ip(["netns", "add", &ns])?;
        self.created.push(ns.clone());
        for setting in [
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            sysctl_in(&ns, setting)?;
        }
        ip(["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A segment: namespace `name` holding bridge `br0` (multicast snooping
    /// off: it floods multicast like a hub).
    pub fn segment(&mut self, name: &str) -> io::Result<Segment> {
        let ns = self.namespace(name)?;
        add_bridge(&ns, Lan::BRIDGE)?;
        Ok(Segment {
            ns,
            bridge: Lan::BRIDGE.into(),
        })
    }

    /// A docker0-like bridge `name` inside `host`, up, with `addrs` (CIDR)
    /// on it: the host's interface to the segment its containers attach to.
    pub fn bridge_in(&mut self, host: &Host, name: &str, addrs: &[&str]) -> io::Result<Segment> {
        add_bridge(&host.ns, name)?;
        add_addrs(&host.ns, name, addrs)?;
        Ok(Segment {
            ns: host.ns.clone(),
            bridge: name.into(),
        })
    }

    /// A host: namespace `name` with `lo` up and no other interface yet.
    /// Its `addr` is the first IPv4 address [`attach`](Self::attach) gives
    /// it (0.0.0.0 until then).
    pub fn host(&mut self, name: &str) -> io::Result<Host> {
        let index = self.created.len();
        let ns = self.namespace(name)?;
        Ok(Host {
            index,
            ns,
            addr: Ipv4Addr::UNSPECIFIED,
        })
    }

    /// A router: a host that forwards IPv4 unicast between its interfaces.
    /// Linux never forwards the limited broadcast, and forwards no directed
    /// broadcast while `bc_forwarding` is 0 (the default, kept).
    pub fn router(&mut self, name: &str) -> io::Result<Host> {
        let host = self.host(name)?;
        sysctl_in(&host.ns, "net.ipv4.ip_forward=1")?;
        Ok(host)
    }

    /// Two subnets joined by router `r`, which forwards unicast and (as
    /// every Linux router) no broadcast: `s1` is 10.250.1.0/24 and `s2`
    /// 10.250.2.0/24, the router at .254 on each. Hosts attached to them
    /// need a route via that address.
    pub fn routed_subnets(&mut self) -> io::Result<(Segment, Segment)> {
        let s1 = self.segment("s1")?;
        let s2 = self.segment("s2")?;
        let mut r = self.router("r")?;
        self.attach(&mut r, &s1, "eth1", &["10.250.1.254/24"])?;
        self.attach(&mut r, &s2, "eth2", &["10.250.2.254/24"])?;
        Ok((s1, s2))
    }

    /// Connects `host` to `segment` with a veth pair: `ifname` in the host
    /// (up, with `addrs`, CIDR, IPv4 or IPv6; none for a link with an IPv6
    /// link-local address only) and a port of the segment's bridge.
    /// Returns when the link has carrier. Works while the host's processes
    /// run (an interface that appears).
    pub fn attach(
        &mut self,
        host: &mut Host,
        segment: &Segment,
        ifname: &str,
        addrs: &[&str],
    ) -> io::Result<()> {
        let port = format!("np{}", self.next_port);
        self.next_port += 1;
        // Created in the segment's namespace, the peer moved straight into
        // the host: neither end ever exists in the root namespace.
        ip([
            "-n",
            &segment.ns,
            "link",
            "add",
            "name",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            &host.ns,
        ])?;
        ip([
            "-n",
            &segment.ns,
            "link",
            "set",
            &port,
            "master",
            &segment.bridge,
        ])?;
        ip(["-n", &segment.ns, "link", "set", &port, "up"])?;
        add_addrs(&host.ns, ifname, addrs)?;
        ip(["-n", &host.ns, "link", "set", ifname, "up"])?;
        if host.addr.is_unspecified() {
            if let Some(v4) = addrs
                .iter()
                .find_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
            {
                host.addr = v4;
            }
        }
        wait_carrier(&host.ns, ifname, Duration::from_secs(5))
    }

    /// Removes interface `ifname` from `host` (its veth pair goes with it).
    pub fn detach(&self, host: &Host, ifname: &str) -> io::Result<()> {
        ip(["-n", &host.ns, "link", "delete", ifname])
    }

    /// `ip route add <args>` in `host`, e.g. `["default", "via", "10.0.1.254"]`.
    pub fn route(&self, host: &Host, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", &host.ns, "route", "add"];
        all.extend_from_slice(args);
        ip(all)
    }

    /// `sysctl -w <setting>` (`key=value`) in `host`'s namespace.
    pub fn sysctl(&self, host: &Host, setting: &str) -> io::Result<()> {
        sysctl_in(&host.ns, setting)
    }

    /// The IPv6 link-local address of `ifname` in `host`, once it has one
    /// that is no longer tentative (waits up to 5 s).
    pub fn link_local(&self, host: &Host, ifname: &str) -> io::Result<Ipv6Addr> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = ip_output([
                "-n", &host.ns, "-6", "addr", "show", "dev", ifname, "scope", "link",
            ])?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let found = text
                .lines()
                .filter(|l| !l.contains("tentative"))
                .filter_map(|l| l.trim().strip_prefix("inet6 "))
                .find_map(|rest| rest.split('/').next()?.parse::<Ipv6Addr>().ok());
            if let Some(addr) = found {
                return Ok(addr);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: {ifname} has no usable link-local address:\n{text}",
                        host.ns
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `host`'s `/etc/hosts`, what programs started with
    /// [`Host::command`] read: `ip netns exec` bind-mounts
    /// `/etc/netns/<ns>/hosts` over `/etc/hosts`. Rewriting it later
    /// changes what the running programs resolve: the file is rewritten in
    /// place (same inode), which the bind mount follows (a rename would
    /// leave them reading the old file).
    pub fn set_hosts(&self, host: &Host, text: &str) -> io::Result<()> {
        use std::io::Write;
        let dir = PathBuf::from(ETC_NETNS).join(&host.ns);
        std::fs::create_dir_all(&dir)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("hosts"))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }

    /// A point-to-point link: TUN device `a_if` in `a` with address `a_addr`
    /// and peer `b_addr`, and `b_if` in `b` the other way round, joined by a
    /// relay thread that copies every packet from one to the other. The
    /// kernel flags both POINTOPOINT (with MULTICAST and NOARP), as it does a
    /// VPN's tunnel.
    pub fn p2p(
        &mut self,
        a: &Host,
        a_if: &str,
        a_addr: Ipv4Addr,
        b: &Host,
        b_if: &str,
        b_addr: Ipv4Addr,
    ) -> io::Result<()> {
        let fa = open_tun(&a.ns, a_if)?;
        let fb = open_tun(&b.ns, b_if)?;
        self.relays.push(TunRelay::start(fa, fb));
        for (ns, ifname, local, peer) in
            [(&a.ns, a_if, a_addr, b_addr), (&b.ns, b_if, b_addr, a_addr)]
        {
            let (local, peer) = (format!("{local}/32"), format!("{peer}/32"));
            ip([
                "-n", ns, "addr", "add", &local, "peer", &peer, "dev", ifname,
            ])?;
            ip(["-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for relay in &mut self.relays {
            relay.stop();
        }
        for ns in self.created.iter().rev() {
            kill_all_in(ns);
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(["netns", "delete", ns]) {
                eprintln!("netns: failed to delete namespace {ns}: {e}");
            }
            let dir = PathBuf::from(ETC_NETNS).join(ns);
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    eprintln!("netns: failed to remove {}: {e}", dir.display());
                }
            }
        }
    }
}

fn add_bridge(ns: &str, name: &str) -> io::Result<()> {
    ip([
        "-n",
        ns,
        "link",
        "add",
        "name",
        name,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ip(["-n", ns, "link", "set", name, "up"])
}

/// Adds each CIDR address to `ifname` (IPv6 ones without duplicate address
/// detection).
fn add_addrs(ns: &str, ifname: &str, addrs: &[&str]) -> io::Result<()> {
    for addr in addrs {
        if addr.contains(':') {
            ip(["-n", ns, "addr", "add", addr, "dev", ifname, "nodad"])?;
        } else {
            ip(["-n", ns, "addr", "add", addr, "dev", ifname])?;
        }
    }
    Ok(())
}

fn sysctl_in(ns: &str, setting: &str) -> io::Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "sysctl", "-q", "-w", setting]);
    let out = run_bounded(cmd, IP_TIMEOUT)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{ns}: sysctl {setting}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Waits until `ifname` in `ns` reports LOWER_UP.
fn wait_carrier(ns: &str, ifname: &str, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = ip_output(["-n", ns, "link", "show", "dev", ifname])?;
        if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{ns}: {ifname} has no carrier"),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `<linux/if_tun.h>`: TUNSETIFF = _IOW('T', 202, int), and its flags.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (40 bytes).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TUN device `ifname` (no packet-information header) in namespace
/// `ns` and returns its file: the device lives while the file is open.
fn open_tun(ns: &str, ifname: &str) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    if ifname.is_empty() || ifname.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?}: 1 to 15 bytes"),
        ));
    }
    let (path, ifname) = (format!("/run/netns/{ns}"), ifname.to_owned());
    // The kernel creates the device in the namespace of the thread asking.
    thread::spawn(move || {
        let netns = std::fs::File::open(&path)?;
        // SAFETY: setns(2) on an open namespace file; only this thread
        // moves, and it ends here.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req`
        // lays out; `tun` is an open /dev/net/tun.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut req) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tun)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A thread that copies packets between two TUN devices, both ways, until
/// stopped.
#[derive(Debug)]
struct TunRelay {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TunRelay {
    fn start(a: std::fs::File, b: std::fs::File) -> TunRelay {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut ends = [a, b];
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                let mut fds = [0, 1].map(|i| libc::pollfd {
                    fd: ends[i].as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                // SAFETY: poll(2) on two open descriptors, for 50 ms at most.
                if unsafe { libc::poll(fds.as_mut_ptr(), 2, 50) } <= 0 {
                    continue;
                }
                for (from, to) in [(0, 1), (1, 0)] {
                    let revents = fds[from].revents;
                    if revents & libc::POLLIN != 0 {
                        if let Ok(len) = ends[from].read(&mut buf) {
                            let _ = ends[to].write(&buf[..len]);
                        }
                    } else if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                        // The device is going away: do not spin until stopped.
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        TunRelay {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
    // The /etc/netns/<name> directories of dead owners ([`Net::set_hosts`]).
    let Ok(dirs) = std::fs::read_dir(ETC_NETNS) else {
        return;
    };
    for entry in dirs.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(stale_owner) else {
            continue;
        };
        if owner != me && !std::path::Path::new(&format!("/proc/{owner}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where `ip netns exec NAME` finds files to bind-mount over `/etc`.
const ETC_NETNS: &str = "/etc/netns";

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
    // A [`Net`]'s namespaces: `n-` and a short lowercase name.
    let is_net = role.strip_prefix("n-").is_some_and(valid_role);
    (role == "sw" || is_host || is_net).then_some(pid)
}

/// A [`Net`] namespace's own part of the name: 1 to 12 lowercase letters
/// and digits, starting with a letter.
fn valid_role(role: &str) -> bool {
    (1..=12).contains(&role.len())
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
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
        assert_eq!(super::stale_owner("shoal-12-3-n-lan"), Some(12));
        assert_eq!(super::stale_owner("shoal-12-3-n-r1"), Some(12));
        assert_eq!(super::stale_owner("shoal-12-3-n-"), None);
        assert_eq!(super::stale_owner("shoal-12-3-n-1a"), None);
        assert_eq!(super::stale_owner("shoal-12-3-n-a/b"), None);
        assert_eq!(super::stale_owner("shoal-12-3-n-Lan"), None);
    }
}
