//! `sabot new agent NAME --lang rust|js|python|go`: a directory with an agent that builds and
//! runs as it is — the agent, `build.sh`, a pipeline to try it on, and a README.
//!
//! Every language gets the same agent ("big spenders": transactions above a threshold, with how
//! many such transactions the card has made so far, kept in keyed state), so the four scaffolds
//! produce the same output; the tests hold them to it. The SDKs are taken from a Sabot checkout:
//! the one this binary was built from, or `--sdk DIR`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;

/// The languages an agent can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
    Go,
}

/// The checkout this binary was built from.
fn default_sdk_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is inside the repository")
        .to_path_buf()
}

fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "agent name `{name}`: expected a lowercase letter, then lowercase letters, digits, `_` or `-` (at most 64)"
        )))
    }
}

/// `BigSpenders` from `big-spenders`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes the scaffold of agent `name` in `lang` into `dir` (which must not exist or be
/// empty), using the SDKs of the checkout `sdk` (default: the one this binary was built from).
/// Returns the files written.
pub fn new_agent(
    name: &str,
    lang: Lang,
    dir: &Path,
    sdk: Option<&Path>,
) -> Result<Vec<PathBuf>, Error> {
    check_name(name)?;
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(default_sdk_root);
    let sdk = std::fs::canonicalize(&sdk).map_err(|e| {
        Error::Usage(format!(
            "cannot find the Sabot SDKs at {} ({e}): give --sdk DIR, a Sabot checkout",
            sdk.display()
        ))
    })?;
    let needed = match lang {
        Lang::Rust => "guest-sdk/rust/Cargo.toml",
        Lang::Js => "guest-sdk/js/build.mjs",
        Lang::Python => "guest-sdk/python/sabot_agent/build.py",
        Lang::Go => "guest-sdk/go/go.mod",
    };
    if !sdk.join(needed).exists() {
        return Err(Error::Usage(format!(
            "{} is not a Sabot checkout (no {needed}): give --sdk DIR",
            sdk.display()
        )));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::Usage(format!(
            "{} already exists and is not empty: choose another directory",
            dir.display()
        )));
    }
    let sabot = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sabot".into());
    let sdk_str = sdk.display().to_string();
    let mut files: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut add = |path: &str, text: String, executable: bool| {
        files.push((dir.join(path), text, executable));
    };
    add("pipeline.toml", pipeline(name), false);
    add(
        ".gitignore",
        "*.wasm\nout/\ntarget/\nnode_modules/\n".into(),
        false,
    );
    match lang {
        Lang::Rust => {
            add("Cargo.toml", rust_manifest(name, &sdk_str), false);
            add(
                "src/lib.rs",
                RUST_AGENT.replace("BigSpenders", &camel(name)),
                false,
            );
            // The checkout's lock file: the same dependency versions as the SDK was tested with.
            if let Ok(lock) = std::fs::read_to_string(sdk.join("Cargo.lock")) {
                add("Cargo.lock", lock, false);
            }
            let crate_file = name.replace('-', "_");
            add(
                "build.sh",
                format!(
                    "{BUILD_HEAD}cargo build --release --target wasm32-wasip2\n\
                     cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{crate_file}.wasm\" agent.wasm\n"
                ),
                true,
            );
        }
        Lang::Js => {
            add("agent.js", JS_AGENT.into(), false);
            add(
                "build.sh",
                format!(
                    "{BUILD_HEAD}node \"{sdk_str}/guest-sdk/js/build.mjs\" agent.js -o agent.wasm\n"
                ),
                true,
            );
        }
        Lang::Python => {
            add(
                "agent.py",
                PYTHON_AGENT.replace("BigSpenders", &camel(name)),
                false,
            );
            add(
                "build.sh",
                format!(
                    "{BUILD_HEAD}\"${{SABOT_VENV:-$HOME/.cache/sabot/venv}}/bin/python\" -m sabot_agent.build agent.py -o agent.wasm\n"
                ),
                true,
            );
        }
        Lang::Go => {
            add("go.mod", go_module(name, &sdk)?, false);
            if let Ok(sum) = std::fs::read_to_string(sdk.join("guest-sdk/go/go.sum")) {
                add("go.sum", sum, false);
            }
            add("main.go", GO_AGENT.into(), false);
            add(
                "build.sh",
                format!(
                    "{BUILD_HEAD}GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o agent.core.wasm .\n\
                     \"${{SABOT:-{sabot}}}\" componentize agent.core.wasm -o agent.wasm\n"
                ),
                true,
            );
        }
    }
    add("README.md", readme(name, lang, &sabot), false);

    let mut written = Vec::new();
    for (path, text, executable) in files {
        let io = |source| Error::File {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        written.push(path);
    }
    Ok(written)
}

const BUILD_HEAD: &str = "#!/usr/bin/env bash\n# Builds agent.wasm, the component `pipeline.toml` runs.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n";

fn pipeline(name: &str) -> String {
    format!(
        r#"# Try the agent: generated card transactions -> {name} -> out/big.jsonl
#   ./build.sh && sabot run pipeline.toml

edges = ["transactions -> {name} -> big"]

[sources.transactions]
type = "generator"
count = 100_000
cards = 1_000
seed = 42

[agents.{name}]
module = "agent.wasm"
parallelism = 2
# Rows are routed by card, so each instance sees (and keeps the state of) its own cards.
key = "card_id"
config = {{ threshold = 500.0 }}

[sinks.big]
type = "file"
path = "out/big.jsonl"
"#
    )
}

fn readme(name: &str, lang: Lang, sabot: &str) -> String {
    let (language, edit) = match lang {
        Lang::Rust => ("Rust", "src/lib.rs"),
        Lang::Js => ("JavaScript", "agent.js"),
        Lang::Python => ("Python", "agent.py"),
        Lang::Go => ("Go", "main.go"),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "# {name}\n\nA Sabot agent in {language}. It keeps the transactions whose `amount` is above \
         `threshold` (its config) and adds `big_count`: how many such transactions the card has \
         made so far, kept by the host in keyed state (so it survives restarts with checkpoints).\n\n\
         ```sh\n./build.sh                       # -> agent.wasm\n{sabot} run pipeline.toml   # -> out/big.jsonl\n```\n\n\
         Edit `{edit}`; `pipeline.toml` wires it between a generator and a file.\n"
    );
    out
}

fn rust_manifest(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
sabot-sdk = {{ path = "{sdk}/guest-sdk/rust" }}
serde = {{ version = "1", features = ["derive"] }}

# Not part of another workspace.
[workspace]

[profile.release]
debug = false
incremental = true
strip = "debuginfo"
"#
    )
}

/// The Go example's module file (its requirements, indirect ones included, are the SDK's), for
/// module `example.com/NAME`, with the SDK replaced by the checkout's.
fn go_module(name: &str, sdk: &Path) -> Result<String, Error> {
    let example = sdk.join("examples/fraud-detection/agents/go/go.mod");
    let text = std::fs::read_to_string(&example).map_err(|source| Error::File {
        path: example.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .map(|line| {
            if line.starts_with("module ") {
                format!("module example.com/{name}")
            } else if line.starts_with("replace github.com/sabot-dev/sabot/guest-sdk/go") {
                format!(
                    "replace github.com/sabot-dev/sabot/guest-sdk/go => {}/guest-sdk/go",
                    sdk.display()
                )
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

const RUST_AGENT: &str = r#"//! Transactions above `threshold`, with how many such transactions their card has made so far.

use std::collections::HashMap;
use std::sync::Arc;

use sabot_sdk::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, UInt32Array};
use sabot_sdk::arrow::compute::take;
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema};
use sabot_sdk::state::ValueState;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_threshold")]
    threshold: f64,
}

fn default_threshold() -> f64 {
    500.0
}

pub struct BigSpenders {
    threshold: f64,
    /// Per card: how many transactions above the threshold it has made.
    counts: ValueState<i64>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, AgentError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            AgentError::invalid_input(format!(
                "expected a column `{name}` of type {}",
                std::any::type_name::<T>().rsplit("::").next().unwrap_or("?")
            ))
        })
}

impl Agent for BigSpenders {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        Ok(BigSpenders {
            threshold: settings.threshold,
            counts: ValueState::new("big"),
        })
    }

    fn process(&mut self, _port: u32, batch: RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        let amount = column::<Float64Array>(&batch, "amount")?;
        let card = column::<Int64Array>(&batch, "card_id")?;
        let rows: Vec<u32> = (0..batch.num_rows())
            .filter(|&i| amount.is_valid(i) && amount.value(i) > self.threshold)
            .map(|i| i as u32)
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        // One state read and one write for the whole batch.
        let mut keys: Vec<i64> = rows.iter().map(|&i| card.value(i as usize)).collect();
        keys.sort_unstable();
        keys.dedup();
        let stored = self.counts.get_many(&keys)?;
        let mut counts: HashMap<i64, i64> = keys
            .iter()
            .copied()
            .zip(stored.into_iter().map(|c| c.unwrap_or(0)))
            .collect();
        let running: Vec<i64> = rows
            .iter()
            .map(|&i| {
                let count = counts.entry(card.value(i as usize)).or_default();
                *count += 1;
                *count
            })
            .collect();
        let updated: Vec<(i64, i64)> = counts.into_iter().collect();
        self.counts.set_many(&updated)?;

        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        columns.push(Arc::new(Int64Array::from(running)));
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("big_count", DataType::Int64, false));
        out.emit(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?);
        Ok(())
    }
}

sabot_sdk::export_agent!(BigSpenders);
"#;

const JS_AGENT: &str = r#"// Transactions above `threshold`, with how many such transactions their card has made so far.
import { makeVector } from 'apache-arrow';
import { AgentError, ValueState, take, withColumn } from '@sabot/agent';

export default class Agent {
  constructor(config) {
    this.threshold = config.threshold ?? 500;
    if (typeof this.threshold !== 'number') {
      throw AgentError.invalidConfig(`threshold must be a number, got ${JSON.stringify(config.threshold)}`);
    }
    // Per card: how many transactions above the threshold it has made.
    this.counts = new ValueState('big');
  }

  process(table) {
    const amount = table.getChild('amount');
    const card = table.getChild('card_id');
    if (amount === null || card === null) {
      const have = table.schema.fields.map((f) => f.name).join(', ');
      throw AgentError.invalidInput(`expected columns \`amount\` and \`card_id\`; the batch has ${have}`);
    }
    const amounts = amount.toArray();
    const rows = [];
    for (let i = 0; i < amounts.length; i++) if (amounts[i] > this.threshold) rows.push(i);
    if (rows.length === 0) return undefined;

    // One state read and one write for the whole batch.
    const picked = take(table, rows);
    const cards = picked.getChild('card_id').toArray(); // BigInt64Array
    const keys = [...new Set(cards)];
    const counts = new Map(keys.map((k, i) => [k, 0]));
    this.counts.getMany(keys).forEach((c, i) => counts.set(keys[i], c ?? 0));
    const running = new BigInt64Array(cards.length);
    cards.forEach((k, i) => {
      counts.set(k, counts.get(k) + 1);
      running[i] = BigInt(counts.get(k));
    });
    this.counts.setMany([...counts]);
    return withColumn(picked, 'big_count', makeVector(running));
  }
}
"#;

const PYTHON_AGENT: &str = r#""""Transactions above ``threshold``, with how many such transactions their card has made so far."""

from sabot_agent import Agent, AgentError, RecordBatch, ValueState, int64


class BigSpenders(Agent):
    def __init__(self, config):
        self.threshold = config.get("threshold", 500.0)
        if not isinstance(self.threshold, (int, float)):
            raise AgentError.invalid_config(f"threshold must be a number, got {self.threshold!r}")
        # Per card: how many transactions above the threshold it has made.
        self.counts = ValueState("big")

    def process(self, batch: RecordBatch, port: int):
        if "amount" not in batch.column_names or "card_id" not in batch.column_names:
            raise AgentError.invalid_input(f"expected columns `amount` and `card_id`; the batch has {batch.column_names}")
        amount, cards = batch["amount"], batch["card_id"]
        rows = [i for i, a in enumerate(amount) if a is not None and a > self.threshold]
        if not rows:
            return None
        # One state read and one write for the whole batch.
        keys = list(dict.fromkeys(cards[i] for i in rows))
        counts = {k: c or 0 for k, c in zip(keys, self.counts.get_many(keys))}
        running = []
        for i in rows:
            counts[cards[i]] += 1
            running.append(counts[cards[i]])
        self.counts.set_many(counts.items())
        return batch.take(rows).with_column("big_count", int64, running)
"#;

const GO_AGENT: &str = r#"// Transactions above `threshold`, with how many such transactions their card has made so far.
package main

import (
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	agent "github.com/sabot-dev/sabot/guest-sdk/go"
)

type bigSpenders struct {
	threshold float64
	// Per card: how many transactions above the threshold it has made.
	counts agent.ValueState[int64]
}

func newAgent(config []byte) (agent.Agent, error) {
	settings := struct {
		Threshold *float64 `json:"threshold"`
	}{}
	if err := json.Unmarshal(config, &settings); err != nil {
		return nil, agent.InvalidConfig("config: %v", err)
	}
	a := &bigSpenders{threshold: 500, counts: agent.NewValueState[int64]("big")}
	if settings.Threshold != nil {
		a.threshold = *settings.Threshold
	}
	return a, nil
}

func (a *bigSpenders) Process(batch arrow.RecordBatch, port uint32) ([]agent.Output, error) {
	amountIdx, cardIdx := batch.Schema().FieldIndices("amount"), batch.Schema().FieldIndices("card_id")
	if len(amountIdx) != 1 || len(cardIdx) != 1 {
		return nil, agent.InvalidInput(-1, "expected columns `amount` and `card_id`; the batch has %v", batch.Schema())
	}
	amount, ok1 := batch.Column(amountIdx[0]).(*array.Float64)
	card, ok2 := batch.Column(cardIdx[0]).(*array.Int64)
	if !ok1 || !ok2 {
		return nil, agent.InvalidInput(-1, "expected `amount` float64 and `card_id` int64; the batch has %v", batch.Schema())
	}
	var rows []int
	for i := 0; i < amount.Len(); i++ {
		if amount.IsValid(i) && amount.Value(i) > a.threshold {
			rows = append(rows, i)
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	// One state read and one write for the whole batch.
	slot := map[int64]int{}
	var ids []int64
	var keys [][]byte
	for _, i := range rows {
		if _, ok := slot[card.Value(i)]; !ok {
			slot[card.Value(i)] = len(ids)
			ids = append(ids, card.Value(i))
			keys = append(keys, agent.Int64Key(card.Value(i)))
		}
	}
	counts, _, err := a.counts.GetMany(keys)
	if err != nil {
		return nil, err
	}
	running := array.NewInt64Builder(memory.DefaultAllocator)
	defer running.Release()
	for _, i := range rows {
		s := slot[card.Value(i)]
		counts[s]++
		running.Append(counts[s])
	}
	if err := a.counts.SetMany(keys, counts); err != nil {
		return nil, err
	}
	picked := agent.Take(batch, rows)
	defer picked.Release()
	out, err := agent.WithColumn(picked, "big_count", running.NewArray())
	if err != nil {
		return nil, err
	}
	return agent.Emit(out), nil
}

func init() { agent.Register(newAgent) }

func main() {}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_type_names() {
        assert_eq!(camel("big-spenders"), "BigSpenders");
        assert_eq!(camel("fraud_rules2"), "FraudRules2");
    }

    #[test]
    fn a_name_that_is_not_an_identifier_is_refused() {
        for bad in ["", "Big", "9lives", "a b", "../x", "é"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("expected a lowercase letter"), "{bad}: {err}");
        }
        check_name("big-spenders_2").unwrap();
    }
}
