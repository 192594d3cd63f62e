//! bender's HTTP API: `POST /registrations` with `{app, version, host,
//! port}` registers `app` at `version` on `host:port`.
//!
//! Every other field of the body goes into the registration's `meta`, so
//! nothing a client sends is lost, and `secondsToExpire` is the time to
//! live as in Thalassa's API (60 s by default): a bender client keeps its
//! registration by POSTing it again within that time. `port` may be a
//! number or a string of digits. The answer is the registration, in
//! Thalassa's shape.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use shoal::registry::Registration;

use super::error::JsonObject;
use super::thalassa::{parse_port, take_ttl};
use super::{ApiError, App};

/// `POST /registrations`.
pub async fn register(
    State(app): State<Arc<App>>,
    JsonObject(mut body): JsonObject,
) -> Result<Json<Registration>, ApiError> {
    let mut text = |field: &'static str| match body.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(
            ApiError::bad_request(format!("{field} must be a string, not {other}")).field(field),
        ),
        None => Err(ApiError::bad_request(format!("{field} is missing")).field(field)),
    };
    let (name, version, host) = (text("app")?, text("version")?, text("host")?);
    let port = match body.remove("port") {
        Some(port) => parse_port(&port)?,
        None => return Err(ApiError::bad_request("port is missing").field("port")),
    };
    let ttl = take_ttl(&mut body)?;
    let registration = Registration::builder(name, version, host, port)
        .meta_object(body)
        .build()
        .map_err(|e| {
            // bender calls the name `app`.
            let field = if e.field == "name" { "app" } else { e.field };
            ApiError::bad_request(e.to_string()).field(field)
        })?;
    Ok(Json(app.register(registration, ttl).await?))
}
