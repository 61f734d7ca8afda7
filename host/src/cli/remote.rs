//! Commands against a running `sabot serve`: `deploy`, `submit`, `swap`, `pipelines`, `agents`,
//! `tables`, `view`, `modules`, `secret`, `health`.
//!
//! Exit codes (see [`Error::exit_code`]): 0 done; 1 the operation failed on the server (a swap
//! rolled back, a 5xx); 2 the request was refused as invalid (4xx); 3 the server cannot be
//! reached; 4 the token is missing or wrong.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Error;

/// Where the server is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(long, env = "SABOT_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The API token: a `read` one for listings, an `admin` one for changes.
    #[arg(long, env = "SABOT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// For an `https://` server: the CA certificate (PEM) that signed its certificate, trusted
    /// instead of the built-in roots (Mozilla's, from webpki-roots).
    #[arg(long, env = "SABOT_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// A client of one server.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    pub json: bool,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Self, Error> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)));
        if let Some(file) = &args.ca_cert {
            let pem = std::fs::read(file).map_err(|source| Error::File {
                path: file.display().to_string(),
                source,
            })?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::Usage(format!(
                    "--ca-cert {}: expected a PEM file with a certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                )));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Client {
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            agent: config.build().into(),
            json: args.json,
        })
    }

    fn unreachable(&self, e: ureq::Error) -> Error {
        Error::Remote {
            message: format!("cannot reach the server at {}: {e}", self.base),
            status: None,
        }
    }

    fn answer(&self, mut response: ureq::http::Response<ureq::Body>) -> Result<Value, Error> {
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| body.to_string(), str::to_owned);
        Err(Error::Remote {
            message: format!("the server refused ({status}): {message}"),
            status: Some(status),
        })
    }

    /// `request` with the token, when there is one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("Authorization", &format!("Bearer {t}")),
            None => request,
        }
    }

    /// GET `path` (under the base URL), with the token.
    pub fn get(&self, path: &str) -> Result<Value, Error> {
        let r = self
            .authorized(self.agent.get(&format!("{}{path}", self.base)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.answer(r)
    }

    /// DELETE `path`, with the token.
    pub fn delete(&self, path: &str) -> Result<Value, Error> {
        let r = self
            .authorized(self.agent.delete(&format!("{}{path}", self.base)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.answer(r)
    }

    /// POST `body` with `content_type` to `path`, with the token.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Value, Error> {
        self.send("POST", path, content_type, body)
    }

    /// PUT `body` with `content_type` to `path`, with the token.
    pub fn put(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Value, Error> {
        self.send("PUT", path, content_type, body)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "PUT" => self.agent.put(&url),
            _ => self.agent.post(&url),
        };
        let r = self
            .authorized(request.header("Content-Type", content_type))
            .send(body)
            .map_err(|e| self.unreachable(e))?;
        self.answer(r)
    }
}

/// Prints rows as an aligned table under `headers`.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a command prints: the JSON, or a table.
fn output(client: &Client, value: &Value, as_table: impl FnOnce(&Value) -> String) -> String {
    if client.json {
        serde_json::to_string_pretty(value).unwrap_or_default()
    } else {
        as_table(value)
    }
}

/// `sabot deploy`: uploads a component as `name@version`.
pub fn deploy(client: &Client, module: &Path, name: &str, version: &str) -> Result<String, Error> {
    let bytes = std::fs::read(module).map_err(|source| Error::File {
        path: module.display().to_string(),
        source,
    })?;
    let started = Instant::now();
    let info = client.post(
        &format!("/v1/modules/{name}/{version}"),
        "application/wasm",
        &bytes,
    )?;
    Ok(output(client, &info, |i| {
        format!(
            "deployed {}@{} (sha256 {}, {} bytes, world {}) in {:.2} s",
            text(&i["name"]),
            text(&i["version"]),
            text(&i["sha256"]),
            text(&i["size"]),
            text(&i["world"]),
            started.elapsed().as_secs_f64()
        )
    }))
}

/// `sabot submit`: defines a pipeline from a file (TOML, or SQL named after the file), and starts
/// it with `start`.
pub fn submit(client: &Client, file: &Path, start: bool) -> Result<String, Error> {
    let body = std::fs::read(file).map_err(|source| Error::File {
        path: file.display().to_string(),
        source,
    })?;
    // A SQL pipeline is named after its file, as `sabot run` names it.
    let (path, content_type) = if crate::sql::is_sql(file) {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            format!("/v1/pipelines?start={start}&name={}", path_segment(&name)),
            "application/sql",
        )
    } else {
        (format!("/v1/pipelines?start={start}"), "application/toml")
    };
    let mut p = client.post(&path, content_type, &body)?;
    // Answered `202`: the create goes on (modules being compiled again); follow it.
    let mut shown = String::new();
    while p["status"] == "creating" {
        let progress = text(&p["progress"]);
        if progress != shown {
            eprintln!("sabot: creating pipeline {}: {progress}", text(&p["name"]));
            shown = progress;
        }
        std::thread::sleep(Duration::from_millis(500));
        p = client.get(&format!(
            "/v1/pipelines/{}",
            path_segment(&text(&p["name"]))
        ))?;
    }
    Ok(output(client, &p, |p| {
        format!("pipeline {} is {}", text(&p["name"]), text(&p["status"]))
    }))
}

/// `sabot swap`: swaps an agent's module; waits for the swap to end unless `no_wait`.
pub fn swap(
    client: &Client,
    pipeline: &str,
    agent: &str,
    module: &str,
    config: Option<&str>,
    no_wait: bool,
) -> Result<String, Error> {
    let mut body = serde_json::json!({ "module": module });
    if let Some(c) = config {
        body["config"] = serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.to_owned()));
    }
    let swap = client.post(
        &format!("/v1/pipelines/{pipeline}/agents/{agent}/swap"),
        "application/json",
        body.to_string().as_bytes(),
    )?;
    let id = swap["id"].clone();
    if no_wait {
        return Ok(output(client, &swap, |s| {
            format!(
                "swap {} requested: {} → {}",
                text(&s["id"]),
                text(&s["from"]),
                text(&s["to"])
            )
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let swaps = client.get(&format!("/v1/pipelines/{pipeline}/swaps"))?;
        let this = swaps
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or(Value::Null);
        match this["state"].as_str() {
            Some("active") => {
                return Ok(output(client, &this, |s| {
                    format!(
                        "swapped {agent} of {pipeline}: {} → {} at checkpoint {} (pause {} µs)",
                        text(&s["from"]),
                        text(&s["to"]),
                        text(&s["checkpoint"]),
                        text(&s["pause_us"])
                    )
                }));
            }
            Some("rolled-back") => {
                return Err(Error::Remote {
                    message: format!(
                        "the swap of {agent} to {module} was rolled back: {}",
                        text(&this["reason"])
                    ),
                    status: Some(500),
                });
            }
            _ if Instant::now() > deadline => {
                return Err(Error::Remote {
                    message: format!("swap {id} has not ended after 120 s: {this}"),
                    status: Some(500),
                });
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `sabot health`: whether the server answers `/healthz` (the container's health check).
/// `sabot secret set NAME` (the value from stdin).
pub fn secret_set(client: &Client, name: &str, value: &str) -> Result<String, Error> {
    let answer = client.put(
        &format!("/v1/secrets/{}", path_segment(name)),
        "text/plain; charset=utf-8",
        value.as_bytes(),
    )?;
    Ok(output(client, &answer, |_| {
        format!(
            "secret `{name}` set ({} bytes); use it as ${{secret:{name}}}",
            value.len()
        )
    }))
}

/// `sabot secret list`.
pub fn secret_list(client: &Client) -> Result<String, Error> {
    let answer = client.get("/v1/secrets")?;
    Ok(output(client, &answer, |v| {
        let rows = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| vec![text(&s["name"]), text(&s["updated_ms"])])
            .collect();
        table(&["SECRET", "UPDATED_MS"], rows)
    }))
}

/// `sabot secret delete NAME`.
pub fn secret_delete(client: &Client, name: &str) -> Result<String, Error> {
    let answer = client.delete(&format!("/v1/secrets/{}", path_segment(name)))?;
    Ok(output(client, &answer, |_| {
        format!("secret `{name}` deleted")
    }))
}

/// `s` as one URL path segment (percent-encoded but for unreserved characters).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn health(client: &Client) -> Result<String, Error> {
    let answer = client.get("/healthz")?;
    Ok(output(client, &answer, |_| "ok".to_owned()))
}

/// `sabot pipelines`.
pub fn pipelines(client: &Client) -> Result<String, Error> {
    let list = client.get("/v1/pipelines")?;
    Ok(output(client, &list, |l| {
        let rows = l
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let sum = |kind: &str, field: &str| -> u64 {
                    p["nodes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|n| n["kind"] == kind)
                        .filter_map(|n| n[field].as_u64())
                        .sum()
                };
                vec![
                    text(&p["name"]),
                    text(&p["status"]),
                    sum("source", "rows_out").to_string(),
                    sum("sink", "rows_in").to_string(),
                    text(&p["checkpoints"]["last_id"]),
                    p["swaps"].as_array().map_or(0, Vec::len).to_string(),
                    text(&p["error"]),
                ]
            })
            .collect();
        table(
            &[
                "name",
                "status",
                "rows in",
                "rows out",
                "checkpoint",
                "swaps",
                "error",
            ],
            rows,
        )
    }))
}

/// `sabot agents PIPELINE`.
pub fn agents(client: &Client, pipeline: &str) -> Result<String, Error> {
    let list = client.get(&format!("/v1/pipelines/{pipeline}/agents"))?;
    Ok(output(client, &list, |l| {
        let rows = l
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                vec![
                    text(&a["name"]),
                    text(&a["version"]),
                    text(&a["parallelism"]),
                    text(&a["rows_in"]),
                    text(&a["rows_out"]),
                    text(&a["call_p99_ms"]),
                    text(&a["traps"]),
                ]
            })
            .collect();
        table(
            &[
                "agent",
                "version",
                "instances",
                "rows in",
                "rows out",
                "p99 ms",
                "traps",
            ],
            rows,
        )
    }))
}

/// `sabot tables PIPELINE`.
pub fn tables(client: &Client, pipeline: &str) -> Result<String, Error> {
    let map = client.get(&format!("/v1/pipelines/{pipeline}/tables"))?;
    Ok(output(client, &map, |m| {
        let rows = m
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(agent, tables)| {
                let names: Vec<String> =
                    tables.as_array().into_iter().flatten().map(text).collect();
                if names.is_empty() {
                    vec![vec![agent.clone(), "-".into()]]
                } else {
                    names.into_iter().map(|t| vec![agent.clone(), t]).collect()
                }
            })
            .collect();
        table(&["agent", "table"], rows)
    }))
}

/// `sabot view NAME [--key K | --limit N] [--pipeline P]`: a materialized view's rows as a table, one column
/// per field (in the order they first appear).
pub fn view(
    client: &Client,
    pipeline: Option<&str>,
    name: &str,
    key: Option<&str>,
    limit: Option<u32>,
) -> Result<String, Error> {
    let mut path = match pipeline {
        Some(p) => format!(
            "/v1/pipelines/{}/views/{}",
            path_segment(p),
            path_segment(name)
        ),
        None => format!("/v1/views/{}", path_segment(name)),
    };
    if let Some(key) = key {
        path.push_str(&format!("?key={}", path_segment(key)));
    } else if let Some(limit) = limit {
        path.push_str(&format!("?limit={limit}"));
    }
    let answer = client.get(&path)?;
    Ok(output(client, &answer, |a| {
        let rows: Vec<&serde_json::Map<String, Value>> = a["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .collect();
        let mut columns: Vec<&str> = Vec::new();
        for row in &rows {
            for c in row.keys() {
                if !columns.contains(&c.as_str()) {
                    columns.push(c);
                }
            }
        }
        let cells = rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| r.get(*c).map_or_else(|| "-".to_owned(), text))
                    .collect()
            })
            .collect();
        let mut out = table(&columns, cells);
        let shown = rows.len();
        let of = match (key, &a["next"]) {
            (Some(k), _) if shown == 0 => format!("no rows for key {k}"),
            (Some(k), _) => format!("{shown} rows for key {k}"),
            (None, Value::String(_)) => {
                format!("{shown} rows; more follow (a larger --limit shows them)")
            }
            (None, _) => format!("{shown} rows"),
        };
        out.push_str(&format!(
            "\n({of} in view {name} of pipeline {})",
            text(&a["pipeline"])
        ));
        out
    }))
}

/// `sabot modules`.
pub fn modules(client: &Client) -> Result<String, Error> {
    let list = client.get("/v1/modules")?;
    Ok(output(client, &list, |l| {
        let rows = l
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                vec![
                    text(&m["name"]),
                    text(&m["version"]),
                    text(&m["world"]),
                    text(&m["size"]),
                    text(&m["sha256"]).chars().take(12).collect(),
                ]
            })
            .collect();
        table(&["name", "version", "world", "bytes", "sha256"], rows)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_ragged() {
        let t = table(
            &["name", "status", "error"],
            vec![
                vec!["a".into(), "running".into(), "-".into()],
                vec!["longer".into(), "failed".into(), "boom".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME    STATUS   ERROR\na       running  -\nlonger  failed   boom"
        );
    }
}
