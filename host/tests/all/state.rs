//! Keyed state kept by the host: per key, across batches, instances, and replaced instances.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::{Array, Float64Array, Int64Array, StringArray};
use sabot_host::Error;
use sabot_host::connectors::Source;
use sabot_host::connectors::generator::GeneratorSpec;
use sabot_test_artifacts::MISBEHAVE;

use crate::support::{Scratch, lit};

const EVENTS: u64 = 20_000;
const BATCH: usize = 1_000;

fn pipeline(mode: &str, count: u64, agent_extra: &str) -> String {
    format!(
        r#"
edges = ["gen -> m -> out"]
[pipeline]
batch_size = {BATCH}
[sources.gen]
type = "generator"
count = {EVENTS}
cards = 50
[agents.m]
module = {module}
config = {{ mode = "{mode}", count = {count} }}
{agent_extra}
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
        module = lit(MISBEHAVE)
    )
}

#[derive(Debug, Default, PartialEq)]
struct Expected {
    seen: u64,
    sum: f64,
    merchants: BTreeSet<String>,
}

/// Per card, what the state should hold after the batches `keep` selects.
fn expected(keep: impl Fn(usize) -> bool) -> BTreeMap<i64, Expected> {
    let spec: GeneratorSpec = toml::from_str(&format!("count = {EVENTS}\ncards = 50")).unwrap();
    let mut generator = spec.open(BATCH);
    let mut out: BTreeMap<i64, Expected> = BTreeMap::new();
    let mut index = 0;
    while let Some(batch) = generator.next_batch().unwrap() {
        index += 1;
        if !keep(index) {
            continue;
        }
        let cards = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let amounts = batch
            .column(3)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let merchants = batch
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        for i in 0..batch.num_rows() {
            let e = out.entry(cards.value(i)).or_default();
            e.seen += 1;
            e.sum += amounts.value(i);
            e.merchants.insert(merchants.value(i).to_owned());
        }
    }
    out
}

/// Per card, the row with the highest `seen`: the state after the card's last batch.
fn last_rows(text: &str) -> BTreeMap<i64, serde_json::Value> {
    let mut out: BTreeMap<i64, serde_json::Value> = BTreeMap::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let card = row["card_id"].as_i64().unwrap();
        let newer = out
            .get(&card)
            .is_none_or(|old| old["seen"].as_u64() < row["seen"].as_u64());
        if newer {
            out.insert(card, row);
        }
    }
    out
}

fn check(rows: &BTreeMap<i64, serde_json::Value>, expected: &BTreeMap<i64, Expected>) {
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (card, e) in expected {
        let row = &rows[card];
        assert_eq!(row["seen"].as_u64().unwrap(), e.seen, "card {card}: {row}");
        assert_eq!(
            row["amounts"].as_u64().unwrap(),
            e.seen,
            "card {card}: {row}"
        );
        assert_eq!(
            row["merchants"].as_u64().unwrap(),
            e.merchants.len() as u64,
            "card {card}: {row}"
        );
        let sum = row["sum"].as_f64().unwrap();
        assert!(
            (sum - e.sum).abs() < 1e-6 * e.sum.max(1.0),
            "card {card}: sum {sum} vs {}",
            e.sum
        );
        let mean = row["mean"].as_f64().unwrap();
        assert!(
            (mean - e.sum / e.seen as f64).abs() < 1e-6 * mean.max(1.0),
            "card {card}: mean {mean}"
        );
    }
}

#[test]
fn keyed_state_primitives_accumulate_per_key_across_batches_and_instances() {
    let s = Scratch::new();
    s.run(&pipeline("state", 0, "parallelism = 3\nkey = \"card_id\""))
        .unwrap();
    check(&last_rows(&s.read("out.jsonl")), &expected(|_| true));
}

#[test]
fn state_outlives_a_trapped_instance() {
    let s = Scratch::new();
    // One instance: batches 4, 8, 12, 16 and 20 trap (each fresh instance handles 3) and are
    // skipped; the counts must carry on from the host's state, not restart from zero.
    let summary = s.run(&pipeline("state", 3, "on_error = \"skip\"")).unwrap();
    assert_eq!(summary.failed_batches, 5);
    check(
        &last_rows(&s.read("out.jsonl")),
        &expected(|batch| batch % 4 != 0),
    );
}

#[test]
fn reading_state_of_keys_another_instance_owns_is_refused() {
    let s = Scratch::new();
    let err = s
        .run(&pipeline("steal", 0, "parallelism = 4\nkey = \"card_id\""))
        .unwrap_err();
    assert!(matches!(err, Error::Agent { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("state `seen`: key"), "{message}");
    assert!(message.contains("which instance"), "{message}");
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn an_unkeyed_agent_with_several_instances_cannot_use_keyed_state() {
    let s = Scratch::new();
    let err = s
        .run(&pipeline("steal", 0, "parallelism = 2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("runs 2 instances without a `key`"), "{err}");
}

#[test]
fn rocksdb_state_gives_the_same_results_as_memory_and_lives_in_the_data_dir() {
    let s = Scratch::new();
    let text = pipeline("state", 0, "parallelism = 2\nkey = \"card_id\"")
        .replace("[pipeline]\n", "[pipeline]\nstate = \"rocksdb\"\n");
    let pipeline = s.pipeline(&text).unwrap();
    let data = s.path("data");
    pipeline
        .run(sabot_host::RunOptions {
            data_dir: Some(data.clone()),
            ..Default::default()
        })
        .unwrap();
    check(&last_rows(&s.read("out.jsonl")), &expected(|_| true));
    let files = std::fs::read_dir(data.join("state/m")).unwrap().count();
    assert!(files > 0, "no RocksDB files under {}", data.display());
}
