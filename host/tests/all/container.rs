//! The container image, for real: built with Podman from the repository's Dockerfile (its
//! `prebuilt` target, around the `sabot` binary of this build), run as `sabot serve` on
//! loopback, driven over HTTP, stopped with SIGTERM. `scripts/container.sh` (sourced by
//! `scripts/test`) installs Podman and runc and makes the Debian base image with debootstrap.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::Scratch;

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
