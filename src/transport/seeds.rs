//! Seeds: the peers a node reaches by unicast where broadcast does not
//! go. Literal addresses are known at once; host names are resolved with
//! the system resolver (getaddrinfo(3), on threads of their own, never on
//! the driver's) at start and every `seed_refresh`, so
//! that a name whose addresses change (a Kubernetes headless service, a
//! restarted host) is followed.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest wait for one name: a resolver that does not answer must not
/// hold back the other seeds' new addresses.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many addresses are kept per name (a headless service of
/// more pods than this is reached through the peers they list).
const MAX_ADDRS_PER_SEED: usize = 256;

/// Every seed and the addresses it resolved to last.
#[derive(Debug)]
pub(crate) struct Seeds {
    seeds: Vec<Seed>,
}

#[derive(Debug)]
struct Seed {
    host: String,
    port: u16,
    /// Literal address: never resolved.
    literal: bool,
    /// The addresses of its last successful resolution.
    addrs: Vec<SocketAddr>,
    /// Its last lookup failed (warned once; the next failures are debug).
    failing: bool,
}

/// The outcome of one round of lookups: per seed with a name, its index
/// and the addresses found or the error.
pub(crate) type Resolved = Vec<(usize, io::Result<Vec<SocketAddr>>)>;

impl Seeds {
    /// The seeds as configured: `(host, port)`, host an address or a name.
    pub(crate) fn new(seeds: &[(String, u16)]) -> Seeds {
        let seeds = seeds
            .iter()
            .map(|(host, port)| {
                let ip = host.parse::<IpAddr>().ok();
                Seed {
                    host: host.clone(),
                    port: *port,
                    literal: ip.is_some(),
                    addrs: ip
                        .map(|ip| SocketAddr::new(ip, *port))
                        .into_iter()
                        .collect(),
                    failing: false,
                }
            })
            .collect();
        Seeds { seeds }
    }

    /// Whether any seed is a name (and so needs resolving).
    pub(crate) fn has_names(&self) -> bool {
        self.seeds.iter().any(|s| !s.literal)
    }

    /// Every seed address known now, without duplicates, in seed order.
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        let mut seen = BTreeSet::new();
        self.seeds
            .iter()
            .flat_map(|s| s.addrs.iter().copied())
            .filter(|a| seen.insert(*a))
            .collect()
    }

    /// The lookups to run: a function that needs no borrow of `self`, to
    /// run off the driver's thread. Each name is resolved on a thread of its
    /// own, so that one that hangs costs the others nothing; a name with no
    /// answer after [`LOOKUP_TIMEOUT`] counts as failed (its thread ends
    /// when the resolver gives up).
    pub(crate) fn lookups(&self) -> impl FnOnce() -> Resolved + Send + 'static {
        let names: Vec<(usize, String, u16)> = self
            .seeds
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.literal)
            .map(|(i, s)| (i, s.host.clone(), s.port))
            .collect();
        move || {
            let give_up = Instant::now() + LOOKUP_TIMEOUT;
            let (answers, answered) = mpsc::channel();
            let mut out: Resolved = Vec::with_capacity(names.len());
            for (i, host, port) in &names {
                let (i, host, port) = (*i, host.clone(), *port);
                let answers = answers.clone();
                let started = std::thread::Builder::new()
                    .name("shoal-seed-lookup".into())
                    .spawn(move || {
                        let result = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(Iterator::collect);
                        let _ = answers.send((i, result));
                    });
                if let Err(error) = started {
                    out.push((i, Err(error)));
                }
            }
            drop(answers);
            while out.len() < names.len() {
                let left = give_up.saturating_duration_since(Instant::now());
                match answered.recv_timeout(left) {
                    Ok(answer) => out.push(answer),
                    Err(_) => break,
                }
            }
            for (i, _, _) in &names {
                if !out.iter().any(|(j, _)| j == i) {
                    let timed_out = io::Error::new(io::ErrorKind::TimedOut, "lookup timed out");
                    out.push((*i, Err(timed_out)));
                }
            }
            out.sort_by_key(|(i, _)| *i);
            out
        }
    }

    /// Takes in a round of lookups; returns whether any seed's addresses
    /// changed. A failed lookup keeps that seed's previous addresses (a
    /// resolver that hiccups must not cut the node off), and so does one
    /// that found no address.
    pub(crate) fn apply(&mut self, resolved: Resolved) -> bool {
        let mut changed = false;
        for (i, result) in resolved {
            let Some(seed) = self.seeds.get_mut(i) else {
                continue;
            };
            match result {
                Ok(mut addrs) if !addrs.is_empty() => {
                    addrs.sort();
                    addrs.dedup();
                    addrs.truncate(MAX_ADDRS_PER_SEED);
                    if seed.failing {
                        tracing::info!(seed = %seed.host, "seed resolves again");
                    }
                    seed.failing = false;
                    if addrs != seed.addrs {
                        tracing::debug!(seed = %seed.host, ?addrs, "seed resolved");
                        seed.addrs = addrs;
                        changed = true;
                    }
                }
                result => {
                    let error = match result {
                        Err(error) => error.to_string(),
                        Ok(_) => "no address".to_owned(),
                    };
                    // Warned once per outage, not once per refresh.
                    if seed.failing {
                        tracing::debug!(seed = %seed.host, %error, "seed lookup failed again");
                    } else {
                        tracing::warn!(
                            seed = %seed.host,
                            %error,
                            kept = seed.addrs.len(),
                            "seed lookup failed; keeping its previous addresses"
                        );
                    }
                    seed.failing = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Seeds {
        Seeds::new(&[
            ("10.0.0.7".into(), 12345),
            ("fe80::1".into(), 4000),
            ("shoal.example".into(), 12345),
            ("10.0.0.7".into(), 12345),
        ])
    }

    #[test]
    fn literals_are_known_at_once_and_deduplicated() {
        let s = seeds();
        assert!(s.has_names());
        assert_eq!(
            s.addresses(),
            vec![
                "10.0.0.7:12345".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:4000".parse().unwrap()
            ]
        );
        assert!(!Seeds::new(&[("10.0.0.7".into(), 1)]).has_names());
    }

    #[test]
    fn a_failed_lookup_keeps_the_previous_addresses() {
        let mut s = seeds();
        let a: SocketAddr = "10.0.0.9:12345".parse().unwrap();
        let b: SocketAddr = "10.0.0.10:12345".parse().unwrap();
        assert!(s.apply(vec![(2, Ok(vec![b, a, a]))]));
        assert_eq!(s.addresses()[2..], [a, b]);
        assert!(!s.apply(vec![(2, Ok(vec![a, b]))]), "same addresses");
        assert!(!s.apply(vec![(2, Err(io::ErrorKind::NotFound.into()))]));
        assert!(!s.apply(vec![(2, Ok(vec![]))]));
        assert_eq!(s.addresses()[2..], [a, b]);
        assert!(s.apply(vec![(2, Ok(vec![b]))]), "the name moved");
        assert_eq!(s.addresses()[2..], [b]);
        assert!(!s.apply(vec![(99, Ok(vec![a]))]), "no such seed");
        let many = (0..1000u16).map(|p| SocketAddr::new([10, 0, 0, 1].into(), p + 1));
        assert!(s.apply(vec![(2, Ok(many.collect()))]));
        assert_eq!(s.addresses().len(), 2 + MAX_ADDRS_PER_SEED, "bounded");
    }

    #[test]
    fn lookups_resolve_names_only() {
        let s = Seeds::new(&[("127.0.0.1".into(), 1), ("localhost".into(), 4242)]);
        let resolved = s.lookups()();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].0, 1);
        let addrs = resolved[0].1.as_ref().unwrap();
        assert!(addrs
            .iter()
            .all(|a| a.port() == 4242 && a.ip().is_loopback()));
    }
}
