//! `/v1/secrets`: the server's secrets ([`crate::config::secrets::SecretStore`]) over HTTP.
//! Values are written and deleted, never returned.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiError;
use super::api::{AppState, Body, blocking};

/// The names of the server's secrets and when each was set; never a value.
pub(super) async fn list(State(s): State<AppState>) -> Json<serde_json::Value> {
    let secrets = s.pipelines.secrets().list();
    Json(serde_json::Value::Array(
        secrets
            .into_iter()
            .map(|(name, updated_ms)| serde_json::json!({ "name": name, "updated_ms": updated_ms }))
            .collect(),
    ))
}

/// Stores the body (UTF-8 text) as secret `name`.
pub(super) async fn set(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Body(value): Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let value = String::from_utf8(value.to_vec()).map_err(|_| {
        ApiError::bad_request(format!("the value of secret `{name}` is not UTF-8 text"))
    })?;
    let store = s.pipelines.secrets().clone();
    let stored_name = name.clone();
    blocking(move || {
        store
            .set(&stored_name, &value)
            .map_err(ApiError::bad_request)
    })
    .await?;
    tracing::info!(secret = %name, "secret set");
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "name": name, "set": true })),
    ))
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match s.pipelines.secrets().delete(&name) {
        Ok(true) => Ok(Json(serde_json::json!({ "name": name, "deleted": true }))),
        Ok(false) => Err(ApiError::not_found(format!("no secret `{name}`"))),
        Err(e) => Err(ApiError::bad_request(e)),
    }
}
