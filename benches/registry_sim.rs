//! The registry in simulated time (issue 11): 100 nodes with 100
//! registrations each (10,000) converge, every node holding all 10,000,
//! (a) after a partition into two halves heals, with registrations added
//! and deregistered on both sides while it lasted, and (b) from a cold start
//! of every registration at once under 5 % loss.
//!
//! `cargo bench -p shoal-benches --bench registry_sim` prints a markdown
//! table (see BENCHMARKS.md): simulated time to converge, datagrams sent
//! (each broadcast counts once, as on a wire) and delivered (one per
//! receiver), and the wall time the simulation took. Without `--bench` (as
//! `cargo test --benches` runs it) it runs 10 nodes x 10 as a smoke test.
//!
//! The network is `shoal::sim::SimNet`: a broadcast LAN, every delivery
//! 300 µs (`REG_LATENCY_US=random`: SimNet's 0.1-0.5 ms drawn per delivery,
//! which reorders one sender's datagrams), `loss` the probability that one
//! delivery to one receiver is lost. Defaults everywhere (hello 400 ms,
//! node timeout 2.6 s, registry limits 20,000 in total, 1,000 per owner).
//!
//! Knobs (environment): `REG_NODES`, `REG_PER` (100 each), `REG_ONLY`
//! (`partition` or `cold`), `REG_LATENCY_US`, `REG_LIMIT_S` (the simulated
//! time a scenario may take to converge, 60 s). On a shared 2-core VM a
//! 100 x 100 row takes 70-140 s of wall time when it converges, and more
//! than 4 minutes when it does not (see BENCHMARKS.md, round 5); progress
//! goes to stderr.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal::registry::{Filter, Registration};
use shoal::sim::SimNet;
use shoal::Config;

/// What one scenario measured, from the moment its last change was made
/// (the heal, or the registrations) to convergence.
struct Row {
    scenario: &'static str,
    nodes: usize,
    per_node: usize,
    loss: f64,
    converged: Option<Duration>,
    sent: u64,
    bytes: u64,
    delivered: u64,
    pulls: u64,
    repairs: u64,
    wall: Duration,
}

/// Node `i`'s `k`th registration: ids distinct per node by host.
fn reg(i: usize, port: u16) -> Registration {
    let host = format!("10.1.{}.{}", i / 250, i % 250 + 1);
    Registration::builder("svc", "1.0.0", host.as_str(), port)
        .build()
        .expect("a valid registration")
}

/// How long a scenario may take to converge, in simulated time
/// (REG_LIMIT_S, default 60 s).
fn limit() -> Duration {
    let s = std::env::var("REG_LIMIT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(s)
}

const TTL: Duration = Duration::from_secs(600);

fn lan(n: usize, seed: u64, loss: f64) -> SimNet {
    let mut net = SimNet::new(seed);
    net.loss = loss;
    // Every delivery takes REG_LATENCY_US µs (default 300): a LAN keeps one
    // sender's broadcasts in order. REG_LATENCY_US=random: SimNet's own
    // 100-500 µs drawn per delivery, which reorders them.
    match std::env::var("REG_LATENCY_US").as_deref() {
        Ok("random") => {}
        other => {
            let us = other.ok().and_then(|v| v.parse().ok()).unwrap_or(300);
            net.latency = (Duration::from_micros(us), Duration::from_micros(us));
        }
    }
    for i in 0..n {
        net.add_node(
            Config::builder()
                .weight(i as f64 / n as f64)
                .build()
                .expect("default config"),
        );
    }
    net.run_for(Duration::from_secs(3));
    net
}

/// A line on stderr, to follow a long run.
fn progress(net: &SimNet, what: &str) {
    let held: usize = net
        .nodes()
        .iter()
        .map(|n| n.protocol.registration_count())
        .sum();
    let c = counters(net);
    eprintln!(
        "  [{:>6} ms simulated] {what}: {held} held in all, {} sent, {} delivered, {} pulls, {} repairs",
        net.elapsed().as_millis(),
        c[0],
        net.delivered,
        c[2],
        c[3]
    );
}

fn register(net: &mut SimNet, i: usize, r: Registration) {
    let now = net.now();
    net.protocol_mut(i)
        .register(now, r, TTL)
        .expect("within the limits");
    net.poll(i);
}

fn deregister(net: &mut SimNet, i: usize, id: &str) {
    let now = net.now();
    net.protocol_mut(i)
        .deregister(now, id)
        .expect("registered here");
    net.poll(i);
}

/// Sums over every node: (datagrams sent, bytes sent, pulls, repairs).
fn counters(net: &SimNet) -> [u64; 4] {
    net.nodes().iter().fold([0; 4], |mut acc, n| {
        let s = n.protocol.stats();
        acc[0] += s.packets_out;
        acc[1] += s.bytes_out;
        acc[2] += s.registry_pulls;
        acc[3] += s.registry_repairs;
        acc
    })
}

/// Runs in steps of 5 ms until every node holds exactly `expected`, for at
/// most `limit`; returns the simulated time it took. Each step checks the
/// counts, then that every node holds each id of `changed` that is in
/// `expected` and none that is not (a deregistration and a registration
/// leave the count as it was); once those hold, every node's whole set.
fn converge(
    net: &mut SimNet,
    expected: &BTreeSet<String>,
    changed: &[String],
    limit: Duration,
) -> Option<Duration> {
    let start = net.elapsed();
    let n = net.nodes().len();
    let quick = |net: &SimNet| {
        (0..n).all(|i| {
            let p = &net.node(i).protocol;
            p.registration_count() == expected.len()
                && changed
                    .iter()
                    .all(|id| p.registration(id).is_some() == expected.contains(id))
        })
    };
    let whole = |net: &SimNet| {
        (0..n).all(|i| {
            let held: BTreeSet<String> = net
                .node(i)
                .protocol
                .registrations(&Filter::All)
                .iter()
                .map(|r| r.id().to_owned())
                .collect();
            &held == expected
        })
    };
    loop {
        if quick(net) && whole(net) {
            break;
        }
        if (net.elapsed() - start).as_millis() % 500 == 0 {
            progress(net, "converging");
        }
        if net.elapsed() - start > limit {
            return None;
        }
        net.run_for(Duration::from_millis(5));
    }
    let took = net.elapsed() - start;
    progress(net, "converged");
    Some(took)
}

/// Cold start: the cluster runs (under `loss`) for 3 s, then every node
/// registers `per_node` at the same instant.
fn cold_start(n: usize, per_node: usize, loss: f64, seed: u64) -> Row {
    let wall = Instant::now();
    let mut net = lan(n, seed, loss);
    progress(&net, "cluster up");
    let (before, delivered) = (counters(&net), net.delivered);
    let mut expected = BTreeSet::new();
    for i in 0..n {
        for k in 0..per_node {
            let r = reg(i, 7000 + k as u16);
            expected.insert(r.id().to_owned());
            register(&mut net, i, r);
        }
    }
    let converged = converge(&mut net, &expected, &[], limit());
    row(
        "cold start",
        n,
        per_node,
        loss,
        converged,
        &net,
        before,
        delivered,
        wall,
    )
}

/// Partition: all registered and converged; the two halves split for
/// `split` (1 s: shorter than the node timeout, so the halves only miss each
/// other's deltas; 4 s: longer, so each side drops the other's nodes and
/// their registrations); halfway through, every node deregisters a fifth of
/// its registrations and adds as many new ones; then the partition heals.
fn partition(
    scenario: &'static str,
    split: Duration,
    (n, per_node): (usize, usize),
    loss: f64,
    seed: u64,
) -> Row {
    let wall = Instant::now();
    let mut net = lan(n, seed, loss);
    progress(&net, "cluster up");
    let mut mine: Vec<Vec<Registration>> = vec![Vec::new(); n];
    for (i, regs) in mine.iter_mut().enumerate() {
        for k in 0..per_node {
            let r = reg(i, 7000 + k as u16);
            regs.push(r.clone());
            register(&mut net, i, r);
        }
    }
    let all = |mine: &[Vec<Registration>]| -> BTreeSet<String> {
        mine.iter().flatten().map(|r| r.id().to_owned()).collect()
    };
    if converge(&mut net, &all(&mine), &[], limit()).is_none() {
        return row(
            scenario,
            n,
            per_node,
            loss,
            None,
            &net,
            counters(&net),
            net.delivered,
            wall,
        );
    }
    progress(&net, "split");
    for i in n / 2..n {
        net.set_group(i, 1);
    }
    net.run_for(split / 2);
    let churn = per_node / 5;
    let mut changed = Vec::new();
    for (i, regs) in mine.iter_mut().enumerate() {
        for r in regs.drain(..churn).collect::<Vec<_>>() {
            deregister(&mut net, i, r.id());
            changed.push(r.id().to_owned());
        }
        for k in 0..churn {
            let r = reg(i, 8000 + k as u16);
            regs.push(r.clone());
            changed.push(r.id().to_owned());
            register(&mut net, i, r);
        }
    }
    net.run_for(split / 2);
    let (before, delivered) = (counters(&net), net.delivered);
    progress(&net, "heal");
    net.heal();
    let converged = converge(&mut net, &all(&mine), &changed, limit());
    row(
        scenario, n, per_node, loss, converged, &net, before, delivered, wall,
    )
}

#[allow(clippy::too_many_arguments)]
fn row(
    scenario: &'static str,
    nodes: usize,
    per_node: usize,
    loss: f64,
    converged: Option<Duration>,
    net: &SimNet,
    before: [u64; 4],
    delivered: u64,
    wall: Instant,
) -> Row {
    let after = counters(net);
    Row {
        scenario,
        nodes,
        per_node,
        loss,
        converged,
        sent: after[0] - before[0],
        bytes: after[1] - before[1],
        delivered: net.delivered - delivered,
        pulls: after[2] - before[2],
        repairs: after[3] - before[3],
        wall: wall.elapsed(),
    }
}

fn print_header() {
    println!("| scenario | nodes x registrations | loss | simulated time to converge | datagrams sent | bytes sent | deliveries | pulls | repairs | wall time |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn print_row(r: &Row) {
    let converged = r
        .converged
        .map_or(format!("not in {} s", limit().as_secs()), |d| {
            format!("{} ms", d.as_millis())
        });
    println!(
        "| {} | {} x {} | {:.0} % | {} | {} | {} | {} | {} | {} | {:.1} s |",
        r.scenario,
        r.nodes,
        r.per_node,
        r.loss * 100.0,
        converged,
        r.sent,
        r.bytes,
        r.delivered,
        r.pulls,
        r.repairs,
        r.wall.as_secs_f64(),
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    print_header();
    if !bench {
        // `cargo test --benches`: a smoke run only.
        print_row(&partition(
            "split 4 s",
            Duration::from_secs(4),
            (10, 10),
            0.0,
            1,
        ));
        print_row(&cold_start(10, 10, 0.05, 2));
        println!("registry_sim: smoke run ok (use `cargo bench --bench registry_sim`)");
        return;
    }
    // REG_NODES / REG_PER (default 100 each) for smaller runs.
    let knob = |name: &str| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
    };
    let size = (knob("REG_NODES"), knob("REG_PER"));
    // REG_ONLY=partition or cold: one kind of scenario.
    let only = std::env::var("REG_ONLY").unwrap_or_default();
    if only != "cold" {
        let (short, long) = (Duration::from_secs(1), Duration::from_secs(4));
        print_row(&partition("partition 1 s, healed", short, size, 0.0, 11));
        print_row(&partition("partition 4 s, healed", long, size, 0.0, 12));
        print_row(&partition("partition 4 s, healed", long, size, 0.05, 13));
    }
    if only != "partition" {
        print_row(&cold_start(size.0, size.1, 0.0, 14));
        print_row(&cold_start(size.0, size.1, 0.05, 15));
    }
    println!("\nThe clock starts at the heal (partition) or at the registrations (cold start); datagrams, bytes, pulls and repairs are counted from then to convergence, over all nodes. Wall time is the whole scenario, cluster start and checks included.");
}
