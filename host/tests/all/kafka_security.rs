//! Kafka as production clusters run it, against the SASL_SSL listener of the test broker
//! (`scripts/kafka.sh`: a CA made at test time, SCRAM users made with Kafka's StorageTool), and
//! compressed topics: kcat is the client that is not Sabot.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::{SCHEMA, bootstrap, topic, transactions};
use crate::support::{Scratch, sabot, stderr};

/// The SASL_SSL listener's address.
fn secure_bootstrap() -> String {
    std::env::var("SABOT_KAFKA_SASL_SSL_BOOTSTRAP").expect(
        "SABOT_KAFKA_SASL_SSL_BOOTSTRAP is not set: run the tests with scripts/test (scripts/kafka.sh starts the broker)",
    )
}

/// A file of the test CA's directory (`ca.pem`, `other-ca.pem`).
fn tls(name: &str) -> String {
    let dir = std::env::var("SABOT_KAFKA_TLS_DIR")
        .expect("SABOT_KAFKA_TLS_DIR is set by scripts/kafka.sh");
    format!("{dir}/{name}")
}

/// Client properties for the SASL_SSL listener, as a TOML inline table.
fn secure_properties(mechanism: &str, password: &str, ca: &str) -> String {
    format!(
        r#"{{ "security.protocol" = "SASL_SSL", "sasl.mechanism" = "{mechanism}", "sasl.username" = "alice", "sasl.password" = "{password}", "ssl.ca.location" = "{}" }}"#,
        tls(ca)
    )
}

/// kcat over SASL_SSL (PLAIN: Debian's kcat links an older librdkafka whose SCRAM the broker
/// refuses).
fn kcat_secure() -> Command {
    let mut c = Command::new("kcat");
    c.args(["-b", &secure_bootstrap()]);
    for p in [
        "security.protocol=SASL_SSL".to_owned(),
        "sasl.mechanism=PLAIN".into(),
        "sasl.username=alice".into(),
        "sasl.password=alice-secret".into(),
        format!("ssl.ca.location={}", tls("ca.pem")),
    ] {
        c.args(["-X", &p]);
    }
    c
}

/// Writes `lines` to `topic` with `kcat`, one record each.
fn produce_with(mut kcat: Command, topic: &str, lines: &[String]) {
    let mut child = kcat
        .args(["-t", topic, "-P"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run kcat");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "kcat could not produce to {topic}"
    );
}

/// Every committed record value of `topic`, read with `kcat`.
fn consume_with(mut kcat: Command, topic: &str) -> Vec<String> {
    let out = kcat
        .args(["-t", topic, "-C", "-e", "-o", "beginning", "-q"])
        .args(["-X", "isolation.level=read_committed", "-f", "%s\n"])
        .output()
        .expect("run kcat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn plain_kcat() -> Command {
    let mut c = Command::new("kcat");
    c.args(["-b", &bootstrap()]);
    c
}

#[test]
fn exactly_once_over_sasl_ssl_with_scram_is_read_committed_by_another_client() {
    let (input, output) = (topic("secure-in"), topic("secure-out"));
    produce_with(kcat_secure(), &input, &transactions(3_000));
    let s = Scratch::new();
    let summary = s
        .run(&format!(
            r#"edges = ["txns -> big -> out"]
[pipeline]
name = "kafka-sasl-ssl"
batch_size = 500
[pipeline.checkpoint]
interval_ms = 100
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = true
{SCHEMA}
properties = {source}
[agents.big]
module = "builtin:filter"
config = {{ where = "amount >= 50.0" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
properties = {sink}
"#,
            b = secure_bootstrap(),
            source = secure_properties("SCRAM-SHA-512", "alice-secret", "ca.pem"),
            sink = secure_properties("SCRAM-SHA-256", "alice-secret", "ca.pem"),
        ))
        .unwrap();
    assert_eq!(summary.events_in, 3_000);
    let mut got: Vec<i64> = consume_with(kcat_secure(), &output)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["txn_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    got.sort_unstable();
    let expected: Vec<i64> = transactions(3_000)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["amount"].as_f64().unwrap() >= 50.0)
        .map(|v| v["txn_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, expected, "each passing record once, committed");
}

/// Runs a one-source pipeline reading the SASL_SSL listener with `properties`; the error and how
/// long it took to come.
fn failed_start(bootstrap: &str, properties: &str) -> (String, Duration) {
    let s = Scratch::new();
    let started = Instant::now();
    let error = s
        .run(&format!(
            r#"edges = ["in -> out"]
[pipeline]
name = "kafka-refused"
[sources.in]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["anything"]
format = "raw"
properties = {properties}
[sinks.out]
type = "blackhole"
"#
        ))
        .expect_err("the run cannot reach the cluster")
        .to_string();
    (error, started.elapsed())
}

#[test]
fn a_wrong_password_ca_or_mechanism_stops_the_start_naming_the_broker_and_what_to_check() {
    let b = secure_bootstrap();
    // A hang guard, far above the documented 15 s bound: these failures are reported at once.
    let bound = Duration::from_secs(60);

    let (e, took) = failed_start(
        &b,
        &secure_properties("SCRAM-SHA-256", "not-the-password", "ca.pem"),
    );
    assert!(took < bound, "took {took:?}");
    for part in [
        &b as &str,
        "SASL_SSL",
        "SCRAM-SHA-256",
        "alice",
        "invalid credentials",
        "sasl.password",
    ] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }
    assert!(
        !e.contains("not-the-password"),
        "the password is not quoted: {e}"
    );

    let (e, took) = failed_start(
        &b,
        &secure_properties("PLAIN", "alice-secret", "other-ca.pem"),
    );
    assert!(took < bound, "took {took:?}");
    for part in [&b as &str, "certificate verify failed", "ssl.ca.location"] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }

    let oauth = format!(
        r#"{{ "security.protocol" = "SASL_SSL", "sasl.mechanism" = "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt" = "true", "sasl.oauthbearer.config" = "principal=alice", "ssl.ca.location" = "{}" }}"#,
        tls("ca.pem")
    );
    let (e, took) = failed_start(&b, &oauth);
    assert!(took < bound, "took {took:?}");
    for part in [
        "OAUTHBEARER",
        "Unsupported SASL mechanism",
        "SCRAM-SHA-512",
        "sasl.mechanism",
    ] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }

    // Nothing listens on port 1: the start gives up at the documented bound, saying so.
    let (e, took) = failed_start(
        "127.0.0.1:1",
        &secure_properties("PLAIN", "alice-secret", "ca.pem"),
    );
    assert!(took < bound, "took {took:?}");
    for part in [
        "127.0.0.1:1",
        "Connection refused",
        "at most 15 s",
        "bootstrap",
    ] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }
}

#[test]
fn topics_compressed_with_every_codec_are_read() {
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let input = topic(&format!("codec-{codec}"));
        let mut kcat = plain_kcat();
        kcat.args(["-z", codec]);
        produce_with(kcat, &input, &transactions(500));
        let s = Scratch::new();
        let summary = s
            .run(&format!(
                r#"edges = ["txns -> out"]
[pipeline]
name = "codec-{codec}"
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = true
{SCHEMA}
[sinks.out]
type = "file"
path = "{out}"
"#,
                b = bootstrap(),
                out = s.path("out.jsonl").display(),
            ))
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(summary.events_in, 500, "{codec}");
        assert_eq!(s.read("out.jsonl").lines().count(), 500, "{codec}");
    }
}

/// The codecs of the data batches of `topic`'s partition 0 on the broker's disk, as Kafka's
/// DumpLogSegments prints them.
fn codecs_on_disk(topic: &str) -> Vec<String> {
    let dir = std::env::var("SABOT_KAFKA_DIR").expect("SABOT_KAFKA_DIR is set by scripts/kafka.sh");
    let lib = std::fs::read_dir(
        std::path::Path::new(&std::env::var("HOME").unwrap()).join(".cache/sabot/kafka"),
    )
    .expect("the broker's jars")
    .filter_map(Result::ok)
    .map(|e| e.path().join("lib/*"))
    .next()
    .expect("one Kafka version");
    let segments: Vec<String> = std::fs::read_dir(format!("{dir}/data/{topic}-0"))
        .expect("the topic's partition directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| p.display().to_string())
        .collect();
    let out = Command::new("java")
        .args([
            "-cp",
            &lib.display().to_string(),
            "kafka.tools.DumpLogSegments",
            "--files",
            &segments.join(","),
        ])
        .output()
        .expect("run java");
    // Each batch: `baseOffset: 0 lastOffset: 99 count: 100 … isControl: false … compresscodec: zstd …`;
    // transaction markers (control batches) are never compressed.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("isControl: false"))
        .filter_map(|l| l.split("compresscodec: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn a_sink_with_zstd_compression_writes_zstd_batches_that_kcat_reads() {
    let output = topic("zstd-out");
    let s = Scratch::new();
    s.run(&format!(
        r#"edges = ["gen -> out"]
[pipeline]
name = "zstd-sink"
[sources.gen]
type = "generator"
count = 2000
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
properties = {{ "compression.type" = "zstd" }}
"#,
        b = bootstrap()
    ))
    .unwrap();
    let values = consume_with(plain_kcat(), &output);
    assert_eq!(values.len(), 2000);
    let codecs = codecs_on_disk(&output);
    assert!(!codecs.is_empty(), "DumpLogSegments printed no batch");
    assert!(
        codecs.iter().all(|c| c.eq_ignore_ascii_case("zstd")),
        "codecs on disk: {codecs:?}"
    );
}

#[test]
fn the_cli_names_an_unreachable_broker_and_exits_within_the_bound() {
    let s = Scratch::new();
    s.write(
        "p.toml",
        r#"edges = ["in -> out"]
[pipeline]
name = "unreachable"
[sources.in]
type = "kafka"
bootstrap = "127.0.0.1:1"
topics = ["t"]
format = "raw"
[sinks.out]
type = "blackhole"
"#,
    );
    let out = sabot(&["run", "p.toml"], s.dir.path());
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("127.0.0.1:1 over PLAINTEXT") && e.contains("Connection refused"),
        "{e}"
    );
}
