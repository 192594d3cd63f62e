//! Thalassa's HTTP API: list, register and deregister registrations, in
//! Thalassa's shape (`name`, `version`, `host`, `port`, `lastKnown`,
//! `meta`, `id` = `/name/version/host/port`).
//!
//! `POST /registrations/{name}/{version}/{host}/{port}` takes a JSON object
//! (an empty body is `{}`) that becomes `meta`; the builder adds
//! `hostname`, `pid` and `registered` unless given, as Thalassa's client
//! does. `meta.secondsToExpire` is the time to live, a positive number of
//! seconds up to 86,400 (a day); without it the registration lives 60 s
//! and `meta.secondsToExpire` says 60. POST again within it to keep it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use shoal::registry::{Filter, Registration};

use super::error::{JsonObject, Params, QueryMap};
use super::{watch, ApiError, App};

/// A Thalassa registration's time to live when `secondsToExpire` is not
/// given.
pub const DEFAULT_TTL_SECS: u64 = 60;

/// The longest time to live the registry takes (a day).
const MAX_TTL_SECS: f64 = 86_400.0;

/// `GET /registrations`.
pub async fn list_all(State(app): State<Arc<App>>, query: QueryMap) -> Result<Response, ApiError> {
    watch::answer(&app, &query, Filter::All).await
}

/// `GET /registrations/{name}`.
pub async fn list_name(
    State(app): State<Arc<App>>,
    params: Params,
    query: QueryMap,
) -> Result<Response, ApiError> {
    let name = params.get("name");
    check_filter(name, None)?;
    watch::answer(&app, &query, Filter::name(name)).await
}

/// `GET /registrations/{name}/{version}`.
pub async fn list_version(
    State(app): State<Arc<App>>,
    params: Params,
    query: QueryMap,
) -> Result<Response, ApiError> {
    let (name, version) = (params.get("name"), params.get("version"));
    check_filter(name, Some(version))?;
    watch::answer(&app, &query, Filter::version(name, version)).await
}

/// `POST /registrations/{name}/{version}/{host}/{port}`.
pub async fn register(
    State(app): State<Arc<App>>,
    params: Params,
    JsonObject(mut meta): JsonObject,
) -> Result<Json<Registration>, ApiError> {
    let port = parse_port(&Value::from(params.get("port")))?;
    let ttl = take_ttl(&mut meta)?;
    let registration = Registration::builder(
        params.get("name"),
        params.get("version"),
        params.get("host"),
        port,
    )
    .meta_object(meta)
    .build()?;
    Ok(Json(app.register(registration, ttl).await?))
}

/// `DELETE /registrations/{name}/{version}/{host}/{port}`: 404 unless this
/// sidecar registered it.
pub async fn deregister(
    State(app): State<Arc<App>>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let port = parse_port(&Value::from(params.get("port")))?;
    // Checked as a registration is, so that a bad part is named (400).
    let id = Registration::builder(
        params.get("name"),
        params.get("version"),
        params.get("host"),
        port,
    )
    .build()?
    .id()
    .to_owned();
    app.deregister(&id).await?;
    Ok(Json(json!({"id": id, "deregistered": true})))
}

/// A port: a whole number (or a string of one) from 1 to 65535.
pub fn parse_port(value: &Value) -> Result<u16, ApiError> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    n.filter(|n| (1..=65_535).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "port must be a whole number from 1 to 65535, not {value}"
            ))
            .field("port")
        })
}

/// The time to live `meta.secondsToExpire` asks for, which stays in
/// `meta`; 60 s (and `meta.secondsToExpire` set to 60) without it.
pub fn take_ttl(meta: &mut Map<String, Value>) -> Result<Duration, ApiError> {
    let Some(value) = meta.get("secondsToExpire") else {
        meta.insert("secondsToExpire".into(), Value::from(DEFAULT_TTL_SECS));
        return Ok(Duration::from_secs(DEFAULT_TTL_SECS));
    };
    match value.as_f64() {
        // The registry's floor is 1 ms.
        Some(s) if (0.001..=MAX_TTL_SECS).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(ApiError::bad_request(format!(
            "secondsToExpire must be a number of seconds from 0.001 to 86400, not {value}"
        ))
        .field("secondsToExpire")),
    }
}

/// Checks a query's name and version as a registration's parts are
/// checked, so that a `/`, a control character or 256 bytes is a 400
/// naming the part rather than an empty answer.
pub fn check_filter(name: &str, version: Option<&str>) -> Result<(), ApiError> {
    Registration::builder(name, version.unwrap_or("0"), "h", 1)
        .build()
        .map(drop)
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ttls_are_checked() {
        assert_eq!(parse_port(&json!(8080)).unwrap(), 8080);
        assert_eq!(parse_port(&json!("65535")).unwrap(), 65535);
        for bad in [
            json!(0),
            json!(65536),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!(null),
        ] {
            let err = parse_port(&bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
        let mut meta = Map::new();
        assert_eq!(take_ttl(&mut meta).unwrap(), Duration::from_secs(60));
        assert_eq!(meta["secondsToExpire"], 60);
        let mut meta = json!({"secondsToExpire": 1.5}).as_object().unwrap().clone();
        assert_eq!(take_ttl(&mut meta).unwrap(), Duration::from_millis(1500));
        for bad in [json!(0), json!(-3), json!(86_401), json!("10"), json!(null)] {
            let mut meta = json!({"secondsToExpire": bad}).as_object().unwrap().clone();
            assert_eq!(take_ttl(&mut meta).unwrap_err().status(), 400, "{bad}");
        }
    }
}
