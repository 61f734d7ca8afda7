//! The agent contract's versions side by side: a component built against the frozen `0.1.0`
//! (`wit/0.1.0/`, whose state calls are `state`'s records) and one built against `0.1.1` (the
//! SDKs', whose batched calls are `packed-state`'s flat lists) run on one host and address the
//! same state entries.

use std::time::Duration;

use sabot_test_artifacts::{MISBEHAVE, PLAIN, component_variant};

use crate::serve::{Server, module};

/// A pipeline's one agent keeps a tally of the batches it handled, swapped under load from the
/// `plain` guest (built against `0.1.0`) to the `misbehave` guest (the Rust SDK, `0.1.1`) and
/// back: each version carries on the count the other wrote, so the tally stays the number of
/// batches the agent has handled, whichever version handled them.
#[test]
fn components_of_0_1_0_and_0_1_1_share_state_through_swaps_both_ways() {
    let s = Server::start(&[]);
    let old = module(PLAIN);
    assert_eq!(s.upload("old", "1", &old).0, 201);
    assert_eq!(s.upload("old", "2", &component_variant(&old, "v2")).0, 201);
    assert_eq!(s.upload("new", "1", &module(MISBEHAVE)).0, 201);
    s.create(
        r#"edges = ["gen -> t -> out"]
[pipeline]
name = "tally"
batch_size = 200
[sources.gen]
type = "generator"
rate = 20000
cards = 100
[agents.t]
module = "old@1"
config = { mode = "tally" }
[sinks.out]
type = "blackhole"
"#,
        true,
    );
    let batches_in = || {
        s.pipeline("tally")["nodes"][1]["batches_in"]
            .as_u64()
            .unwrap_or(0)
    };
    for (at, to, from) in [(40, "new@1", "old@1"), (80, "old@2", "new@1")] {
        s.wait_for("batches through the agent", Duration::from_secs(60), || {
            batches_in() > at
        });
        s.swap_running("tally", "t", from, to);
    }
    s.wait_for(
        "batches after the last swap",
        Duration::from_secs(60),
        || batches_in() > 120,
    );
    // One call at a time: the tally is the calls finished, between the batches counted in
    // before the read (less the one that may be under way) and after it.
    let before = batches_in();
    let (status, read) = s.get("/v1/pipelines/tally/tables/t/tally?key=all&key_type=utf8");
    let after = batches_in();
    assert_eq!(status, 200, "{read:#}");
    let tally = read["value"]["json"].as_u64().unwrap_or_else(|| {
        panic!("the tally is a JSON integer, as both versions write it: {read:#}")
    });
    assert!(
        before - 1 <= tally && tally <= after,
        "the tally {tally} is every batch handled ({before}..={after}), by three versions"
    );
    let p = s.pipeline("tally");
    assert_eq!(
        p["restarts"], 0,
        "no version failed on the other's state: {p:#}"
    );
    let swaps = p["swaps"].as_array().unwrap();
    assert!(
        swaps.len() == 2 && swaps.iter().all(|w| w["state"] == "active"),
        "{swaps:#?}"
    );
    let (status, _) = s.post("/v1/pipelines/tally/stop?wait=true", "text/plain", b"");
    assert_eq!(status, 200);
}
