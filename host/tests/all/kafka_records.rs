//! Records that do not decode, met inside one poll among good ones, against the real broker:
//! exactly the bad ones fail or are dead-lettered, named by topic, partition and offset; a schema
//! change splits the batch; MessagePack keeps binary and timestamp columns as they were.

use std::process::Command;

use serde_json::Value;

use crate::kafka::{SCHEMA, bootstrap, kcat_produce, topic, transactions};
use crate::support::Scratch;

/// Writes `rows` (JSON lines of [`SCHEMA`]) to `topic` in `format` through a Sabot sink.
fn sabot_produce(topic: &str, format: &str, rows: &[String], schema: &str) {
    let s = Scratch::new();
    let input = s.write("in.jsonl", &rows.join("\n"));
    s.run(&format!(
        "edges = [\"file -> out\"]\n[pipeline]\nname = \"produce\"\n[sources.file]\ntype = \"file\"\npath = \"{}\"\n{schema}\n[sinks.out]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"{topic}\"\nformat = \"{format}\"\ndelivery = \"at-least-once\"\n",
        input.display(),
        bootstrap()
    ))
    .unwrap();
}

/// The values of `topic` as kcat reads them, with the `sabot.origin` header: (origin, value).
fn dead_letters(topic: &str) -> Vec<(String, String)> {
    let out = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-t",
            topic,
            "-C",
            "-e",
            "-q",
            "-f",
            "%h\t%s\n",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (headers, value) = l.split_once('\t').unwrap_or((l, ""));
            let origin = headers
                .split(',')
                .find_map(|h| h.strip_prefix("sabot.origin="))
                .unwrap_or_default()
                .to_owned();
            (origin, value.to_owned())
        })
        .collect()
}

/// Reads `input` (bounded, one poll: the batch holds every record) with `on_error`; the error,
/// or the txn_ids written.
fn read_back(input: &str, format: &str, on_error: &str, extra: &str) -> Result<Vec<i64>, String> {
    let s = Scratch::new();
    let schema = if format == "arrow" { "" } else { SCHEMA };
    s.run(&format!(
        "edges = [\"k -> out\"]\n[pipeline]\nname = \"mixed\"\nbatch_size = 10000\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{input}\"]\nbounded = true\nformat = \"{format}\"\non_error = \"{on_error}\"\n{extra}\n{schema}\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n",
        bootstrap()
    ))
    .map_err(|e| e.to_string())?;
    let mut ids: Vec<i64> = s
        .read("out.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["txn_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

#[test]
fn in_a_poll_mixing_good_and_bad_records_exactly_the_bad_ones_are_named_by_offset() {
    let rows = transactions(30);
    for format in ["json", "msgpack", "arrow"] {
        let input = topic(&format!("mixed-{format}"));
        // 10 good rows, a bad record, 9 good rows, a bad record, 11 good rows.
        sabot_produce(&input, format, &rows[..10], SCHEMA);
        kcat_produce(
            &input,
            &["not a record of any format \u{1}".to_owned()],
            false,
        );
        sabot_produce(&input, format, &rows[10..19], SCHEMA);
        kcat_produce(&input, &["{\"still\": \"not it\"".to_owned()], false);
        sabot_produce(&input, format, &rows[19..], SCHEMA);
        let good: Vec<i64> = (0..30).collect();

        // Arrow writes one record per batch: the bad ones are the 2nd and the 4th.
        let (first, second) = if format == "arrow" { (1, 3) } else { (10, 20) };
        let e = read_back(&input, format, "fail", "").unwrap_err();
        assert!(
            e.contains(&format!(
                "topic {input} partition 0 offset {first} does not decode"
            )),
            "{format}: {e}"
        );
        assert_eq!(
            read_back(&input, format, "skip", "").unwrap(),
            good,
            "{format}"
        );

        let dlq = topic(&format!("mixed-{format}-dlq"));
        let ids = read_back(
            &input,
            format,
            "dead-letter",
            &format!("dead_letter_topic = \"{dlq}\""),
        )
        .unwrap();
        assert_eq!(ids, good, "{format}: every good record, once");
        let letters = dead_letters(&dlq);
        let origins: Vec<&str> = letters.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(
            origins,
            [
                format!("topic {input} partition 0 offset {first}"),
                format!("topic {input} partition 0 offset {second}")
            ],
            "{format}: exactly the bad records"
        );
        assert!(letters[0].1.starts_with("not a record"), "{letters:?}");
    }
}

#[test]
fn a_schema_change_inside_one_poll_splits_the_batch_instead_of_dead_lettering() {
    let input = topic("arrow-schemas");
    let rows = transactions(20);
    sabot_produce(&input, "arrow", &rows[..10], SCHEMA);
    // The same rows with one more column: a new schema from offset 1 on (one record per batch).
    let wider: Vec<String> = rows[10..]
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["note"] = Value::String("wider".into());
            v.to_string()
        })
        .collect();
    sabot_produce(
        &input,
        "arrow",
        &wider,
        &SCHEMA.replace(" }", ", note = \"utf8\" }"),
    );
    let dlq = topic("arrow-schemas-dlq");
    let ids = read_back(
        &input,
        "arrow",
        "dead-letter",
        &format!("dead_letter_topic = \"{dlq}\""),
    )
    .unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert!(dead_letters(&dlq).is_empty(), "nothing was dead-lettered");
}

#[test]
fn msgpack_keeps_binary_and_timestamp_columns_through_a_topic() {
    let (raw, packed) = (topic("raw-bytes"), topic("packed"));
    // Keys and values with every byte value, read raw: binary columns and a ms timestamp.
    let values: Vec<String> = (0..50).map(|i| format!("v{i}\u{7f}\u{1}é")).collect();
    let keyed: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("k\u{2}{i}\t{v}"))
        .collect();
    kcat_produce(&raw, &keyed, true);
    let s = Scratch::new();
    let raw_source = format!(
        "[sources.k]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{raw}\"]\nbounded = true\nformat = \"raw\"\n",
        bootstrap()
    );
    // Straight to a file, and through a MessagePack topic to a file: the same rows.
    s.run(&format!(
        "edges = [\"k -> out\"]\n[pipeline]\nname = \"direct\"\n{raw_source}[sinks.out]\ntype = \"file\"\npath = \"direct.jsonl\"\n"
    ))
    .unwrap();
    s.run(&format!(
        "edges = [\"k -> out\"]\n[pipeline]\nname = \"pack\"\n{raw_source}[sinks.out]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"{packed}\"\nformat = \"msgpack\"\n",
        bootstrap()
    ))
    .unwrap();
    s.run(&format!(
        "edges = [\"p -> out\"]\n[pipeline]\nname = \"unpack\"\n[sources.p]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{packed}\"]\nbounded = true\nformat = \"msgpack\"\nschema = {{ key = \"binary\", value = \"binary\", topic = \"utf8\", partition = \"int32\", offset = \"int64\", timestamp = \"timestamp[ms]\" }}\n[sinks.out]\ntype = \"file\"\npath = \"unpacked.jsonl\"\n",
        bootstrap()
    ))
    .unwrap();
    let direct = s.read("direct.jsonl");
    assert_eq!(direct.lines().count(), 50);
    assert_eq!(
        s.read("unpacked.jsonl"),
        direct,
        "binary and timestamp columns unchanged"
    );
}
