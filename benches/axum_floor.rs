//! The floor of the sidecar's HTTP benchmark (`benches/http_bench.py`): an
//! axum server that does the least a JSON route can do, on the same tokio
//! runtime as `shoal serve`. `GET /registrations/{name}` answers a one-item
//! JSON array naming `name`, so routing, path extraction and JSON encoding
//! are paid as in the sidecar, and the registry and the larger response are
//! not. The sidecar's figure is given as a ratio to this one.
//!
//! ```text
//! cargo run --release -p shoal-benches --bin axum_floor -- 127.0.0.1:47897
//! ```
//!
//! It binds a loopback address only, and refuses any other.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn registrations(Path(name): Path<String>) -> Json<Value> {
    Json(json!([{ "name": name }]))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:47897".into())
        .parse()?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address").into());
    }
    let app = Router::new().route("/registrations/{name}", get(registrations));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "{{\"event\":\"listening\",\"http\":\"{}\"}}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
