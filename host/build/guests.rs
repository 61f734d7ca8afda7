// Builds guest components (cdylib crates of this workspace) for wasm32-wasip2 from source.
// Shared by `host/build.rs` (the built-in operators) and `tests/artifacts/build.rs` (test guests)
// through `include!`, so there is one recipe.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `packages` (name, directory relative to `workspace`) and returns each package's
/// component path, in order. `to_workspace` is the workspace root relative to the calling
/// package (`..` for `host/`).
fn build_guests(workspace: &Path, to_workspace: &str, packages: &[(&str, &str)]) -> Vec<PathBuf> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out; guests get their own target dir
    // beside it, so the nested cargo never waits on the lock the outer one holds.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("guest-target"));
    let guest_target = target_root.join("guests");

    // Paths relative to the package: two checkouts sharing one target directory (a CI clone and a
    // developer's tree) must each watch their own sources, which absolute paths would not do.
    let mut watched: Vec<String> = ["wit", "guest-sdk/rust/src", "guest-sdk/rust/Cargo.toml", "Cargo.lock", ".cargo/config.toml", "operators/expr/src", "operators/library/src"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    for (_, dir) in packages {
        watched.push(format!("{dir}/src"));
        watched.push(format!("{dir}/Cargo.toml"));
    }
    for path in watched {
        println!("cargo:rerun-if-changed={to_workspace}/{path}");
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&guest_target);
    for (name, _) in packages {
        cmd.args(["-p", name]);
    }
    // Flags and wrappers meant for the outer (host) build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the guest components");
    assert!(
        status.success(),
        "building the guest components {:?} for wasm32-wasip2 failed (is the target installed? rustup target add wasm32-wasip2)",
        packages.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
    packages
        .iter()
        .map(|(name, _)| {
            let path = guest_target
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            assert!(path.is_file(), "the guest build did not produce {}", path.display());
            path
        })
        .collect()
}
