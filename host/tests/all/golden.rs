//! Golden outputs: whole pipelines whose output is compared with files under `tests/golden/`
//! (as multisets of lines: parallel instances do not keep order). `SABOT_BLESS=1` rewrites them.

use std::path::PathBuf;

use sabot_host::connectors::SinkSpec;
use sabot_host::connectors::file::FileSinkSpec;
use sabot_host::wasm::ModuleSource;
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

use crate::support::{Scratch, runtime, sorted_lines};

fn golden(name: &str) -> PathBuf {
    sabot_test_artifacts::workspace()
        .join("tests/golden")
        .join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("SABOT_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with SABOT_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        sorted_lines(actual),
        sorted_lines(&expected),
        "output differs from {}",
        path.display()
    );
}

/// Redirects every sink of `spec` to a JSON Lines file in `scratch`.
fn sinks_to_files(spec: &mut PipelineSpec, scratch: &Scratch) {
    for (name, sink) in spec.sinks.iter_mut() {
        *sink = SinkSpec::File(FileSinkSpec {
            path: scratch.path(&format!("{name}.jsonl")),
            format: None,
        });
    }
}

#[test]
fn fraud_detection_example_catches_the_injected_fraud_with_few_false_alarms() {
    let workspace = sabot_test_artifacts::workspace();
    let mut spec = PipelineSpec::load_with_modules(
        workspace.join("examples/fraud-detection/pipeline.toml"),
        &[
            (
                "rules".to_owned(),
                ModuleSource::Path(sabot_test_artifacts::FRAUD_RULES.into()),
            ),
            (
                "score".to_owned(),
                ModuleSource::Path(sabot_test_artifacts::FRAUD_SCORE.into()),
            ),
        ],
    )
    .unwrap();
    let scratch = Scratch::new();
    sinks_to_files(&mut spec, &scratch);
    let summary = Pipeline::new(spec, runtime())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert_eq!(summary.events_in, 1_000_000);

    // A flagged fraud is flagged for the pattern that was injected.
    let flagged = scratch.read("flagged.jsonl");
    for line in flagged.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if !row["fraud"].is_null() {
            assert_eq!(
                row["fraud"], row["reason"],
                "reason and label disagree: {line}"
            );
        }
    }
    let scores = scratch.read("scores.jsonl");
    let all: serde_json::Value = serde_json::from_str(scores.lines().last().unwrap()).unwrap();
    assert_eq!(all["label"], "all", "{scores}");
    assert!(all["recall"].as_f64().unwrap() > 0.99, "{scores}");
    assert!(all["precision"].as_f64().unwrap() > 0.97, "{scores}");
    check_golden("fraud-detection.flagged.jsonl", &flagged);
    check_golden(
        "fraud-detection.alerts.jsonl",
        &scratch.read("alerts.jsonl"),
    );
    check_golden("fraud-detection.scores.jsonl", &scores);
}

#[test]
fn fraud_detection_in_sql_flags_what_the_toml_pipeline_flags() {
    // pipeline.sql calls the rules agent as a table function, keyed by card, its settings as
    // named arguments: the same rows as pipeline.toml's, checked against the same goldens.
    let workspace = sabot_test_artifacts::workspace();
    let dir = workspace.join("examples/fraud-detection");
    let runtime = runtime();
    let mut spec = PipelineSpec::load_with(
        dir.join("pipeline.sql"),
        &[(
            "fraud_rules".to_owned(),
            ModuleSource::Path(sabot_test_artifacts::FRAUD_RULES.into()),
        )],
        Some(&sabot_host::wasm::function::local(&runtime, &dir)),
    )
    .unwrap();
    let rules: Vec<_> = spec
        .agents
        .values()
        .filter(|a| matches!(&a.module, ModuleSource::Path(p) if p.ends_with("fraud_rules.wasm")))
        .collect();
    assert_eq!(rules.len(), 1, "one rules agent");
    assert_eq!(rules[0].parallelism, 2);
    assert_eq!(rules[0].key.as_deref(), Some("card_id"));
    let scratch = Scratch::new();
    sinks_to_files(&mut spec, &scratch);
    let summary = Pipeline::new(spec, runtime)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert_eq!(summary.events_in, 1_000_000);
    check_golden(
        "fraud-detection.flagged.jsonl",
        &scratch.read("flagged.jsonl"),
    );
    check_golden(
        "fraud-detection.alerts.jsonl",
        &scratch.read("alerts.jsonl"),
    );
}

/// trades.csv -> filter (notional >= 10 000, lit venues) -> project(`select`) -> out.jsonl
fn trades_pipeline(select: &str) -> String {
    let data = sabot_test_artifacts::workspace().join("tests/data/trades.csv");
    format!(
        r#"
edges = ["trades -> big -> shape -> out"]
[sources.trades]
type = "file"
path = {data:?}
schema = {{ trade_id = "int64", symbol = "string", qty = "int64", price = "float64", venue = "string" }}

[agents.big]
module = "builtin:filter"
config = {{ where = "qty * price >= 10000 AND venue <> 'DARK'" }}

[agents.shape]
module = "builtin:project"
config = {{ select = {select} }}

[sinks.out]
type = "file"
path = "out.jsonl"
"#
    )
}

#[test]
fn builtin_filter_and_project_need_no_code() {
    let s = Scratch::new();
    let summary = s
        .run(&trades_pipeline(
            r#"["trade_id", "symbol", "qty * price AS notional"]"#,
        ))
        .unwrap();
    assert_eq!(summary.events_in, 12);
    check_golden("big-lit-trades.jsonl", &s.read("out.jsonl"));
}

#[test]
fn built_in_operators_compute_conditionals_and_functions_like_a_reference() {
    let s = Scratch::new();
    let select = r#"[
        "trade_id",
        "LOWER(symbol) || '@' || venue AS sym",
        "CASE WHEN qty * price >= 12000 THEN 'large' WHEN qty < 100 THEN 'few' ELSE 'medium' END AS size",
        "ROUND(qty * price / 1000, 1) AS k_notional",
        "LPAD(CAST(trade_id AS VARCHAR), 4, '0') AS ref",
        "COALESCE(NULLIF(venue, 'XNAS'), 'nasdaq') AS market",
        "JSON_VALUE('{\"XNAS\": \"US\", \"XNYS\": \"US\", \"XLON\": \"UK\"}', '$.' || venue) AS country"
    ]"#;
    let err = s.run(&trades_pipeline(select)).unwrap_err().to_string();
    assert!(
        err.contains("must be a constant"),
        "a path built per row is refused: {err}"
    );

    let select = select.replace(
        r#"JSON_VALUE('{\"XNAS\": \"US\", \"XNYS\": \"US\", \"XLON\": \"UK\"}', '$.' || venue)"#,
        "CASE WHEN venue = 'XLON' THEN 'UK' ELSE 'US' END",
    );
    s.run(&trades_pipeline(&select)).unwrap();
    let got: Vec<serde_json::Value> = s
        .read("out.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // The reference, computed here from the CSV.
    let data =
        std::fs::read_to_string(sabot_test_artifacts::workspace().join("tests/data/trades.csv"))
            .unwrap();
    let mut expected = Vec::new();
    for line in data.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (id, symbol, venue) = (f[0].parse::<i64>().unwrap(), f[1], f[4]);
        let (qty, price) = (f[2].parse::<i64>().unwrap(), f[3].parse::<f64>().unwrap());
        let notional = qty as f64 * price;
        if notional < 10_000.0 || venue == "DARK" {
            continue;
        }
        let size = if notional >= 12_000.0 {
            "large"
        } else if qty < 100 {
            "few"
        } else {
            "medium"
        };
        expected.push(serde_json::json!({
            "trade_id": id,
            "sym": format!("{}@{venue}", symbol.to_lowercase()),
            "size": size,
            "k_notional": (notional / 1000.0 * 10.0).round() / 10.0,
            "ref": format!("{id:04}"),
            "market": if venue == "XNAS" { "nasdaq" } else { venue },
            "country": if venue == "XLON" { "UK" } else { "US" },
        }));
    }
    assert!(expected.len() >= 5, "the reference keeps several trades");
    assert_eq!(got, expected);
}

#[test]
fn an_operator_expression_naming_a_missing_column_fails_naming_it() {
    let s = Scratch::new();
    let err = s
        .run(&trades_pipeline(r#"["trade_id", "lower_venue_is_lit"]"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("agent `shape`"), "{err}");
    assert!(err.contains("unknown column `lower_venue_is_lit`"), "{err}");
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn fintech_enrichment_joins_each_trade_with_the_reference_data_and_quote_of_its_time() {
    // The TOML pipeline, then the same written in SQL: both against one reference.
    for file in ["pipeline.toml", "pipeline.sql"] {
        fintech_enrichment(file);
    }
}

fn fintech_enrichment(file: &str) {
    let workspace = sabot_test_artifacts::workspace();
    let dir = workspace.join("examples/fintech-enrichment");
    let mut spec = PipelineSpec::load(dir.join(file)).unwrap();
    let scratch = Scratch::new();
    sinks_to_files(&mut spec, &scratch);
    Pipeline::new(spec, runtime())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    let out = scratch.read("out.jsonl");

    // The reference: the latest quote and security version at or before each trade.
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("data").join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let quotes = read("quotes.jsonl");
    let sectors: Vec<(String, i64, String)> =
        std::fs::read_to_string(dir.join("data/securities.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_owned(), f[1].parse().unwrap(), f[3].to_owned())
            })
            .collect();
    let mut expected = Vec::new();
    for t in read("trades.jsonl") {
        let (sym, ts) = (t["symbol"].as_str().unwrap(), t["ts"].as_i64().unwrap());
        let quote = quotes
            .iter()
            .filter(|q| q["symbol"] == sym && q["quoted"].as_i64().unwrap() <= ts)
            .max_by_key(|q| q["quoted"].as_i64().unwrap());
        let sector = sectors
            .iter()
            .filter(|s| s.0 == sym && s.1 <= ts)
            .max_by_key(|s| s.1);
        if let (Some(q), Some(s)) = (quote, sector) {
            expected.push(format!(
                "{} {} {} {}",
                t["trade_id"], s.2, q["bid"], q["quoted"]
            ));
        }
    }
    expected.sort();
    let mut got: Vec<String> = out
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {} {} {}",
                r["trade_id"],
                r["sector"].as_str().unwrap(),
                r["bid"],
                r["quoted"]
            )
        })
        .collect();
    got.sort();
    crate::support::assert_same_lines(&got, &expected, file);
    assert!(
        out.contains("\"sector\":\"Pharmaceuticals\""),
        "the reclassification shows"
    );
    assert!(
        out.contains("\"sector\":\"Health Care\""),
        "and what came before it"
    );
    if file.ends_with(".toml") {
        check_golden("fintech-enrichment.enriched.jsonl", &out);
    }
}
