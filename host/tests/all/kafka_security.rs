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
pub(crate) fn produce_with(mut kcat: Command, topic: &str, lines: &[String]) {
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
pub(crate) fn consume_with(kcat: Command, topic: &str) -> Vec<String> {
    try_consume_with(kcat, topic).unwrap_or_else(|e| panic!("{e}"))
}

/// Every committed record value of `topic`, or what `kcat` said when it could not read it (a
/// topic that does not exist yet, say).
pub(crate) fn try_consume_with(mut kcat: Command, topic: &str) -> Result<Vec<String>, String> {
    let out = kcat
        .args(["-t", topic, "-C", "-e", "-o", "beginning", "-q"])
        .args(["-X", "isolation.level=read_committed", "-f", "%s\n"])
        .output()
        .expect("run kcat");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect())
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

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// A definition reading and writing the SASL_SSL listener with `password` and `ca` (strings of
/// a TOML file: literal values or references).
fn secure_definition(name: &str, input: &str, output: &str, password: &str, ca: &str) -> String {
    let properties = format!(
        r#"{{ "security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", "sasl.username" = "alice", "sasl.password" = "{password}", "ssl.ca.pem" = "{ca}" }}"#
    );
    format!(
        r#"edges = ["txns -> big -> out"]
[pipeline]
name = "{name}"
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = true
{SCHEMA}
properties = {properties}
[agents.big]
module = "builtin:filter"
config = {{ where = "amount >= 50.0" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
properties = {properties}
"#,
        b = secure_bootstrap()
    )
}

#[test]
fn server_secrets_reach_kafka_and_appear_in_no_answer_file_or_log() {
    use crate::serve::{READ_TOKEN, Server};
    let password = "alice-secret";
    let ca = std::fs::read_to_string(tls("ca.pem")).unwrap();
    let (input, output) = (topic("secret-in"), topic("secret-out"));
    produce_with(kcat_secure(), &input, &transactions(1_000));
    let s = Server::start(&[("SABOT_READ_TOKEN", READ_TOKEN), ("SABOT_LOG", "debug")]);

    // Stored with the CLI (value on stdin); a read token may not.
    let set = |name: &str, value: &str, token: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["secret", "set", name])
            .env("SABOT_SERVER", &s.url)
            .env("SABOT_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = set("kafka-password", &format!("{password}\n"), READ_TOKEN);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a read token cannot set a secret"
    );
    for (name, value) in [
        ("kafka-password", "an-old-password\n".to_owned()),
        ("kafka-ca", ca.clone()),
    ] {
        let out = set(name, &value, crate::serve::TOKEN);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (status, listed) = s.get_with("/v1/secrets", Some(READ_TOKEN));
    assert_eq!(status, 200);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kafka-ca", "kafka-password"]);
    assert!(!listed.to_string().contains(password));
    assert_eq!(
        s.get("/v1/secrets/kafka-password").0,
        405,
        "no endpoint returns a value"
    );

    // Refused references name themselves, and nothing is defined.
    for (reference, expected) in [
        ("${secret:nope}", "no secret `nope`"),
        ("${env:SABOT_TOKEN}", "SABOT_*"),
        ("${file:/etc/passwd}", "does not read its own files"),
    ] {
        let (status, answer) = s.post(
            "/v1/pipelines",
            "application/toml",
            secure_definition("refused", &input, &output, reference, "${secret:kafka-ca}")
                .as_bytes(),
        );
        assert_eq!(status, 400, "{reference}: {answer}");
        let e = answer["error"].as_str().unwrap();
        assert!(
            e.contains(reference) && e.contains(expected) && e.contains("sasl.password"),
            "{e}"
        );
    }
    assert_eq!(s.get("/v1/pipelines").1, serde_json::json!([]));

    let definition = secure_definition(
        "secret-kafka",
        &input,
        &output,
        "${secret:kafka-password}",
        "${secret:kafka-ca}",
    );
    let (status, answer) = s.post(
        "/v1/pipelines?start=true",
        "application/toml",
        definition.as_bytes(),
    );
    assert!((200..300).contains(&status), "{answer}");
    // The stale password stops the run, named by its reference only.
    let p = s.wait_status("secret-kafka", "failed", Duration::from_secs(60));
    let e = p["error"].as_str().unwrap();
    assert!(
        e.contains("invalid credentials") && !e.contains("an-old-password"),
        "{e}"
    );
    // Set anew, the secret is used from the next start.
    let out = set(
        "kafka-password",
        &format!("{password}\n"),
        crate::serve::TOKEN,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, answer) = s.post("/v1/pipelines/secret-kafka/start", "text/plain", b"");
    assert!((200..300).contains(&status), "{answer}");
    let p = s.wait_status("secret-kafka", "finished", Duration::from_secs(120));
    let shown = p["definition"].as_str().unwrap();
    assert!(
        shown.contains("${secret:kafka-password}") && !shown.contains(password),
        "{shown}"
    );
    let got = consume_with(kcat_secure(), &output);
    let expected = transactions(1_000)
        .iter()
        .filter(|l| {
            serde_json::from_str::<Value>(l).unwrap()["amount"]
                .as_f64()
                .unwrap()
                >= 50.0
        })
        .count();
    assert_eq!(got.len(), expected, "each passing record once");

    // A literal password is shown redacted.
    let literal = secure_definition(
        "literal",
        &input,
        &topic("literal-out"),
        password,
        "${secret:kafka-ca}",
    );
    let (status, answer) = s.post("/v1/pipelines", "application/toml", literal.as_bytes());
    assert!((200..300).contains(&status), "{answer}");
    let shown = s.get_with("/v1/pipelines/literal", Some(READ_TOKEN)).1["definition"].to_string();
    assert!(
        shown.contains("[redacted]") && !shown.contains(password),
        "{shown}"
    );

    // The value is nowhere but the secret store (and the literal definition written as such).
    let leaks: Vec<String> = files_containing(&s.data(), password)
        .into_iter()
        .chain(files_containing(&s.data(), "an-old-password"))
        .filter(|f| !f.contains("/secrets/") && !f.ends_with("pipelines/literal/pipeline.toml"))
        .collect();
    assert!(leaks.is_empty(), "the password is in {leaks:?}");
    for leak in [password, "an-old-password", ca.lines().nth(1).unwrap()] {
        assert!(!s.log().contains(leak), "the server's log holds a secret");
    }
    for path in [
        "/v1/pipelines",
        "/v1/pipelines/secret-kafka",
        "/metrics",
        "/v1/pipelines/secret-kafka/logs",
    ] {
        assert!(
            !s.get(path).1.to_string().contains(password),
            "{path} shows the password"
        );
    }
}

#[test]
fn sabot_run_resolves_env_and_file_references_and_never_prints_them() {
    let s = Scratch::new();
    let (input, output) = (topic("run-secret-in"), topic("run-secret-out"));
    produce_with(kcat_secure(), &input, &transactions(200));
    s.write("kafka-password", "alice-secret\n");
    s.write(
        "p.toml",
        &secure_definition(
            "run-secrets",
            &input,
            &output,
            "${file:kafka-password}",
            "${env:TEST_KAFKA_CA}",
        ),
    );
    let ca = std::fs::read_to_string(tls("ca.pem")).unwrap();
    let run = |password_file: &str| {
        std::fs::write(s.path("kafka-password"), password_file).unwrap();
        Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["run", "p.toml", "--no-progress"])
            .current_dir(s.dir.path())
            .env("SABOT_CACHE_DIR", crate::support::cache_dir())
            .env("TEST_KAFKA_CA", &ca)
            .env("SABOT_LOG", "debug")
            .output()
            .unwrap()
    };
    let out = run("alice-secret\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        consume_with(kcat_secure(), &output).len(),
        transactions(200)
            .iter()
            .filter(|l| l.contains("\"amount\":")
                && serde_json::from_str::<Value>(l).unwrap()["amount"]
                    .as_f64()
                    .unwrap()
                    >= 50.0)
            .count()
    );
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains("alice-secret"), "the password is printed");

    // A wrong password read from the file: the error names the reference's field, not the value.
    let out = run("not-the-password-either\n");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("invalid credentials"), "{e}");
    assert!(
        !e.contains("not-the-password-either"),
        "the value is printed: {e}"
    );
}
