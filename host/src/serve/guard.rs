//! What every request passes before its handler: the token check ([`require_token`]) and the
//! deadline ([`deadline`]) whose `408` says what the request was waiting for.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::api::AppState;
use super::auth::Scope;

/// Bounds a request to `request_timeout_ms`; one that takes longer is answered `408`, saying
/// what it was waiting for and where to follow what goes on.
pub(super) async fn deadline(
    State(s): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ms = s.config.request_timeout_ms;
    let what = waiting_for(request.method(), request.uri());
    match tokio::time::timeout(Duration::from_millis(ms), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!("the request took longer than {ms} ms (request_timeout_ms) {what}"),
        }
        .into_response(),
    }
}

/// What a request to `uri` waits for, for its timeout message.
fn waiting_for(method: &axum::http::Method, uri: &axum::http::Uri) -> String {
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let post = method == axum::http::Method::POST;
    match parts.as_slice() {
        ["v1", "modules", ..] if post => "while the upload was received and compiled; nothing was stored: upload again (or raise request_timeout_ms)".into(),
        ["v1", "pipelines"] if post => "while the pipeline was created; the create goes on: GET /v1/pipelines/NAME shows its progress".into(),
        ["v1", "pipelines", name, "stop"] => format!(
            "waiting for pipeline `{name}` to stop and write its final checkpoint; it goes on stopping: GET /v1/pipelines/{name} shows when it has"
        ),
        ["v1", "pipelines", name, "start"] => format!(
            "while pipeline `{name}` was started (its modules loaded); the start goes on: GET /v1/pipelines/{name} shows its status"
        ),
        ["v1", "pipelines", name, "agents", agent, "swap"] => format!(
            "while the swap of agent `{agent}` of pipeline `{name}` was asked; GET /v1/pipelines/{name}/swaps shows whether it was"
        ),
        ["v1", "pipelines", name, "tables", ..] => format!(
            "while a state table of pipeline `{name}` was read"
        ),
        _ => format!("answering {method} {}", uri.path()),
    }
}

/// Paths anyone may GET: liveness and readiness probes, and the dashboard's page (which asks
/// for a token before it reads anything).
const OPEN_PATHS: &[&str] = &["/", "/healthz", "/readyz"];

/// Every request needs a token, checked before its body is read: GET and HEAD a `read` one
/// (none with `public_reads`), anything else an `admin` one.
pub(super) async fn require_token(
    State(s): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method();
    let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
    if read && OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let needed = if read { Scope::Read } else { Scope::Admin };
    if let Err(e) = s.access.allow(request.headers(), needed) {
        // Read a small body before answering, so the client sees the answer rather than a
        // connection closed under its request; a large one is cut off.
        let _ = axum::body::to_bytes(request.into_body(), 64 * 1024).await;
        return e.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_request_says_what_it_was_waiting_for_and_where_to_follow_it() {
        let post = axum::http::Method::POST;
        let said = |path: &str| waiting_for(&post, &path.parse().unwrap());
        assert!(said("/v1/pipelines/p/stop?wait=true").contains("pipeline `p` to stop"));
        assert!(said("/v1/pipelines/p/stop").contains("GET /v1/pipelines/p"));
        assert!(said("/v1/pipelines").contains("GET /v1/pipelines/NAME"));
        assert!(said("/v1/modules/m/1").contains("nothing was stored"));
        assert!(said("/v1/pipelines/p/agents/a/swap").contains("/v1/pipelines/p/swaps"));
        assert_eq!(said("/v1/other"), "answering POST /v1/other");
    }
}
