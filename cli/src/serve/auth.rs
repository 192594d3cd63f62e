//! Who may call the sidecar.
//!
//! Anyone who reaches it may register and deregister services for the
//! whole LAN, so it binds 127.0.0.1 by default, and [`policy`] refuses to
//! bind any other address without a bearer token (`SHOAL_TOKEN`, or
//! `--token`), unless `--dangerously-allow-unauthenticated` waives it (with
//! a warning on stderr). The refusal comes before anything is bound, so
//! nothing is exposed even for a moment.
//!
//! With a token, every request (`/metrics` included: Prometheus sends
//! bearer tokens with `authorization.credentials`) must carry
//! `Authorization: Bearer <token>`; the token is compared in constant time,
//! and a missing or wrong one gets 401 with `WWW-Authenticate: Bearer`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::error::CliError;

/// The bearer token requests must carry.
pub struct Token(String);

/// The token to require when serving on `http`, or the refusal to start
/// (a usage error, exit 2) saying why and what to do.
pub fn policy(
    http: SocketAddr,
    token: Option<&str>,
    waive: bool,
) -> Result<Option<Token>, CliError> {
    let token = match token {
        Some(t) if t.trim().is_empty() => {
            return Err(CliError::usage(
                "the token (SHOAL_TOKEN or --token) is empty: set a long random one, \
                 e.g. SHOAL_TOKEN=$(openssl rand -hex 32)",
            ))
        }
        Some(t) => Some(Token(t.trim().to_owned())),
        None => None,
    };
    if token.is_none() && !http.ip().is_loopback() {
        if !waive {
            return Err(CliError::usage(format!(
                "refusing to serve {http} without a token: anyone who reaches it could \
                 register and deregister services on the LAN. Set SHOAL_TOKEN (clients send \
                 'Authorization: Bearer <token>'), or bind 127.0.0.1, or pass \
                 --dangerously-allow-unauthenticated"
            )));
        }
        eprintln!(
            "shoal: WARNING: serving {http} WITHOUT AUTHENTICATION \
             (--dangerously-allow-unauthenticated): anyone who reaches it can register \
             and deregister services on the LAN"
        );
    }
    Ok(token)
}

/// Middleware: passes the request on if it carries the token, else 401.
pub async fn require_token(State(token): State<Arc<Token>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match given {
        // ct_eq answers false at once for another length: that leaks the
        // token's length, not its bytes.
        Some(given) if bool::from(given.as_bytes().ct_eq(token.0.as_bytes())) => {
            next.run(req).await
        }
        Some(_) => ApiError::unauthorized("wrong bearer token").into_response(),
        None => ApiError::unauthorized(
            "this sidecar requires a token: send 'Authorization: Bearer <token>'",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_and_anything_else_does() {
        let lo: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(policy(lo, None, false).unwrap().is_none());
        assert!(policy(v6, None, false).unwrap().is_none());
        let err = policy(any, None, false).err().unwrap();
        assert!(
            matches!(err, CliError::Usage(ref m) if m.contains("SHOAL_TOKEN")),
            "{err}"
        );
        assert!(policy(any, Some("s3cret"), false).unwrap().is_some());
        assert!(policy(any, None, true).unwrap().is_none());
        assert!(matches!(
            policy(lo, Some("  "), false),
            Err(CliError::Usage(_))
        ));
    }
}
