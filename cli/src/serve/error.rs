//! The sidecar's errors: every 4xx and 5xx is a JSON object
//! `{"error": "...", "field": "..."}` (`field` when one part of the request
//! is to blame), never axum's plain-text rejections. The extractors here
//! ([`JsonObject`], [`Params`], [`QueryMap`]) turn a bad body, path or
//! query string into such an error before a handler runs, so a handler
//! never sees half-valid input and nothing is stored.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use shoal::registry::{RegistrationError, RegistryError};

use super::App;

/// The largest request body the sidecar reads (64 KiB); a longer one is
/// answered 413 without being read further.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A failed request: a status and a JSON body naming the problem.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
    /// `WWW-Authenticate: Bearer` goes with a 401.
    bearer_challenge: bool,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
            bearer_challenge: false,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    /// 404 Not Found.
    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    /// 401 Unauthorized, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(error: impl Into<String>) -> ApiError {
        ApiError {
            bearer_challenge: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, error)
        }
    }

    /// The same error, naming the request part at fault.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// The status it is answered with.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error});
        if let Some(field) = self.field {
            body["field"] = Value::from(field);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.bearer_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shoal\""),
            );
        }
        response
    }
}

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> ApiError {
        ApiError::bad_request(e.to_string()).field(e.field)
    }
}

impl From<shoal::Error> for ApiError {
    /// Registry refusals are the client's (4xx) or the store's (507);
    /// a closed node (shutting down) is 503.
    fn from(e: shoal::Error) -> ApiError {
        match e {
            shoal::Error::Registry(RegistryError::Invalid(e)) => e.into(),
            // The registry is full: retrying soon will not help, and this is
            // not a rate limit (429 would say so), so 507 Insufficient Storage.
            shoal::Error::Registry(e @ RegistryError::TooMany { .. }) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
            }
            shoal::Error::Registry(e @ RegistryError::MetaTooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).field("meta")
            }
            shoal::Error::Registry(e @ RegistryError::Ttl) => {
                ApiError::bad_request(e.to_string()).field("secondsToExpire")
            }
            shoal::Error::Registry(e @ RegistryError::NotRegistered(_)) => {
                ApiError::not_found(e.to_string())
            }
            shoal::Error::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the sidecar is shutting down",
            ),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// A request body that is one JSON object (an empty body is `{}`). The
/// content type is not checked: `curl -d` sends JSON labelled as a form,
/// and Thalassa's, bender's and hera's own examples rely on that.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<Arc<App>> for JsonObject {
    type Rejection = ApiError;

    /// Reads the body within the sidecar's read timeout (408 after it:
    /// a client that sends its body a byte at a time holds nothing for
    /// long), then parses it.
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let timeout = app.read_timeout;
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, app))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body did not arrive within {}",
                        humantime::format_duration(timeout)
                    ),
                )
                .field("body")
            })?;
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {} KiB", BODY_LIMIT / 1024),
                )
                .field("body")
            } else {
                ApiError::new(e.status(), format!("cannot read the body: {e}")).field("body")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonObject(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::bad_request("the body must be a JSON object").field("body")),
            Err(e) => {
                Err(ApiError::bad_request(format!("the body is not JSON: {e}")).field("body"))
            }
        }
    }
}

/// The path's parameters, by name, percent-decoded. A path that does not
/// decode to UTF-8 is a 400.
#[derive(Debug)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// The parameter `name` (routes only use this extractor where it exists).
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(map)| Params(map))
            .map_err(|e| {
                ApiError::bad_request(format!("bad path: {}", e.body_text())).field("path")
            })
    }
}

/// The query string's parameters, by name. One that is not
/// `application/x-www-form-urlencoded` is a 400.
#[derive(Debug, Default)]
pub struct QueryMap(pub HashMap<String, String>);

impl QueryMap {
    /// The parameter `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(map)| QueryMap(map))
            .map_err(|e| {
                ApiError::bad_request(format!("bad query string: {}", e.body_text())).field("query")
            })
    }
}

/// Unknown routes: 404 JSON.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

/// A known route with another method: 405 JSON.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
