//! The control plane under attack, against a real `sabot serve`: what the server spends (peak
//! RSS from /proc, files on disk, child processes) when clients without good intentions upload
//! large or expensive modules, hold connections open, or define pipelines that reach outside
//! their directory; and the compile cache it trusts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{Server, TOKEN, module};
use crate::support::Scratch;

const MIB: u64 = 1 << 20;

/// A `VmHWM`/`VmRSS`-style field of `/proc/PID/status`, in bytes.
pub(crate) fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after its closing paren.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The component header followed by `len` bytes of nothing a parser accepts.
fn junk_component(len: usize) -> Vec<u8> {
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    bytes.resize(len, 0xff);
    bytes
}

/// A component whose core module has `functions` functions of `ops` additions each: valid, and
/// costly to compile (about `functions × ops × 6` bytes of code).
fn expensive_component(functions: u32, ops: u32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
        TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64], [ValType::I64]);
    let mut funcs = FunctionSection::new();
    let mut body = Function::new([]);
    for i in 0..ops {
        // Each sum feeds the next.
        body.instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::I64Const(i64::from(i % 100_000)))
            .instruction(&Instruction::I64Add)
            .instruction(&Instruction::LocalSet(0));
    }
    body.instruction(&Instruction::LocalGet(0))
        .instruction(&Instruction::End);
    let mut code = CodeSection::new();
    for _ in 0..functions {
        funcs.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

#[test]
fn concurrent_large_uploads_are_spooled_to_disk_and_keep_the_server_small() {
    let s = Server::start(&[
        ("SABOT_MAX_UPLOAD_MB", "48"),
        ("SABOT_UPLOAD_BUFFER_MB", "200"),
        ("SABOT_VALIDATIONS", "1"),
    ]);
    let pid = s.child.id();
    let before = proc_status(pid, "VmRSS");
    let body = junk_component(40 << 20);
    let statuses: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (s, body) = (&s, &body);
                scope.spawn(move || s.upload(&format!("big{i}"), "1", body))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &statuses {
        // Refused as not a component, or for want of room (all uploads together), or cut
        // off before the answer was read.
        assert!(
            [422, 503, 0].contains(status),
            "an upload of junk: {status} {body}"
        );
    }
    assert!(
        statuses.iter().any(|(s, _)| *s == 422),
        "some uploads were received whole and refused: {statuses:?}"
    );
    // Over upload_buffer_mb, an upload is refused as it arrives: 503, or the connection closed
    // under the client still sending its body.
    let refused = statuses.iter().filter(|(s, _)| *s != 422).count();
    assert!(
        refused > 0,
        "640 MiB at once is over upload_buffer_mb: {statuses:?}"
    );
    if let Some((_, body)) = statuses.iter().find(|(s, _)| *s == 503) {
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("upload_buffer_mb"), "{error}");
    }
    let peak = proc_status(pid, "VmHWM");
    eprintln!(
        "16 concurrent uploads of 40 MiB: server RSS {} MiB before, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    // Buffered whole, they would be 640 MiB; spooled, one upload being validated at a time.
    assert!(
        peak < before + 160 * MIB,
        "peak RSS {} MiB, {} MiB before: uploads are held in memory",
        peak / MIB,
        before / MIB
    );
    assert_eq!(
        files_in(&s.data().join("uploads")),
        Vec::<String>::new(),
        "every temporary upload file is gone"
    );
    assert_eq!(s.get("/healthz").0, 200);
    let (status, body) = s.upload("good", "1", &module(sabot_test_artifacts::PLAIN));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn idle_and_slow_connections_are_cut_while_healthz_stays_up() {
    let s = Server::start(&[
        ("SABOT_MAX_CONNECTIONS", "64"),
        ("SABOT_HEADER_TIMEOUT_MS", "1000"),
        ("SABOT_REQUEST_TIMEOUT_MS", "2000"),
        ("SABOT_IDLE_TIMEOUT_MS", "3000"),
    ]);
    let addr = s.url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    // 300 sockets: most send nothing, some a request head one byte a second.
    let mut idle: Vec<TcpStream> = Vec::new();
    for i in 0..300 {
        let mut socket = TcpStream::connect(&addr).unwrap();
        if i % 10 == 0 {
            let _ = socket.write_all(b"G");
        }
        idle.push(socket);
    }
    let probe = || {
        let t = Instant::now();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .into();
        let r = agent.get(&format!("{}/healthz", s.url)).call();
        match r {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
                t.elapsed(),
            ),
            Err(e) => (0, e.to_string(), t.elapsed()),
        }
    };
    // While the cap is held, a new connection is told why at once rather than left waiting.
    let (status, body, _) = probe();
    assert!(
        status == 503 && body.contains("max_connections") || status == 200,
        "{status} {body}"
    );
    // The idle ones are cut at the header timeout; then /healthz answers 200.
    let mut answered = false;
    let mut probes = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        for socket in idle.iter_mut().step_by(10) {
            let _ = socket.write_all(b"E");
        }
        let p = probe();
        probes.push((p.0, p.2));
        if p.0 == 200 && started.elapsed() > Duration::from_secs(2) {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered, "/healthz never answered 200: {probes:?}");
    assert!(
        probes.iter().all(|(status, _)| *status != 0),
        "every probe got an answer (200, or 503 naming the cap): {probes:?}"
    );
    // Every idle socket was closed by the server.
    let mut closed = 0;
    for socket in &mut idle {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut open = true;
        loop {
            match socket.read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(_) => {
                    open = false;
                    break;
                }
            }
        }
        if !open {
            closed += 1;
        }
    }
    assert_eq!(closed, 300, "idle connections the server did not close");
    let metrics = s.text("/metrics");
    assert!(
        metrics.contains("sabot_http_connections_refused_total")
            && metrics.contains("sabot_http_connections_timed_out_total"),
        "{metrics}"
    );
    // A slow body is cut by the request timeout.
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /v1/modules/slow/1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 1000\r\n\r\n"
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = String::new();
    for _ in 0..20 {
        if slow.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        slow.set_nonblocking(true).unwrap();
        if let Ok(n) = slow.read(&mut buf) {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n == 0 || !answer.is_empty() {
                break;
            }
        }
        slow.set_nonblocking(false).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.is_empty(),
        "a body trickling in is timed out: {answer:?}"
    );
    assert_eq!(probe().0, 200);
}

#[test]
fn an_expensive_compile_is_stopped_at_its_deadline_and_frees_its_slot() {
    let s = Server::start(&[
        ("SABOT_REQUEST_TIMEOUT_MS", "3000"),
        ("SABOT_VALIDATIONS", "1"),
        ("SABOT_MAX_UPLOAD_MB", "64"),
    ]);
    let pid = s.child.id();
    let costly = expensive_component(400, 12_000);
    eprintln!("a module of {} MiB of code", costly.len() as u64 / MIB);
    let (status, body) = s.upload("costly", "1", &costly);
    assert_eq!(status, 422, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("costly@1") && message.contains("to compile and was stopped"),
        "{message}"
    );
    // Its compiler is gone, and the next upload gets the slot.
    s.wait_for(
        "the compiler process to be gone",
        Duration::from_secs(5),
        || children(pid).is_empty(),
    );
    let (status, body) = s.upload("good", "1", &module(sabot_test_artifacts::PLAIN));
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        files_in(&s.data().join("uploads")),
        Vec::<String>::new(),
        "no upload file left"
    );
}

#[test]
fn a_refused_upload_leaves_nothing_behind() {
    let scratch = Scratch::new();
    let cache = scratch.path("cache");
    let s = Server::start(&[("SABOT_CACHE_DIR", cache.to_str().unwrap())]);
    let cwasm = || {
        files_in(&cache)
            .into_iter()
            .filter(|f| f.ends_with(".cwasm"))
            .count()
    };
    // A component that compiles but is not an agent: refused after compiling.
    let wrong = wat::parse_str("(component (core module (func (export \"f\"))))").unwrap();
    let (status, body) = s.upload("wrong", "1", &wrong);
    assert_eq!(status, 422, "{body}");
    assert_eq!(cwasm(), 0, "the refused module's compiled form is gone");
    assert_eq!(files_in(&s.data().join("uploads")), Vec::<String>::new());
    let blobs = walk_files(&s.data().join("modules"));
    assert_eq!(blobs, 0, "nothing of the refused module is stored");
    let (status, body) = s.upload("good", "1", &module(sabot_test_artifacts::PLAIN));
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        cwasm(),
        1,
        "the accepted module is compiled once, in the cache"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the cache directory is private");
}

fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            if e.path().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_cache_directory_that_others_can_write_or_own_is_refused_at_start() {
    let scratch = Scratch::new();
    let open = scratch.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let theirs = scratch.path("theirs");
    std::fs::create_dir(&theirs).unwrap();
    // SAFETY: `geteuid` has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    }
    let mut cases = vec![(open, "other users can write")];
    if root {
        cases.push((theirs, "owned by uid 65534"));
    }
    for (dir, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(scratch.path("data"))
            .env("SABOT_TOKEN", TOKEN)
            .env("SABOT_CACHE_DIR", &dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the server started on {}",
            dir.display()
        );
        assert!(
            stderr.contains(&dir.display().to_string()) && stderr.contains(expected),
            "{stderr}"
        );
        assert_eq!(
            files_in(&dir),
            Vec::<String>::new(),
            "nothing written there"
        );
        // The same for a local run.
        let pipeline = scratch.write(
            "p.toml",
            "edges = [\"g -> out\"]\n[sources.g]\ntype = \"generator\"\ncount = 10\n[sinks.out]\ntype = \"blackhole\"\n",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["run", "--cache-dir"])
            .arg(&dir)
            .arg(&pipeline)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "ran with the cache in {}",
            dir.display()
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn every_path_a_pipeline_names_is_confined_to_its_directory_on_a_server() {
    let s = Server::start(&[]);
    let secret = "SECRET-MARKER-7d1f";
    let outside = s.data().parent().unwrap().join("secret.avsc");
    std::fs::write(&outside, format!("{{\"type\": \"{secret}\"}}")).unwrap();
    let kafka = |extra: &str| {
        format!(
            "edges = [\"k -> out\"]\n[pipeline]\nname = \"p\"\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9\"\ntopics = [\"t\"]\n{extra}\n[sinks.out]\ntype = \"blackhole\"\n"
        )
    };
    // A file source when `source` is given, else a generator.
    let file = |source: Option<&str>, sink: &str, pipeline: &str| {
        let source = match source {
            Some(path) => format!("type = \"file\"\npath = \"{path}\"\nformat = \"jsonl\""),
            None => "type = \"generator\"\ncount = 10".to_owned(),
        };
        format!(
            "edges = [\"f -> out\"]\n[pipeline]\nname = \"p\"\n{pipeline}\n[sources.f]\n{source}\n[sinks.out]\ntype = \"file\"\npath = \"{sink}\"\n"
        )
    };
    let avro = |schema: &str| {
        kafka(&format!(
            "format = \"avro\"\navro = {{ schema_file = \"{schema}\" }}"
        ))
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            file(Some("/etc/passwd"), "out.jsonl", ""),
            "[sources.f] field `path`",
            "outside",
        ),
        (
            file(None, "../../x.jsonl", ""),
            "[sinks.out] field `path`",
            "outside",
        ),
        (
            file(None, "out.jsonl", "dead_letter = \"/tmp/dl.jsonl\""),
            "[pipeline] field `dead_letter`",
            "outside",
        ),
        (
            avro(outside.to_str().unwrap()),
            "[sources.k] field `avro.schema_file`",
            "outside",
        ),
        (avro("../../secret.avsc"), "avro.schema_file", "outside"),
        (
            kafka("properties = { \"ssl.ca.location\" = \"/etc/ssl/certs/ca-certificates.crt\" }"),
            "properties.\"ssl.ca.location\"",
            "outside",
        ),
        (
            kafka("properties = { \"ssl.key.location\" = \"../../../token\" }"),
            "properties.\"ssl.key.location\"",
            "outside",
        ),
        (
            kafka("properties = { \"plugin.library.paths\" = \"/tmp/evil.so\" }"),
            "plugin.library.paths",
            "loads a shared library",
        ),
        (
            kafka("properties = { \"sasl.kerberos.kinit.cmd\" = \"touch /tmp/pwned\" }"),
            "sasl.kerberos.kinit.cmd",
            "runs a command",
        ),
    ];
    for (toml, field, expected) in &cases {
        let (status, body) = s.post("/v1/pipelines", "application/toml", toml.as_bytes());
        let error = body["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{field}: {body}");
        assert!(
            error.contains(field) && error.contains(expected),
            "{field}: {error}"
        );
        assert!(
            !error.contains(secret),
            "{field}: the file's content is echoed: {error}"
        );
    }
    // A link inside the pipeline's directory is not followed out of it, and a file inside it
    // that does not parse is refused without being quoted.
    let dir = s.data().join("pipelines").join("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.avsc")).unwrap();
    let (status, body) = s.post(
        "/v1/pipelines",
        "application/toml",
        avro("link.avsc").as_bytes(),
    );
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{body}");
    assert!(
        error.contains("symbolic link") && !error.contains(secret),
        "{error}"
    );
    std::fs::write(dir.join("bad.avsc"), format!("{{\"type\": \"{secret}\"}}")).unwrap();
    let (status, body) = s.post(
        "/v1/pipelines",
        "application/toml",
        avro("bad.avsc").as_bytes(),
    );
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{body}");
    assert!(
        error.contains("not a usable Avro schema") && !error.contains(secret),
        "{error}"
    );
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn oversized_definitions_and_form_fields_are_refused_without_being_held() {
    let s = Server::start(&[]);
    let pid = s.child.id();
    let before = proc_status(pid, "VmRSS");
    // Eight clients each sending a 32 MiB "definition": refused at 1 MiB, never gathered.
    let body = vec![b'#'; 32 << 20];
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (s, body) = (&s, &body);
                scope.spawn(move || s.post("/v1/pipelines", "application/toml", body))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &answers {
        // 413, or the connection closed under the client still sending.
        assert!([413, 0].contains(status), "{status} {body}");
        if *status == 413 {
            let error = body["error"].as_str().unwrap();
            assert!(error.contains("1048576 bytes"), "{error}");
        }
    }
    let peak = proc_status(pid, "VmHWM");
    assert!(
        peak < before + 64 * MIB,
        "peak RSS {} MiB, {} MiB before: definitions were held whole",
        peak / MIB,
        before / MIB
    );
    // A multipart `name` longer than any name is refused as it arrives, naming the field.
    let boundary = "b0undary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        "n".repeat(4096)
    );
    let (status, body) = s.post(
        "/v1/modules",
        &format!("multipart/form-data; boundary={boundary}"),
        form.as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("multipart field `name`") && error.contains("256 bytes"),
        "{error}"
    );
    assert_eq!(s.get("/healthz").0, 200);
}

#[test]
fn of_concurrent_creates_of_one_name_exactly_one_succeeds() {
    let s = Server::start(&[]);
    for round in 0..5 {
        let name = format!("race-{round}");
        let definition = format!(
            "edges = [\"gen -> out\"]\n[pipeline]\nname = \"{name}\"\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[sinks.out]\ntype = \"blackhole\"\n"
        );
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (s, body) = (&s, definition.as_bytes());
                    scope.spawn(move || s.post("/v1/pipelines", "application/toml", body).0)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [201, 409].contains(s)),
            "{statuses:?}"
        );
    }
    let listed = s.get("/v1/pipelines").1;
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed}");
}

#[test]
fn a_create_that_must_compile_again_is_answered_202_and_followed_to_its_end() {
    let scratch = std::sync::Arc::new(Scratch::new());
    let cache = scratch.path("cache");
    let env = [("SABOT_CACHE_DIR", cache.to_str().unwrap())];
    let s = Server::start_in(scratch.clone(), &env);
    // A module that takes seconds to compile (about 7 s here).
    let (status, body) = s.upload("slow", "1", &module(sabot_test_artifacts::TIMED));
    assert_eq!(status, 201, "{body}");
    drop(s.crash());
    // The compile cache is lost: a create has to compile the module again.
    std::fs::remove_dir_all(&cache).unwrap();
    // A create is waited for a third of the request timeout: 1 s here.
    let s = Server::start_in(
        scratch.clone(),
        &[env[0], ("SABOT_REQUEST_TIMEOUT_MS", "3000")],
    );
    let definition = "edges = [\"gen -> a -> out\"]\n[pipeline]\nname = \"later\"\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[agents.a]\nmodule = \"slow@1\"\n[sinks.out]\ntype = \"blackhole\"\n";
    let started = Instant::now();
    let (status, answer) = s.post("/v1/pipelines", "application/toml", definition.as_bytes());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered without waiting for the compile"
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "creating");
    assert_eq!(answer["follow"], "/v1/pipelines/later");
    assert!(
        answer["progress"].as_str().unwrap().contains("slow@1"),
        "{answer}"
    );
    // A second create of the name meanwhile is refused: one create per name.
    let (status, again) = s.post("/v1/pipelines", "application/toml", definition.as_bytes());
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("is being created"),
        "{again}"
    );
    let (status, following) = s.get("/v1/pipelines/later");
    assert!(
        status == 200 && ["creating", "created"].contains(&following["status"].as_str().unwrap()),
        "{status} {following}"
    );
    s.wait_status("later", "created", Duration::from_secs(120));
}

#[test]
fn a_kafka_transaction_timeout_below_the_servers_checkpoint_interval_is_refused() {
    // The test server checkpoints every 200 ms (SABOT_CHECKPOINT_MS).
    let s = Server::start(&[]);
    let definition = |timeout: u32| {
        format!(
            "edges = [\"gen -> out\"]\n[pipeline]\nname = \"short-txn\"\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[sinks.out]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9\"\ntopic = \"t\"\nproperties = {{ \"transaction.timeout.ms\" = \"{timeout}\" }}\n"
        )
    };
    let (status, answer) = s.post(
        "/v1/pipelines",
        "application/toml",
        definition(150).as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    let e = answer["error"].as_str().unwrap();
    assert!(
        e.contains("transaction.timeout.ms") && e.contains("200 ms") && e.contains("checkpoint_ms"),
        "{e}"
    );
    let (status, answer) = s.post(
        "/v1/pipelines",
        "application/toml",
        definition(60_000).as_bytes(),
    );
    assert_eq!(status, 201, "{answer}");
}
