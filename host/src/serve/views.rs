//! Materialized views over HTTP: the rows a `builtin:view` agent keeps (SQL's
//! `CREATE MATERIALIZED VIEW`), read from the running pipeline.
//!
//! - `GET /v1/views`: every view of every pipeline, with its key columns.
//! - `GET /v1/views/NAME?key=K`: the rows of key `K` (one for a `GROUP BY key`, one per window
//!   for a windowed view), `found: false` when it has none.
//! - `GET /v1/views/NAME?limit=N&after=CURSOR`: a page of every row, in a stable order, with the
//!   cursor of the next page (`next`, `null` at the end). `limit` is 1 to [`MAX_LIMIT`]
//!   (default [`DEFAULT_LIMIT`]); a page also ends at [`MAX_ANSWER_BYTES`].
//! - `GET /v1/pipelines/P/views/NAME…`: the same, when several pipelines have a view `NAME`.
//!
//! A key is given as text. Without `key_type`, one that reads as an integer is looked up as an
//! int64 key, then as an int32 one, then as text — what a view of an integer or a text column
//! holds; `key_type` (as for tables: int8…uint64, utf8, hex) picks one encoding.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::ApiError;
use super::api::{AppState, encode_key, query_error};
use super::pipelines::Entry;
use crate::dataflow::LiveError;
use crate::wasm::ModuleSource;

/// The store a `builtin:view` keeps its rows in (`sabot_operators::view::ROWS`).
pub const VIEW_ROWS: &str = "view.rows";
/// The rows of a page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most rows of a page.
pub const MAX_LIMIT: usize = 10_000;
/// The most rows returned for one key (one per window of a windowed view).
pub const MAX_KEY_ROWS: usize = 10_000;
/// The most bytes of rows in one answer: a page ends early past it (its `next` goes on), and a
/// key's rows are cut (`complete: false`).
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ViewQuery {
    key: Option<String>,
    key_type: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// A view's settings, from its agent's config.
#[derive(Debug, Default, Deserialize)]
struct ViewConfig {
    key: Option<String>,
    sub_key: Option<String>,
}

/// The views of `entry`: (name, settings).
fn views_of(entry: &Entry) -> Vec<(String, ViewConfig)> {
    entry
        .spec()
        .agents
        .iter()
        .filter(|(_, a)| matches!(&a.module, ModuleSource::Builtin(op) if op == "view"))
        .map(|(name, a)| {
            (
                name.clone(),
                serde_json::from_str(&a.config).unwrap_or_default(),
            )
        })
        .collect()
}

pub(super) async fn list(State(s): State<AppState>) -> Json<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for entry in s.pipelines.list() {
        let (status, _) = entry.status();
        for (name, config) in views_of(&entry) {
            out.push(serde_json::json!({
                "name": name, "pipeline": entry.name, "key": config.key,
                "sub_key": config.sub_key, "pipeline_status": status,
            }));
        }
    }
    Json(out)
}

pub(super) async fn read(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<ViewQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let holders: Vec<_> = s
        .pipelines
        .list()
        .into_iter()
        .filter(|e| views_of(e).iter().any(|(v, _)| *v == name))
        .collect();
    match holders.as_slice() {
        [entry] => read_view(entry, &name, q),
        [] => Err(ApiError::not_found(format!(
            "no view `{name}` (views: {})",
            all_views(&s)
        ))),
        several => Err(ApiError::conflict(format!(
            "pipelines {} each have a view `{name}`: read /v1/pipelines/PIPELINE/views/{name}",
            several
                .iter()
                .map(|e| format!("`{}`", e.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub(super) async fn read_in(
    State(s): State<AppState>,
    Path((pipeline, name)): Path<(String, String)>,
    q: Result<Query<ViewQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let entry = s.pipelines.get(&pipeline)?;
    let names: Vec<String> = views_of(&entry).into_iter().map(|(v, _)| v).collect();
    if !names.contains(&name) {
        return Err(ApiError::not_found(format!(
            "pipeline `{pipeline}` has no view `{name}` (views: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    read_view(&entry, &name, q)
}

fn all_views(s: &AppState) -> String {
    let names: Vec<String> = s
        .pipelines
        .list()
        .iter()
        .flat_map(|e| views_of(e).into_iter().map(|(v, _)| v))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn live_error(e: LiveError) -> ApiError {
    match e {
        LiveError::NotRunning(_) => ApiError::conflict(format!(
            "{e}: a view is read from its running pipeline (start it first)"
        )),
        LiveError::Refused(m) => ApiError::bad_request(m),
        e @ LiveError::UnknownTable { .. } => ApiError::not_found(e.to_string()),
    }
}

/// A stored row: the JSON object the view wrote.
fn row(value: &[u8]) -> serde_json::Value {
    serde_json::from_slice(value)
        .unwrap_or_else(|_| serde_json::json!({ "undecodable_hex": hex::encode(value) }))
}

fn read_view(entry: &Entry, name: &str, q: ViewQuery) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(key) = &q.key {
        if q.limit.is_some() || q.after.is_some() {
            return Err(ApiError::bad_request(
                "`key` reads one key's rows; `limit` and `after` page through all rows: give one or the other",
            ));
        }
        let candidates: Vec<Vec<u8>> = match q.key_type.as_deref() {
            Some(t) => vec![encode_key(key, Some(t))?],
            None => match key.parse::<i64>() {
                Ok(v) => {
                    let mut c = vec![v.to_le_bytes().to_vec()];
                    if let Ok(v) = i32::try_from(v) {
                        c.push(v.to_le_bytes().to_vec());
                    }
                    c.push(key.as_bytes().to_vec());
                    c
                }
                Err(_) => vec![key.as_bytes().to_vec()],
            },
        };
        for bytes in candidates {
            let (rows, complete) = key_rows(entry, name, &bytes)?;
            if !rows.is_empty() {
                return Ok(Json(serde_json::json!({
                    "view": name, "pipeline": entry.name, "key": key, "found": true,
                    "rows": rows, "complete": complete,
                })));
            }
        }
        return Ok(Json(serde_json::json!({
            "view": name, "pipeline": entry.name, "key": key, "found": false, "rows": [],
        })));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: expected 1 to {MAX_LIMIT}"
        )));
    }
    let after = q
        .after
        .as_deref()
        .map(|a| {
            hex::decode(a).map_err(|_| {
                ApiError::bad_request(format!(
                    "after {a:?} is not a cursor: pass the `next` of the previous page"
                ))
            })
        })
        .transpose()?;
    let entries = entry
        .live
        .scan_store(name, VIEW_ROWS, after.as_deref(), limit, MAX_ANSWER_BYTES)
        .map_err(live_error)?;
    let bytes: usize = entries.iter().map(|e| e.value.len()).sum();
    let next = (entries.len() == limit || bytes >= MAX_ANSWER_BYTES)
        .then(|| entries.last().map(|e| hex::encode(&e.position)))
        .flatten();
    Ok(Json(serde_json::json!({
        "view": name, "pipeline": entry.name,
        "rows": entries.iter().map(|e| row(&e.value)).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// The rows of one key, in sub-key order, read a chunk at a time: at most [`MAX_KEY_ROWS`] and
/// about [`MAX_ANSWER_BYTES`]; whether that is all of them.
fn key_rows(
    entry: &Entry,
    name: &str,
    key: &[u8],
) -> Result<(Vec<serde_json::Value>, bool), ApiError> {
    const CHUNK: u32 = 256;
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = entry
            .live
            .read_store(name, VIEW_ROWS, key, after.as_deref(), CHUNK)
            .map_err(live_error)?;
        let full = chunk.len() == CHUNK as usize;
        for (sub, value) in chunk {
            if rows.len() >= MAX_KEY_ROWS || bytes >= MAX_ANSWER_BYTES {
                return Ok((rows, false));
            }
            bytes += value.len();
            rows.push(row(&value));
            after = Some(sub);
        }
        if !full {
            return Ok((rows, true));
        }
    }
}
