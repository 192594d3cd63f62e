//! hera's HTTP API: `PUT /{service}/{id}` stores any JSON object for
//! `--liveness` seconds (300 by default) unless PUT again; `GET /{service}`
//! answers `{id: object}` for every live entry of that service, whichever
//! sidecar on the LAN stored it.
//!
//! An entry is a registration: name = service, version = id, host = this
//! host's address on the cluster's network, port = the sidecar's HTTP
//! port, `meta.hera` = the object (beside the `hostname`, `pid` and
//! `registered` the builder fills). So Thalassa's `GET /registrations`
//! lists hera's entries too, and `GET /{service}` lists only registrations
//! that carry `meta.hera`. Two sidecars that PUT one (service, id) hold two
//! registrations (their hosts or ports differ); `GET` answers with the one
//! PUT last (`meta.registered`).
//!
//! Services and ids follow the registration rules (no `/`, space or
//! control character, at most 255 bytes), and a service may not be one of
//! the sidecar's own first path segments ([`super::RESERVED`]).
//! Beyond hera's two routes, `GET /{service}/{id}` answers one entry's
//! object and `DELETE /{service}/{id}` removes an entry this sidecar
//! stored.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use shoal::registry::{Filter, Registration, RegistrationError};

use super::error::{JsonObject, Params};
use super::{ApiError, App, RESERVED};

/// `PUT /{service}/{id}`: answers with the object stored.
pub async fn put(
    State(app): State<Arc<App>>,
    params: Params,
    JsonObject(object): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let registration = entry(&app, params.get("service"), params.get("id"))?;
    let registration = Registration::builder(
        registration.name(),
        registration.version(),
        registration.host(),
        registration.port(),
    )
    .meta("hera", Value::Object(object.clone()))
    .build()
    .map_err(renamed)?;
    app.register(registration, app.liveness).await?;
    Ok(Json(Value::Object(object)))
}

/// `GET /{service}`: `{id: object}` for every live entry.
pub async fn list(
    State(app): State<Arc<App>>,
    params: Params,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let service = params.get("service");
    check_service(service)?;
    Ok(Json(entries(&app, service, None).await?))
}

/// `GET /{service}/{id}`: one entry's object, or 404.
pub async fn get_one(State(app): State<Arc<App>>, params: Params) -> Result<Json<Value>, ApiError> {
    let (service, id) = (params.get("service"), params.get("id"));
    entry(&app, service, id)?;
    entries(&app, service, Some(id))
        .await?
        .remove(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no live entry {id} of {service}")))
}

/// `DELETE /{service}/{id}`: removes the entry this sidecar stored, or 404.
pub async fn delete(State(app): State<Arc<App>>, params: Params) -> Result<Json<Value>, ApiError> {
    let registration = entry(&app, params.get("service"), params.get("id"))?;
    app.deregister(registration.id()).await?;
    Ok(Json(
        json!({"service": registration.name(), "id": registration.version(), "deleted": true}),
    ))
}

/// The live entries of `service` (of one `id` if given), the newest of
/// each id.
async fn entries(
    app: &App,
    service: &str,
    id: Option<&str>,
) -> Result<Map<String, Value>, ApiError> {
    let filter = match id {
        Some(id) => Filter::version(service, id),
        None => Filter::name(service),
    };
    let mut newest: std::collections::HashMap<String, (u64, Value)> = Default::default();
    for r in app.registry.query(&filter).await? {
        let Some(object) = r.meta().get("hera") else {
            continue; // a Thalassa registration that shares the name
        };
        let registered = r
            .meta()
            .get("registered")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match newest.get(r.version()) {
            Some((at, _)) if *at >= registered => {}
            _ => {
                newest.insert(r.version().to_owned(), (registered, object.clone()));
            }
        }
    }
    Ok(newest.into_iter().map(|(id, (_, o))| (id, o)).collect())
}

/// This sidecar's registration for (`service`, `id`), checked: 400 naming
/// `service` or `id`.
fn entry(app: &App, service: &str, id: &str) -> Result<Registration, ApiError> {
    check_service(service)?;
    Registration::builder(service, id, app.hera_host.as_str(), app.http_port)
        .build()
        .map_err(renamed)
}

/// 400 if `service` is one of the sidecar's own route names.
fn check_service(service: &str) -> Result<(), ApiError> {
    if RESERVED.contains(&service) {
        return Err(ApiError::bad_request(format!(
            "{service:?} is reserved: the sidecar's own routes use it (reserved: {})",
            RESERVED.join(", ")
        ))
        .field("service"));
    }
    Ok(())
}

/// A registration error in hera's words: name is the service, version the id.
fn renamed(e: RegistrationError) -> ApiError {
    let field = match e.field {
        "name" => "service",
        "version" => "id",
        other => other,
    };
    let reason = e.to_string();
    let reason = reason
        .strip_prefix("registration ")
        .and_then(|r| r.split_once(" is not usable: "))
        .map_or(reason.clone(), |(_, why)| {
            format!("{field} is not usable: {why}")
        });
    ApiError::bad_request(reason).field(field)
}
