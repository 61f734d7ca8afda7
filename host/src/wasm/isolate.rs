//! Compiling an untrusted module in a child process, for the server: the child (`sabot
//! __precompile`, hidden) compiles the module into the compile cache and exits, and the server
//! then loads it from there. A module that is expensive to compile is killed at its deadline, so
//! its CPU, memory and validation slot are given back at once; the child's address space is
//! capped, and it dies with the server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{CompileCache, ModuleError, cache, check_header, new_engine};

/// The hidden subcommand of the child.
pub const SUBCOMMAND: &str = "__precompile";

/// How a child compiles.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The `sabot` binary.
    pub exe: PathBuf,
    /// The child's address-space limit, MiB.
    pub memory_mb: u64,
    /// The compile cache the child writes and its budget, MiB.
    pub cache_dir: PathBuf,
    pub cache_mb: u64,
}

/// The most of the child's answer kept.
const MAX_ANSWER: u64 = 64 * 1024;

impl Isolation {
    /// Compiles the component in `file` (named `name` in messages) into the compile cache in a
    /// child process, stopped at `deadline`.
    pub fn precompile(
        &self,
        name: &str,
        file: &Path,
        deadline: Instant,
    ) -> Result<(), ModuleError> {
        let started = Instant::now();
        let mut command = Command::new(&self.exe);
        command
            .arg(SUBCOMMAND)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .arg("--cache-mb")
            .arg(self.cache_mb.to_string())
            .arg("--name")
            .arg(name)
            .arg(file)
            .env_remove("SABOT_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let limit = self.memory_mb.saturating_mul(1 << 20);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Killed with the server, which is the only one waiting for it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            ModuleError::Engine(format!(
                "cannot start the compiler process {}: {e}",
                self.exe.display()
            ))
        })?;
        let mut stdout = child.stdout.take().expect("piped");
        let answer = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = (&mut stdout).take(MAX_ANSWER).read_to_string(&mut text);
            // Drain the rest, so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            text
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ModuleError::Engine(format!(
                        "cannot wait for the compiler process: {e}"
                    )));
                }
            }
        };
        let answer = answer.join().unwrap_or_default();
        match status {
            None => {
                tracing::warn!(module = %name, ms = started.elapsed().as_millis() as u64, "compiling took too long: stopped");
                Err(ModuleError::CompileTimeout {
                    module: name.to_owned(),
                    ms: started.elapsed().as_millis(),
                })
            }
            Some(status) if status.success() => Ok(()),
            Some(status) => {
                let answer = answer.trim();
                Err(ModuleError::Invalid {
                    module: name.to_owned(),
                    message: if answer.is_empty() {
                        // Killed by a signal: out of its address space, most likely.
                        format!(
                            "compiling it failed ({status}): it may need more memory than the compiler is given ({} MiB, compile_memory_mb)",
                            self.memory_mb
                        )
                    } else {
                        answer.strip_prefix("error: ").unwrap_or(answer).to_owned()
                    },
                })
            }
        }
    }
}

/// The child's side: compiles `file` into the cache in `cache_dir`.
pub fn child(cache_dir: &Path, cache_mb: u64, name: &str, file: &Path) -> Result<(), ModuleError> {
    let bytes = std::fs::read(file).map_err(|source| ModuleError::Read {
        module: name.to_owned(),
        source,
    })?;
    check_header(name, &bytes)?;
    let engine = new_engine()?;
    CompileCache::new(Some(cache_dir.to_owned()))
        .with_budget(cache_mb.saturating_mul(1 << 20))
        .precompile(&engine, &bytes, &cache::sha256_hex(&bytes))
        .map_err(|e| ModuleError::Invalid {
            module: name.to_owned(),
            message: format!("{e:#}"),
        })
}
