//! The routes: `GET /` (the page), `GET /api/nodes` (the registry's
//! snapshot as JSON) and `POST /api/nodes/NAME/status`, where a node's
//! first-boot script reports a state with its token.
//!
//! A report is checked in this order: the body's size (413, before any of
//! it is buffered beyond the limit), the node (404), the token (401), the
//! JSON (400), the state and detail (422). Refusals answer
//! `{"error": "..."}` and are logged at warn; a report stored answers 204.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::netboot::http::page;
use crate::netboot::http::tokens::Tokens;
use crate::netboot::registry::Registry;
use crate::render::firstboot::STATES;

/// The largest report body accepted.
pub const MAX_BODY: usize = 4096;
/// The longest `detail`, in characters.
pub const MAX_DETAIL: usize = 512;

/// The connection's peer, put on each request by the server loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// What the handlers share.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub tokens: Tokens,
}

/// The router, with the body limit on every route.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page_handler))
        .route("/api/nodes", get(nodes_handler))
        .route("/api/nodes/{name}/status", post(status_handler))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

fn now() -> u64 {
    u64::try_from(crate::time::now()).unwrap_or(0)
}

/// Headers every answer carries: nothing is cached (the state changes),
/// and no browser guesses another content type.
fn fresh(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    fresh((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    json(status, body.into_bytes())
}

async fn page_handler(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<Peer>>,
) -> Response {
    tracing::debug!(from = %shown(peer), "status page");
    let html = page::render(&shared.registry.snapshot(), now());
    let mut r = fresh(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response());
    if let Ok(csp) = HeaderValue::from_str(&page::content_security_policy()) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    r
}

async fn nodes_handler(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<Peer>>,
) -> Response {
    tracing::debug!(from = %shown(peer), "/api/nodes");
    match serde_json::to_vec(&shared.registry.snapshot()) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the nodes: {e}"),
        ),
    }
}

/// The peer's address for the log.
fn shown(peer: Option<Extension<Peer>>) -> String {
    peer.map_or_else(|| "?".to_owned(), |Extension(Peer(a))| a.to_string())
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

/// A report's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    state: String,
    #[serde(default)]
    detail: Option<String>,
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn status_handler(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from = shown(peer);
    let refuse = |status: StatusCode, why: String| {
        // Debug-quoted: the name and the reason may carry a client's bytes
        // (terminal escapes), which the log must not replay.
        tracing::warn!(node = ?name, %from, status = status.as_u16(), reason = ?why, "status report refused");
        error(status, &why)
    };
    if shared.registry.by_name(&name).is_none() {
        return refuse(StatusCode::NOT_FOUND, "no such node".to_owned());
    }
    let Some(token) = bearer(&headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "an Authorization: Bearer header with the node's status token is required".to_owned(),
        );
    };
    if !shared.tokens.has(&name) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this node has no status token in the state directory (build it with status_url)"
                .to_owned(),
        );
    }
    if !shared.tokens.accepts(&name, token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong status token for this node".to_owned(),
        );
    }
    let report: StatusBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not JSON like {{\"state\": \"running\", \"detail\": \"…\"}}: {e}"
                ),
            );
        }
    };
    if !STATES.contains(&report.state.as_str()) {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "state {:?} is not one of {}",
                report.state,
                STATES.join(", ")
            ),
        );
    }
    if let Some(d) = &report.detail
        && d.chars().count() > MAX_DETAIL
    {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("detail is longer than {MAX_DETAIL} characters"),
        );
    }
    shared
        .registry
        .report(&name, &report.state, report.detail.as_deref());
    tracing::info!(node = %name, %from, state = %report.state, "first-boot report");
    fresh(StatusCode::NO_CONTENT.into_response())
}
