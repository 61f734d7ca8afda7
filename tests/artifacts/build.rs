//! Builds every guest component the tests and benchmarks use, from source.

include!("../../host/build/guests.rs");

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest
        .ancestors()
        .nth(2)
        .expect("tests/artifacts lives in the workspace")
        .to_path_buf();
    let guests = [
        (
            "FRAUD_RULES",
            "fraud-rules",
            "examples/fraud-detection/agent",
        ),
        (
            "FRAUD_SCORE",
            "fraud-score",
            "examples/fraud-detection/score",
        ),
        (
            "NEXMARK_QUERIES",
            "nexmark-queries",
            "examples/nexmark/queries",
        ),
        (
            "MISBEHAVE",
            "sabot-test-misbehave",
            "tests/guests/misbehave",
        ),
        ("TIMED", "sabot-test-timed", "tests/guests/timed"),
        ("SQL_FUNCTIONS", "sql-functions", "examples/sql/functions"),
        ("PLAIN", "sabot-test-plain", "tests/guests/plain"),
        ("FILTER", "sabot-op-filter", "operators/filter"),
        ("PROJECT", "sabot-op-project", "operators/project"),
    ];
    let packages: Vec<(&str, &str)> = guests.iter().map(|(_, p, d)| (*p, *d)).collect();
    let paths = build_guests(&workspace, "../..", &packages);
    let mut code = String::new();
    for ((constant, package, _), path) in guests.iter().zip(&paths) {
        code.push_str(&format!(
            "/// The `{package}` component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("artifacts.rs");
    std::fs::write(out, code).expect("cannot write artifacts.rs");
}
