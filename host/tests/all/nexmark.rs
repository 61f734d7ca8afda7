//! The Nexmark example queries (examples/nexmark) on generated events, each checked against a
//! straightforward reference computed from the same events.

use std::collections::{BTreeMap, HashMap};

use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use sabot_host::connectors::SinkSpec;
use sabot_host::connectors::file::FileSinkSpec;
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

use crate::support::{Scratch, assert_same_lines, runtime};

const EVENTS: u64 = 100_000;
const BASE: u64 = 1_767_225_600_000;

fn events() -> Vec<Event> {
    let config = NexmarkConfig {
        base_time: BASE,
        ..NexmarkConfig::default()
    };
    EventGenerator::new(config).take(EVENTS as usize).collect()
}

/// Runs `examples/nexmark/QUERY.toml` (or `QUERY.sql`, e.g. `sql/q1.sql`) on `EVENTS` events,
/// its sink writing JSON Lines.
fn run(query: &str) -> Vec<serde_json::Value> {
    run_on(query, runtime())
}

/// [`run`], its built-in operators run as `runtime` runs them.
pub fn run_on(
    query: &str,
    runtime: std::sync::Arc<sabot_host::wasm::WasmRuntime>,
) -> Vec<serde_json::Value> {
    let file = if query.ends_with(".sql") {
        query.to_owned()
    } else {
        format!("{query}.toml")
    };
    let path = sabot_test_artifacts::workspace().join(format!("examples/nexmark/{file}"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("count = 10_000_000", &format!("count = {EVENTS}"))
        .replace("'count' = 10000000", &format!("'count' = {EVENTS}"));
    assert!(
        text.contains(&EVENTS.to_string()),
        "{file} runs {EVENTS} events"
    );
    let modules = [(
        "".to_owned(),
        sabot_host::wasm::ModuleSource::Path(sabot_test_artifacts::NEXMARK_QUERIES.into()),
    )];
    let agents: Vec<(String, sabot_host::wasm::ModuleSource)> =
        ["winners", "average", "hottest", "highest"]
            .iter()
            .filter(|a| text.contains(&format!("[agents.{a}]")))
            .map(|a| (a.to_string(), modules[0].1.clone()))
            .collect();
    let mut spec = PipelineSpec::parse_with_modules(&text, &path, &agents).unwrap();
    let s = Scratch::new();
    for sink in spec.sinks.values_mut() {
        *sink = SinkSpec::File(FileSinkSpec {
            path: s.path("out.jsonl"),
            format: None,
        });
    }
    let summary = Pipeline::new(spec, runtime)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    // Only the kinds some edge takes are generated (and counted).
    assert!(summary.events_in <= EVENTS && summary.events_in > 0);
    s.read("out.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ms(v: &serde_json::Value) -> i64 {
    arrow_cast::parse::string_to_timestamp_nanos(v.as_str().unwrap()).unwrap() / 1_000_000
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn q0_passes_every_bid_through_in_toml_and_in_sql() {
    let bids = events()
        .iter()
        .filter(|e| matches!(e, Event::Bid(_)))
        .count();
    assert_eq!(run("q0").len(), bids);
    assert_eq!(run("sql/q0.sql").len(), bids, "the SQL version");
}

#[test]
fn q1_converts_every_price_to_euros_in_toml_and_in_sql() {
    let expected = sorted(
        events()
            .iter()
            .filter_map(|e| match e {
                Event::Bid(b) => Some(format!(
                    "{} {} {:.3}",
                    b.auction,
                    b.bidder,
                    b.price as f64 * 0.908
                )),
                _ => None,
            })
            .collect(),
    );
    for query in ["q1", "sql/q1.sql"] {
        let got = sorted(
            run(query)
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {:.3}",
                        r["auction"],
                        r["bidder"],
                        r["price"].as_f64().unwrap()
                    )
                })
                .collect(),
        );
        assert_same_lines(&got, &expected, query);
    }
}

#[test]
fn q2_selects_the_bids_of_every_123rd_auction_in_toml_and_in_sql() {
    let expected = sorted(
        events()
            .iter()
            .filter_map(|e| match e {
                Event::Bid(b) if b.auction % 123 == 0 => Some(format!("{} {}", b.auction, b.price)),
                _ => None,
            })
            .collect(),
    );
    assert!(!expected.is_empty());
    for query in ["q2", "sql/q2.sql"] {
        let got = sorted(
            run(query)
                .iter()
                .map(|r| format!("{} {}", r["auction"], r["price"]))
                .collect(),
        );
        assert_same_lines(&got, &expected, query);
    }
}

#[test]
fn q3_finds_the_local_sellers_of_category_10_in_toml_and_in_sql() {
    let all = events();
    let people: HashMap<usize, &nexmark::event::Person> = all
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) => Some((p.id, p)),
            _ => None,
        })
        .collect();
    let expected = sorted(
        all.iter()
            .filter_map(|e| match e {
                Event::Auction(a) if a.category == 10 => {
                    // As the seller stood when the auction opened: registered by then.
                    let p = people
                        .get(&a.seller)
                        .filter(|p| p.date_time <= a.date_time)?;
                    ["or", "id", "ca"]
                        .contains(&p.state.as_str())
                        .then(|| format!("{} {} {} {}", p.name, p.city, p.state, a.id))
                }
                _ => None,
            })
            .collect(),
    );
    assert!(!expected.is_empty());
    for query in ["q3", "sql/q3.sql"] {
        let got = sorted(
            run(query)
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["name"].as_str().unwrap(),
                        r["city"].as_str().unwrap(),
                        r["state"].as_str().unwrap(),
                        r["id"]
                    )
                })
                .collect(),
        );
        assert_same_lines(&got, &expected, query);
    }
}

#[test]
fn q8_finds_people_who_sell_in_the_window_they_joined_in_toml_and_in_sql() {
    let size = 10_000u64;
    let mut people: BTreeMap<(usize, u64), String> = BTreeMap::new();
    let mut auctions: HashMap<(usize, u64), usize> = HashMap::new();
    for e in events() {
        match e {
            Event::Person(p) => {
                people.insert((p.id, p.date_time / size * size), p.name.clone());
            }
            Event::Auction(a) => {
                *auctions
                    .entry((a.seller, a.date_time / size * size))
                    .or_default() += 1
            }
            Event::Bid(_) => {}
        }
    }
    let expected = sorted(
        people
            .iter()
            .filter_map(|((id, start), name)| {
                auctions
                    .get(&(*id, *start))
                    .map(|n| format!("{id} {start} {name} {n}"))
            })
            .collect(),
    );
    assert!(!expected.is_empty());
    // In SQL (as Nexmark writes it): each side's sellers per window, joined on both.
    let got = sorted(
        run("sql/q8.sql")
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["seller"],
                    ms(&r["starttime"]),
                    r["name"].as_str().unwrap()
                )
            })
            .collect(),
    );
    let without_counts: Vec<String> = expected
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect();
    assert_same_lines(&got, &without_counts, "sql/q8.sql");
    let got = sorted(
        run("q8")
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r["seller"],
                    ms(&r["window_start"]),
                    r["name"].as_str().unwrap(),
                    r["auctions"]
                )
            })
            .collect(),
    );
    assert_same_lines(&got, &expected, "q8");
}

/// Each auction with its highest bid (if any) made between its opening and its expiry, by
/// the query's definition: whatever order the bids come in.
fn winning_bids(all: &[Event]) -> HashMap<usize, (&nexmark::event::Auction, Option<usize>)> {
    let mut open: HashMap<usize, (&nexmark::event::Auction, Option<usize>)> = all
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((a.id, (a, None))),
            _ => None,
        })
        .collect();
    for e in all {
        if let Event::Bid(b) = e
            && let Some((a, best)) = open.get_mut(&b.auction)
            && a.date_time <= b.date_time
            && b.date_time <= a.expires
        {
            *best = Some(best.map_or(b.price, |x| x.max(b.price)));
        }
    }
    open
}

#[test]
fn q4_averages_the_winning_price_per_category_in_toml_and_in_sql() {
    let all = events();
    let open = winning_bids(&all);
    let mut per_category: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (a, best) in open.values() {
        if let Some(best) = best {
            let c = per_category.entry(a.category).or_default();
            c.0 += best;
            c.1 += 1;
        }
    }
    let expected: Vec<String> = per_category
        .iter()
        .map(|(cat, (sum, n))| format!("{cat} {:.3} {n}", *sum as f64 / *n as f64))
        .collect();
    // Both emit each auction's final price at its expiry (in SQL, the join grouped by the
    // auction's PRIMARY KEY) and keep the average per category up to date as prices arrive:
    // each category's last row is the answer.
    for query in ["q4", "sql/q4.sql"] {
        let mut last: BTreeMap<i64, String> = BTreeMap::new();
        for r in run(query) {
            last.insert(
                r["category"].as_i64().unwrap(),
                format!(
                    "{} {:.3} {}",
                    r["category"],
                    r["average"].as_f64().unwrap(),
                    r["auctions"]
                ),
            );
        }
        assert_same_lines(&last.into_values().collect::<Vec<_>>(), &expected, query);
    }
}

#[test]
fn q6_averages_each_sellers_latest_ten_winning_prices_in_sql() {
    let all = events();
    let open = winning_bids(&all);
    // Per seller, its auctions in order of opening (then id); each averages itself and the 9
    // before it.
    let mut per_seller: BTreeMap<usize, Vec<(u64, usize, usize)>> = BTreeMap::new();
    for (a, best) in open.values() {
        if let Some(best) = best {
            per_seller
                .entry(a.seller)
                .or_default()
                .push((a.date_time, a.id, *best));
        }
    }
    let mut expected = Vec::new();
    for (seller, mut auctions) in per_seller {
        auctions.sort_unstable();
        for i in 0..auctions.len() {
            let frame = &auctions[i.saturating_sub(9)..=i];
            let average = frame.iter().map(|a| a.2 as f64).sum::<f64>() / frame.len() as f64;
            expected.push(format!("{} {seller} {average:.3}", auctions[i].1));
        }
    }
    assert!(
        expected.len() > 100,
        "the reference has many auctions: {}",
        expected.len()
    );
    // The query's result is a changelog keyed by auction: apply it.
    let mut last: BTreeMap<i64, String> = BTreeMap::new();
    for r in run("sql/q6.sql") {
        let auction = r["auction"].as_i64().unwrap();
        if r["_op"] == "delete" {
            last.remove(&auction);
        } else {
            last.insert(
                auction,
                format!(
                    "{auction} {} {:.3}",
                    r["seller"],
                    r["average"].as_f64().unwrap()
                ),
            );
        }
    }
    assert_same_lines(
        &sorted(last.into_values().collect()),
        &sorted(expected),
        "q6",
    );
}

#[test]
fn q5_finds_the_auctions_with_the_most_bids_per_sliding_window_in_toml_and_in_sql() {
    let (size, slide) = (10_000i64, 2_000i64);
    let mut counts: BTreeMap<i64, HashMap<usize, i64>> = BTreeMap::new(); // window end -> auction -> bids
    for e in events() {
        if let Event::Bid(b) = e {
            let t = b.date_time as i64;
            let mut start = t.div_euclid(slide) * slide;
            while start > t - size {
                *counts
                    .entry(start + size)
                    .or_default()
                    .entry(b.auction)
                    .or_default() += 1;
                start -= slide;
            }
        }
    }
    let mut expected = Vec::new();
    for (end, per_auction) in &counts {
        let max = per_auction.values().max().unwrap();
        for (auction, n) in per_auction {
            if n == max {
                expected.push(format!("{end} {auction} {n}"));
            }
        }
    }
    let expected = sorted(expected);
    for query in ["q5", "sql/q5.sql"] {
        let got = sorted(
            run(query)
                .iter()
                .map(|r| format!("{} {} {}", ms(&r["window_end"]), r["auction"], r["bids"]))
                .collect(),
        );
        assert_same_lines(&got, &expected, query);
    }
}

#[test]
fn q7_finds_the_highest_bids_per_window_in_toml_and_in_sql() {
    let size = 10_000u64;
    let mut best: BTreeMap<u64, (usize, Vec<String>)> = BTreeMap::new();
    for e in events() {
        if let Event::Bid(b) = e {
            let end = (b.date_time / size + 1) * size;
            let entry = best.entry(end).or_insert((b.price, Vec::new()));
            if b.price > entry.0 {
                *entry = (b.price, Vec::new());
            }
            if b.price == entry.0 {
                entry.1.push(format!(
                    "{end} {} {} {} {}",
                    b.auction, b.bidder, b.price, b.date_time
                ));
            }
        }
    }
    let expected = sorted(best.into_values().flat_map(|(_, rows)| rows).collect());
    for query in ["q7", "sql/q7.sql"] {
        let got = sorted(
            run(query)
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {} {}",
                        ms(&r["window_end"]),
                        r["auction"],
                        r["bidder"],
                        r["price"],
                        ms(&r["date_time"])
                    )
                })
                .collect(),
        );
        assert_same_lines(&got, &expected, query);
    }
}

/// `QUERY.toml` on `EVENTS` events at `rate` events/s, checkpointing every 50 ms, into
/// `out.jsonl` beside the pipeline.
fn resumable(query: &str, rate: u64) -> String {
    if query.ends_with(".sql") {
        let path = sabot_test_artifacts::workspace().join(format!("examples/nexmark/{query}"));
        return resumable_sql(&std::fs::read_to_string(path).unwrap(), rate);
    }
    let path = sabot_test_artifacts::workspace().join(format!("examples/nexmark/{query}.toml"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace(
            "count = 10_000_000",
            &format!("count = {EVENTS}\nrate = {rate}"),
        )
        .replace(
            "batch_size = 8192\n",
            "batch_size = 2000\n\n[pipeline.checkpoint]\ninterval_ms = 50\n",
        )
        .replace(
            "type = \"blackhole\"",
            "type = \"file\"\npath = \"out.jsonl\"",
        )
}

/// A Nexmark query in SQL as [`resumable`] runs it.
fn resumable_sql(text: &str, rate: u64) -> String {
    let text = text
        .replace(
            "'count' = 10000000",
            &format!("'count' = {EVENTS}, 'rate' = {rate}"),
        )
        .replace(
            "SET batch_size = 8192;",
            "SET batch_size = 2000;\nSET checkpoint.interval_ms = 50;",
        )
        .replace(
            "'connector' = 'blackhole'",
            "'connector' = 'file', 'path' = 'out.jsonl'",
        );
    sabot_host::config::sql_to_toml(&text, "resumable", None).unwrap()
}

/// Runs `query` once without a stop, then stopped after three checkpoints and resumed: the two
/// runs read the `generated` events once between them and write the same rows.
fn assert_resumes(query: &str, generated: u64) {
    assert_resumes_as(query, &|rate| resumable(query, rate), generated);
}

/// [`assert_resumes`] of the pipeline `pipeline(rate)` gives.
fn assert_resumes_as(query: &str, pipeline: &dyn Fn(u64) -> String, generated: u64) {
    let resumable = |_: &str, rate: u64| pipeline(rate);
    let clean = Scratch::new();
    clean.run(&resumable(query, 0)).unwrap();
    let expected = crate::support::sorted_lines(&clean.read("out.jsonl"));
    assert!(!expected.is_empty());

    let s = Scratch::new();
    let first = crate::checkpoint::run_in(&s, &resumable(query, 150_000), Some(3), false).unwrap();
    assert!(first.events_in < generated, "{query}: stopped part-way");
    let second = crate::checkpoint::run_in(&s, &resumable(query, 150_000), None, false).unwrap();
    assert_eq!(first.events_in + second.events_in, generated, "{query}");
    assert_same_lines(
        &crate::support::sorted_lines(&s.read("out.jsonl")),
        &expected,
        query,
    );
}

#[test]
fn join_runs_stopped_and_resumed_from_checkpoints_give_the_same_output() {
    for query in ["q3", "q8", "sql/q8.sql"] {
        // People and auctions (4 events in 50) are generated; bids, which no edge reads, are not.
        assert_resumes(query, EVENTS / 50 * 4);
    }
}

#[test]
fn rankings_stopped_and_resumed_from_checkpoints_give_the_same_output() {
    for query in ["sql/q5.sql", "sql/q7.sql"] {
        // Only bids are generated: 46 events in 50.
        assert_resumes(query, EVENTS / 50 * 46);
    }
}

#[test]
fn windows_of_rows_stopped_and_resumed_from_checkpoints_give_the_same_output() {
    // Each bid beside the average of its bidder's last five and the price before it: rows wait
    // for the watermark in state, and each bidder's latest rows are kept for the next frames.
    let sql = "SET name = 'bidders';
        SET batch_size = 8192;
        CREATE TABLE bid (WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
        WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);
        CREATE TABLE out WITH ('connector' = 'blackhole');
        INSERT INTO out SELECT auction, bidder, price, date_time,
            AVG(price) OVER (PARTITION BY bidder ORDER BY date_time ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS recent,
            LAG(price) OVER (PARTITION BY bidder ORDER BY date_time ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS before
        FROM bid;";
    assert_resumes_as(
        "bidders",
        &|rate| resumable_sql(sql, rate),
        EVENTS / 50 * 46,
    );
}

#[test]
fn an_interval_join_grouped_by_auction_stopped_and_resumed_from_checkpoints_gives_the_same_output()
{
    // Each auction's highest bid, count of bids and category, said once at its expiry by the
    // join itself (SQL's GROUP BY of an interval join's key); a file only appends, so the
    // changelog reaches it through an agent that passes it on.
    let pipeline = |rate: u64| {
        format!(
            r#"
edges = ["nexmark:1 -> auctions -> winners", "nexmark:2 -> winners", "winners -> pass -> out"]
[pipeline]
name = "grouped"
batch_size = 2000
[pipeline.checkpoint]
interval_ms = 50
[sources.nexmark]
type = "nexmark"
count = {EVENTS}
rate = {rate}
event_time = {{ column = "date_time" }}
[agents.auctions]
module = "builtin:project"
config = {{ select = ["id AS auction", "category", "date_time", "expires"] }}
[agents.winners]
module = "builtin:join"
key = "auction"
parallelism = 2
config = {{ kind = "interval", key = "auction", time = "date_time", lower_ms = 0, upper_column = "expires", aggregates = ["max(right.price) AS final", "first(left.category) AS category", "count(*) AS bids"] }}
[agents.pass]
module = {pass}
config = {{ mode = "pass" }}
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
            pass = crate::support::lit(sabot_test_artifacts::MISBEHAVE)
        )
    };
    // Auctions and bids: 49 events in 50.
    assert_resumes_as("grouped", &pipeline, EVENTS / 50 * 49);
}
