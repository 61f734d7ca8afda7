//! The container image, for real: built with Podman from the repository's Dockerfile (its
//! `prebuilt` target, around the `sabot` binary of this build), run as `sabot serve` on
//! loopback, driven over HTTP, stopped with SIGTERM. `scripts/container.sh` (sourced by
//! `scripts/test`) installs Podman and runc and makes the Debian base image with debootstrap.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{Scratch, free_port};

const TOKEN: &str = "container-token-0123456789";

#[track_caller]
fn podman(args: &[&str]) -> Output {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("run podman (scripts/test installs it: scripts/container.sh)");
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Removes the container and the image, however the test ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

fn http(agent: &ureq::Agent, method: &str, url: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/toml")
        .body(body.to_vec())
        .unwrap();
    match agent.run(request) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            )
        }
        Err(e) => (0, serde_json::Value::String(e.to_string())),
    }
}

/// Creates and starts `pipeline` on the server at `url`, and waits until `name` finished.
fn run_to_end(agent: &ureq::Agent, url: &str, pipeline: &str, name: &str) {
    let (status, body) = http(
        agent,
        "POST",
        &format!("{url}/v1/pipelines?start=true"),
        pipeline.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, p) = http(agent, "GET", &format!("{url}/v1/pipelines/{name}"), b"");
        if p["status"] == "finished" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline {name} did not finish: {p}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_image_runs_the_server_as_a_non_root_user_with_a_data_volume_and_a_health_check() {
    let s = Scratch::new();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = std::env::var("SABOT_BASE_IMAGE")
        .unwrap_or_else(|_| "localhost/debian:bookworm-slim".into());
    let tag = format!("localhost/sabot-test:{}", std::process::id());
    let name = format!("sabot-test-{}", std::process::id());
    let _cleanup = Cleanup {
        container: name.clone(),
        image: tag.clone(),
    };

    // The build context: the binary of this build and an example, nothing compiled in the image.
    let context = s.path("context");
    std::fs::create_dir_all(context.join("examples")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_sabot"), context.join("sabot")).unwrap();
    std::fs::copy(
        workspace.join("examples/fraud-detection/pipeline.toml"),
        context.join("examples/pipeline.toml"),
    )
    .unwrap();
    let dockerfile = workspace.join("Dockerfile");
    podman(&[
        "build",
        "--quiet",
        "--format",
        "docker",
        "--runtime",
        "runc",
        "--network",
        "host",
        "--build-arg",
        &format!("BASE={base}"),
        "--target",
        "prebuilt",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        &tag,
        context.to_str().unwrap(),
    ]);
    let size: u64 =
        String::from_utf8(podman(&["image", "inspect", "--format", "{{.Size}}", &tag]).stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    eprintln!("image {tag}: {} MB", size >> 20);

    // A data directory the image's user (uid 10001) can write.
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    podman(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--runtime",
        "runc",
        "--network",
        "host",
        "--env",
        &format!("SABOT_TOKEN={TOKEN}"),
        "--env",
        &format!("SABOT_LISTEN=127.0.0.1:{port}"),
        "--env",
        &format!("SABOT_SERVER={url}"),
        "--volume",
        &format!("{}:/var/lib/sabot", data.display()),
        &tag,
    ]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(&agent, "GET", &format!("{url}/readyz"), b"").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the server in the container never became ready: {}",
            String::from_utf8_lossy(
                &Command::new("podman")
                    .args(["logs", &name])
                    .output()
                    .unwrap()
                    .stderr
            )
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let uid = String::from_utf8(podman(&["exec", &name, "id", "-u"]).stdout).unwrap();
    assert_eq!(uid.trim(), "10001", "the server does not run as root");
    podman(&["healthcheck", "run", &name]);

    // Upload an agent, run a pipeline on it, read the output from the volume.
    let module = std::fs::read(sabot_test_artifacts::MISBEHAVE).unwrap();
    let (status, body) = http(&agent, "POST", &format!("{url}/v1/modules/mis/1"), &module);
    assert_eq!(status, 201, "{body}");
    let pipeline = "edges = [\"gen -> m -> out\"]\n[pipeline]\nname = \"boxed\"\n[sources.gen]\ntype = \"generator\"\ncount = 20000\n[agents.m]\nmodule = \"mis@1\"\nconfig = { mode = \"pass\" }\n[sinks.out]\ntype = \"file\"\npath = \"out/rows.jsonl\"\n";
    run_to_end(&agent, &url, pipeline, "boxed");
    let rows = std::fs::read_to_string(data.join("pipelines/boxed/out/rows.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 20_000);

    // Kafka → agent → Kafka, from the container to the loopback broker, exactly-once.
    use crate::kafka::{SCHEMA, bootstrap, kcat_consume, kcat_produce, topic, transactions};
    let (input, output) = (topic("boxed-in"), topic("boxed-out"));
    kcat_produce(&input, &transactions(5_000), false);
    let pipeline = format!(
        "edges = [\"k -> m -> out\"]\n[pipeline]\nname = \"boxed-kafka\"\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"{b}\"\ntopics = [\"{input}\"]\nbounded = true\n{SCHEMA}\n[agents.m]\nmodule = \"mis@1\"\nconfig = {{ mode = \"pass\" }}\n[sinks.out]\ntype = \"kafka\"\nbootstrap = \"{b}\"\ntopic = \"{output}\"\n",
        b = bootstrap()
    );
    run_to_end(&agent, &url, &pipeline, "boxed-kafka");
    assert_eq!(
        kcat_consume(&output).len(),
        5_000,
        "every record once, read_committed"
    );

    // SIGTERM: the server stops its pipelines and exits cleanly.
    podman(&["stop", "--time", "20", &name]);
    let code =
        String::from_utf8(podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]).stdout)
            .unwrap();
    assert_eq!(code.trim(), "0", "exit code after SIGTERM");
    assert!(
        data.join("modules/tags.json").exists(),
        "the module store is on the volume"
    );
}

/// Takes down a compose project however the test ends: its containers, volumes, network and
/// the Sabot image it built (the Kafka and S3Proxy images stay, as a cache).
struct Project {
    name: String,
    file: std::path::PathBuf,
    env: Vec<(String, String)>,
    image: String,
}

impl Project {
    /// `podman-compose -p NAME -f FILE ARGS…` with the project's variables.
    fn compose(&self, args: &[&str]) -> Output {
        Command::new("podman-compose")
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run podman-compose (scripts/test installs it: scripts/container.sh)")
    }

    fn logs(&self, service: &str) -> String {
        let out = Command::new("podman")
            .args(["logs", &format!("{}_{service}_1", self.name)])
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        // The end of it: what went wrong last.
        let start = text.len().saturating_sub(4000);
        text[text.ceil_char_boundary(start)..].to_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v"]);
        let label = format!("label=io.podman.compose.project={}", self.name);
        if let Ok(out) = Command::new("podman")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("podman").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("podman")
            .args(["volume", "prune", "-f", "--filter", &label])
            .output();
        let _ = Command::new("podman")
            .args(["network", "rm", &format!("{}_default", self.name)])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// Copies `from` (a file or a directory) to `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn the_compose_file_runs_a_two_replica_cluster_with_kafka_and_object_storage_end_to_end() {
    let s = Scratch::new();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = std::env::var("SABOT_BASE_IMAGE")
        .unwrap_or_else(|_| "localhost/debian:bookworm-slim".into());

    // The compose project as a user has it: the repository's compose file and what its images
    // are built from. The machine's extra CA certificates (a TLS-inspecting proxy's, here) go
    // where deploy/certs/README.md says, so Maven in the image builds reaches Maven Central.
    let project_dir = s.path("project");
    for part in [
        "docker-compose.yml",
        "deploy",
        "tests/kafka/pom.xml",
        "tests/s3proxy",
        "Dockerfile",
    ] {
        copy_tree(&workspace.join(part), &project_dir.join(part));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/local/share/ca-certificates") {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "crt") {
                std::fs::copy(
                    entry.path(),
                    project_dir.join("deploy/certs").join(entry.file_name()),
                )
                .unwrap();
            }
        }
    }
    // Sabot packaged around the binary of this build (the `prebuilt` target), with the
    // examples the compose file's `example` service submits.
    let context = s.path("sabot");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_sabot"), context.join("sabot")).unwrap();
    copy_tree(
        &workspace.join("examples/kafka"),
        &context.join("examples/kafka"),
    );
    copy_tree(
        std::path::Path::new(sabot_test_artifacts::FRAUD_RULES),
        &context.join("examples/fraud-detection/fraud_rules.wasm"),
    );

    let pid = std::process::id();
    let (port_1, port_2, kafka_port) = (free_port(), free_port(), free_port());
    let project = Project {
        name: format!("sabot-compose-{pid}"),
        file: project_dir.join("docker-compose.yml"),
        image: format!("localhost/sabot-compose-test:{pid}"),
        env: [
            ("SABOT_TOKEN", TOKEN.to_owned()),
            ("BASE", base),
            ("SABOT_TARGET", "prebuilt".into()),
            ("SABOT_CONTEXT", context.display().to_string()),
            (
                "SABOT_DOCKERFILE",
                project_dir.join("Dockerfile").display().to_string(),
            ),
            ("SABOT_IMAGE", format!("localhost/sabot-compose-test:{pid}")),
            ("SABOT_PORT_1", port_1.to_string()),
            ("SABOT_PORT_2", port_2.to_string()),
            ("KAFKA_PORT", kafka_port.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    };

    let built = Instant::now();
    let out = project.compose(&["build"]);
    assert!(
        out.status.success(),
        "podman-compose build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("images built in {:.0?}", built.elapsed());
    let started = Instant::now();
    let out = project.compose(&["up", "-d"]);
    assert!(
        out.status.success(),
        "podman-compose up failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both replicas form one cluster; the example's pipelines run: the generator whole on one
    // replica, the fraud rules as four partition tasks spread over both.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let cluster_url = format!("http://127.0.0.1:{port_1}/v1/cluster");
    let deadline = Instant::now() + Duration::from_secs(300);
    let view = loop {
        let (status, view) = http(&agent, "GET", &cluster_url, b"");
        let spread = status == 200
            && view["replicas"].as_array().is_some_and(|r| {
                r.len() == 2
                    && r.iter().all(|r| {
                        r["alive"] == true
                            && r["pipelines"]["fraud"]["tasks"]
                                .as_array()
                                .is_some_and(|t| !t.is_empty())
                    })
            })
            && view["pipelines"]["fraud"]["tasks"]
                .as_object()
                .is_some_and(|t| t.len() == 4)
            && view["pipelines"]["transactions"]["tasks"]
                .as_object()
                .is_some_and(|t| t.len() == 1);
        if spread {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the compose cluster never ran the example spread over both replicas: {view}\n\
             example: {}\nsabot-1: {}\nsabot-2: {}",
            project.logs("example"),
            project.logs("sabot-1"),
            project.logs("sabot-2")
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!(
        "cluster up and running the example {:.0?} after `up`: {}",
        started.elapsed(),
        view["pipelines"]
    );
    let code = String::from_utf8(
        podman(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &format!("{}_example_1", project.name),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(
        code.trim(),
        "0",
        "the example service: {}",
        project.logs("example")
    );

    let kcat = |topic: &str| -> Vec<String> {
        let mut kcat = Command::new("kcat");
        kcat.args(["-b", &format!("127.0.0.1:{kafka_port}")]);
        crate::kafka_security::consume_with(kcat, topic)
    };
    // Alerts arrive, read from the host's port as a read_committed consumer. The sink creates
    // the topic with its first alert, so until then the topic is unknown.
    let deadline = Instant::now() + Duration::from_secs(180);
    let alerts_so_far = || {
        let mut kcat = Command::new("kcat");
        kcat.args(["-b", &format!("127.0.0.1:{kafka_port}")]);
        match crate::kafka_security::try_consume_with(kcat, "alerts") {
            Ok(alerts) => alerts.len(),
            Err(e) if e.contains("Unknown topic or partition") => 0,
            Err(e) => panic!("{e}"),
        }
    };
    while alerts_so_far() < 5 {
        assert!(
            Instant::now() < deadline,
            "fewer than 5 alerts after 3 minutes: {}",
            project.logs("sabot-1")
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // The generator stopped through the other replica; the fraud tasks catch up (a lag of at
    // most 1 on every partition: the generator writes transactionally, and the commit marker
    // of its last transaction takes an offset no consumer reads); every alert is there once.
    let (status, body) = http(
        &agent,
        "POST",
        &format!("http://127.0.0.1:{port_2}/v1/pipelines/transactions/stop"),
        b"",
    );
    assert!(status == 200 || status == 202, "stop: {status} {body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, view) = http(&agent, "GET", &cluster_url, b"");
        let lag = &view["pipelines"]["fraud"]["lag"];
        if lag
            .as_object()
            .is_some_and(|l| l.len() == 4 && l.values().all(|v| v.as_u64().is_some_and(|v| v <= 1)))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fraud tasks never caught up: {view}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let transactions: std::collections::HashSet<i64> = kcat("transactions")
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["txn_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    // Each replica counts the rows its partition tasks read (a partition that moved when the
    // second replica joined is read again from its checkpoint, so at least every row once), as
    // its next heartbeats tell.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, view) = http(&agent, "GET", &cluster_url, b"");
        let counted: Vec<u64> = view["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["pipelines"]["fraud"]["events_in"].as_u64().unwrap())
            .collect();
        if counted.iter().all(|&n| n > 0)
            && counted.iter().sum::<u64>() >= transactions.len() as u64
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows read per replica {counted:?}, {} transactions",
            transactions.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let alerts = kcat("alerts");
    assert!(
        !transactions.is_empty() && !alerts.is_empty(),
        "{} transactions, {} alerts",
        transactions.len(),
        alerts.len()
    );
    let mut seen = std::collections::HashSet::new();
    for alert in &alerts {
        let a: serde_json::Value = serde_json::from_str(alert).unwrap();
        let txn = a["txn_id"].as_i64().unwrap();
        assert!(
            transactions.contains(&txn),
            "an alert of no transaction: {alert}"
        );
        assert!(
            seen.insert((txn, a["reason"].as_str().unwrap().to_owned())),
            "an alert twice: {alert}"
        );
    }
    eprintln!(
        "{} transactions, {} alerts, each once",
        transactions.len(),
        alerts.len()
    );

    // `down -v` leaves nothing of the project behind.
    let out = project.compose(&["down", "-v"]);
    assert!(
        out.status.success(),
        "podman-compose down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let label = format!("label=io.podman.compose.project={}", project.name);
    for args in [
        ["ps", "-a", "-q", "--filter", &label],
        ["volume", "ls", "-q", "--filter", &label],
    ] {
        let left = String::from_utf8(podman(&args).stdout).unwrap();
        assert!(
            left.trim().is_empty(),
            "left after down: podman {args:?}: {left}"
        );
    }
}
