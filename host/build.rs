//! Builds the built-in operators (`operators/`) as Wasm components and embeds them.

include!("build/guests.rs");

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    let operators = [
        ("filter", "sabot-op-filter", "operators/filter"),
        ("project", "sabot-op-project", "operators/project"),
        ("window", "sabot-op-window", "operators/window"),
        ("join", "sabot-op-join", "operators/join"),
        ("aggregate", "sabot-op-aggregate", "operators/aggregate"),
        ("view", "sabot-op-view", "operators/view"),
        ("top", "sabot-op-top", "operators/top"),
        ("over", "sabot-op-over", "operators/over"),
    ];
    let packages: Vec<(&str, &str)> = operators.iter().map(|(_, p, d)| (*p, *d)).collect();
    let paths = build_guests(&workspace, "..", &packages);
    let mut code = String::from(
        "/// (name, component bytes) of each built-in operator.\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for ((name, _, _), path) in operators.iter().zip(&paths) {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtins.rs");
    std::fs::write(out, code).expect("cannot write builtins.rs");
}
