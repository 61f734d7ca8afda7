//! File sources and sinks: bad rows are named, skipped or dead-lettered; output appears whole or
//! not at all.

use crate::support::{Scratch, sorted_lines};

const JSONL: &str = r#"{"id": 1, "amount": 10.5, "country": "FR"}
{"id": 2, "amount": "lots", "country": "NG"}
not json at all

{"id": 4, "amount": 7.0, "country": "KP"}
"#;

const CSV: &str = "id,amount,country\n1,10.5,FR\n2,lots,NG\n3,1.0\n4,7.0,KP\n";

fn copy_pipeline(input: &str, schema: bool, on_error: &str, output: &str) -> String {
    let schema = if schema {
        "schema = { id = \"int64\", amount = \"float64\", country = \"string\" }"
    } else {
        ""
    };
    format!(
        r#"
edges = ["input -> out"]
[pipeline]
dead_letter = "dead.jsonl"
[sources.input]
type = "file"
path = "{input}"
{schema}
on_error = "{on_error}"
[sinks.out]
type = "file"
path = "{output}"
"#
    )
}

#[test]
fn a_bad_jsonl_row_fails_the_run_naming_file_and_line() {
    let s = Scratch::new();
    s.write("in.jsonl", JSONL);
    let err = s
        .run(&copy_pipeline("in.jsonl", true, "fail", "out.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("source `input`"), "{err}");
    assert!(err.contains("in.jsonl:2:"), "{err}");
    assert!(err.contains("on_error"), "{err}");
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn bad_jsonl_rows_can_be_skipped() {
    let s = Scratch::new();
    s.write("in.jsonl", JSONL);
    let summary = s
        .run(&copy_pipeline("in.jsonl", true, "skip", "out.jsonl"))
        .unwrap();
    assert_eq!(summary.events_in, 2);
    assert_eq!(
        sorted_lines(&s.read("out.jsonl")),
        vec![
            r#"{"id":1,"amount":10.5,"country":"FR"}"#,
            r#"{"id":4,"amount":7.0,"country":"KP"}"#
        ]
    );
}

#[test]
fn bad_jsonl_rows_can_be_dead_lettered_with_line_and_reason() {
    let s = Scratch::new();
    s.write("in.jsonl", JSONL);
    s.run(&copy_pipeline("in.jsonl", true, "dead-letter", "out.jsonl"))
        .unwrap();
    let dead: Vec<serde_json::Value> = s
        .read("dead.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0]["location"]
            .as_str()
            .unwrap()
            .ends_with("in.jsonl:2"),
        "{}",
        dead[0]
    );
    assert_eq!(
        dead[0]["raw"].as_str().unwrap().trim(),
        r#"{"id": 2, "amount": "lots", "country": "NG"}"#
    );
    assert!(
        dead[1]["location"]
            .as_str()
            .unwrap()
            .ends_with("in.jsonl:3"),
        "{}",
        dead[1]
    );
    assert_eq!(s.read("out.jsonl").lines().count(), 2);
}

#[test]
fn bad_csv_rows_are_named_skipped_or_dead_lettered() {
    let s = Scratch::new();
    s.write("in.csv", CSV);
    let err = s
        .run(&copy_pipeline("in.csv", true, "fail", "out.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in.csv:3:"), "{err}");

    let summary = s
        .run(&copy_pipeline("in.csv", true, "dead-letter", "out.csv"))
        .unwrap();
    assert_eq!(summary.events_in, 2);
    assert_eq!(
        s.read("out.csv"),
        "id,amount,country\n1,10.5,FR\n4,7.0,KP\n"
    );
    let dead: Vec<serde_json::Value> = s
        .read("dead.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<&str> = dead
        .iter()
        .map(|d| d["location"].as_str().unwrap().rsplit(':').next().unwrap())
        .collect();
    assert_eq!(lines, vec!["3", "4"]);
}

#[test]
fn a_csv_header_that_does_not_match_the_declared_schema_is_refused() {
    let s = Scratch::new();
    s.write("in.csv", "id,price,country\n1,2.0,FR\n");
    let err = s
        .run(&copy_pipeline("in.csv", true, "fail", "out.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the CSV header (id, price, country) does not match the declared schema's columns (id, amount, country)"), "{err}");
}

#[test]
fn schemas_are_inferred_when_not_declared() {
    let s = Scratch::new();
    s.write("in.csv", "id,amount,country\n1,10.5,FR\n4,7.0,KP\n");
    s.run(&copy_pipeline("in.csv", false, "fail", "out.jsonl"))
        .unwrap();
    assert_eq!(
        sorted_lines(&s.read("out.jsonl")),
        vec![
            r#"{"id":1,"amount":10.5,"country":"FR"}"#,
            r#"{"id":4,"amount":7.0,"country":"KP"}"#
        ]
    );
}

#[test]
fn a_failed_run_leaves_an_existing_output_untouched() {
    let s = Scratch::new();
    s.write("in.jsonl", JSONL);
    s.write("out.jsonl", "previous good output\n");
    s.run(&copy_pipeline("in.jsonl", true, "fail", "out.jsonl"))
        .unwrap_err();
    assert_eq!(s.read("out.jsonl"), "previous good output\n");
    assert_eq!(s.files(), vec!["in.jsonl", "out.jsonl", "pipeline.toml"]);
}

#[test]
fn arrow_ipc_round_trips_through_files() {
    let s = Scratch::new();
    let to_arrow = r#"
edges = ["gen -> out"]
[sources.gen]
type = "generator"
count = 20000
[sinks.out]
type = "file"
path = "tx.arrow"
"#;
    s.run(to_arrow).unwrap();
    let back = r#"
edges = ["tx -> out"]
[sources.tx]
type = "file"
path = "tx.arrow"
[sinks.out]
type = "file"
path = "tx.jsonl"
"#;
    let summary = s.run(back).unwrap();
    assert_eq!(summary.events_in, 20_000);
    let text = s.read("tx.jsonl");
    assert_eq!(text.lines().count(), 20_000);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(r#"{"txn_id":0,"ts":"2026-01-01T00:00:00"#),
        "{}",
        text.lines().next().unwrap()
    );
}

#[test]
fn a_file_that_is_not_arrow_is_refused_naming_the_file() {
    let s = Scratch::new();
    s.write("bad.arrow", "definitely not arrow");
    let err = s
        .run("edges = [\"x -> out\"]\n[sources.x]\ntype = \"file\"\npath = \"bad.arrow\"\n[sinks.out]\ntype = \"blackhole\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source `x`") && err.contains("bad.arrow") && err.contains("Arrow IPC"),
        "{err}"
    );
}
