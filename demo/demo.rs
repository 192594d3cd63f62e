//! A self-contained tour of shoal on loopback: four nodes in one process
//! discover each other, elect a master, talk on a channel, and when the
//! master shuts down another takes over. Ends by itself in about 2.7 seconds.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Every packet goes to 127.255.255.255 (broadcast on the loopback
//! interface only); nothing leaves this host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shoal::{Config, Discovery, Event, Peer};

const PORT: u16 = 47_200;

fn config(name: &str, weight: f64) -> Config {
    Config::builder()
        .port(PORT)
        .broadcast("127.255.255.255".parse().expect("an IPv4 address"))
        .hello_interval(Duration::from_millis(200))
        .check_interval(Duration::from_millis(600))
        .node_timeout(Duration::from_millis(600))
        .master_timeout(Duration::from_millis(600))
        .weight(weight)
        // Advertised from the first hello on, so peers learn the name at once.
        .advertise(json!({ "name": name }))
        .build()
        .expect("a valid configuration")
}

fn name_of(peer: &Peer) -> String {
    peer.info
        .as_ref()
        .and_then(|info| info.get("name"))
        .and_then(|name| name.as_str())
        .unwrap_or("?")
        .to_owned()
}

fn role(node: &Discovery) -> &'static str {
    if node.me().is_master {
        "master"
    } else {
        "member"
    }
}

fn say(start: Instant, who: &str, what: String) {
    println!("[{:>6.3}s] {who:<8} {what}", start.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> Result<(), shoal::Error> {
    let start = Instant::now();
    println!(
        "shoal demo: four nodes on 127.255.255.255:{PORT}, hello every 200 ms, timeout 600 ms\n"
    );

    // Set before the final shutdown, so that the tour ends with its summary
    // rather than with the last nodes electing each other as they leave.
    let closing = Arc::new(AtomicBool::new(false));
    let mut nodes = Vec::new();
    for (name, weight) in [
        ("alpha", 0.4),
        ("bravo", 0.9),
        ("charlie", 0.7),
        ("delta", 0.2),
    ] {
        let node = Discovery::start(config(name, weight)).await?;
        say(start, name, format!("started (weight {weight})"));

        // Print what this node sees, as it happens.
        let mut events = node.events();
        let quiet = closing.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if quiet.load(Ordering::Relaxed) {
                    break;
                }
                match event {
                    Event::Added(p) => {
                        say(start, name, format!("found {} at {}", name_of(&p), p.addr))
                    }
                    Event::Removed(p, why) => {
                        say(start, name, format!("removed {}: {why}", name_of(&p)))
                    }
                    Event::Master(p) => say(start, name, format!("sees {} as master", name_of(&p))),
                    Event::Promotion(_) => say(start, name, "*** promoted to master ***".into()),
                    Event::Demotion(_) => say(start, name, "demoted".into()),
                    _ => {}
                }
            }
        });

        // Everyone listens on the "chat" channel.
        let mut chat = node.join("chat")?;
        tokio::spawn(async move {
            while let Some(message) = chat.recv().await {
                let text = message.data["text"].as_str().unwrap_or("");
                let from = message.data["from"].as_str().unwrap_or("?");
                say(start, name, format!("got on chat from {from}: {text:?}"));
            }
        });
        nodes.push((name, node));
    }

    // Discovery takes milliseconds; the first election waits for the
    // promotion delay (1.2 s by default: a new node listens for its peers
    // before it promotes itself). Give it a margin.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    println!();
    for (name, node) in &nodes {
        let mut peers: Vec<String> = node.nodes().iter().map(name_of).collect();
        peers.sort();
        let role = role(node);
        say(
            start,
            name,
            format!("is a {role}; knows {}", peers.join(", ")),
        );
    }
    println!();

    let (name, sender) = &nodes[0];
    say(start, name, "sends a message on chat".into());
    sender.send("chat", &json!({ "from": name, "text": "hello, shoal" }))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!();

    let master = nodes
        .iter()
        .position(|(_, n)| n.me().is_master)
        .unwrap_or(0);
    let (name, node) = nodes.remove(master);
    say(start, name, "(master) shuts down".into());
    node.shutdown().await;

    // The master said goodbye, so the others remove it and the next in rank
    // takes over at once (a crash would take the 600 ms node timeout). Wait
    // a moment to show that the new state holds.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    println!();
    for (name, node) in &nodes {
        let role = role(node);
        say(
            start,
            name,
            format!("is a {role}; {} peers", node.nodes().len()),
        );
    }
    let masters = nodes.iter().filter(|(_, n)| n.me().is_master).count();
    closing.store(true, Ordering::Relaxed);
    for (_, node) in nodes {
        node.shutdown().await;
    }
    println!(
        "\ndone in {:.1}s: {} after failover.",
        start.elapsed().as_secs_f64(),
        if masters == 1 {
            "exactly one master"
        } else {
            "UNEXPECTED master count"
        }
    );
    Ok(())
}
