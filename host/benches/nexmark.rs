//! `cargo bench -p sabot-host --bench nexmark`: events/s of each Nexmark example query
//! (examples/nexmark) beside a native Rust implementation of the same query — generating the same
//! events with the `nexmark` crate and computing the answer with plain maps — measured in the same
//! run. Nothing here is asserted. `SABOT_BENCH_EVENTS` sets the events per query (default 2 000 000).

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

/// The allocator of the `sabot` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use sabot_host::connectors::SinkSpec;
use sabot_host::connectors::blackhole::BlackholeSpec;
use sabot_host::wasm::{CompileCache, ModuleSource, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

/// The events of the first `events` of the sequence of the kinds `query` reads, like the Sabot
/// source generates them (kinds nothing reads are skipped on both sides).
fn generator(query: &str, events: usize) -> Box<dyn Iterator<Item = Event>> {
    let config = NexmarkConfig {
        base_time: 1_767_225_600_000,
        ..NexmarkConfig::default()
    };
    let kinds: &[(EventType, usize)] = match query {
        "q3" | "q8" => &[(EventType::Person, 1), (EventType::Auction, 3)],
        "q4" | "q6" => &[(EventType::Auction, 3), (EventType::Bid, 46)],
        _ => &[(EventType::Bid, 46)],
    };
    if kinds.len() == 2 && (query == "q4" || query == "q6") {
        // Auctions and bids interleaved in sequence order, as the query needs them.
        return Box::new(
            EventGenerator::new(config)
                .take(events)
                .filter(|e| !matches!(e, Event::Person(_))),
        );
    }
    let mut out: Vec<Box<dyn Iterator<Item = Event>>> = Vec::new();
    for (kind, per) in kinds {
        out.push(Box::new(
            EventGenerator::new(config.clone())
                .with_type_filter(*kind)
                .take(events / 50 * per),
        ));
    }
    Box::new(out.into_iter().flatten())
}

/// The query natively: the same events, the answer computed in plain Rust. Returns events/s.
fn native(query: &str, events: usize) -> f64 {
    let started = Instant::now();
    let events_iter = generator(query, events);
    let mut out = 0usize;
    match query {
        "q0" => {
            for e in events_iter {
                if let Event::Bid(b) = e {
                    out += black_box(&b).price;
                }
            }
        }
        "q1" => {
            for e in events_iter {
                if let Event::Bid(b) = e {
                    out += black_box(b.price as f64 * 0.908) as usize;
                }
            }
        }
        "q2" => {
            for e in events_iter {
                if let Event::Bid(b) = e
                    && b.auction % 123 == 0
                {
                    out += b.price;
                }
            }
        }
        "q3" => {
            let mut people = HashMap::new();
            for e in events_iter {
                match e {
                    Event::Person(p) if ["or", "id", "ca"].contains(&p.state.as_str()) => {
                        people.insert(p.id, p);
                    }
                    Event::Auction(a) if a.category == 10 => {
                        if let Some(p) = people.get(&a.seller) {
                            out += black_box(p.name.len());
                        }
                    }
                    _ => {}
                }
            }
        }
        "q4" => {
            let mut avg: HashMap<usize, (usize, usize)> = HashMap::new();
            closed_auctions(
                events_iter,
                |a| a.category,
                |category, best| {
                    let c = avg.entry(category).or_default();
                    c.0 += best;
                    c.1 += 1;
                    out += c.0 / c.1;
                },
            );
        }
        "q6" => {
            // Each closed auction's price joins its seller's latest ten.
            let mut latest: HashMap<usize, std::collections::VecDeque<usize>> = HashMap::new();
            closed_auctions(
                events_iter,
                |a| a.seller,
                |seller, best| {
                    let prices = latest.entry(seller).or_default();
                    prices.push_back(best);
                    if prices.len() > 10 {
                        prices.pop_front();
                    }
                    out += prices.iter().sum::<usize>() / prices.len();
                },
            );
        }
        "q5" => {
            let mut counts: HashMap<(u64, usize), usize> = HashMap::new();
            for e in events_iter {
                if let Event::Bid(b) = e {
                    let mut start = b.date_time / 2_000 * 2_000;
                    while start + 10_000 > b.date_time {
                        *counts.entry((start, b.auction)).or_default() += 1;
                        if start < 2_000 {
                            break;
                        }
                        start -= 2_000;
                    }
                }
            }
            let mut best: HashMap<u64, usize> = HashMap::new();
            for ((w, _), n) in &counts {
                let b = best.entry(*w).or_default();
                *b = (*b).max(*n);
            }
            out += best.len();
        }
        "q7" => {
            let mut best: HashMap<u64, (usize, Vec<Event>)> = HashMap::new();
            for e in events_iter {
                if let Event::Bid(b) = &e {
                    let w = b.date_time / 10_000;
                    let price = b.price;
                    let entry = best.entry(w).or_insert((price, Vec::new()));
                    if price > entry.0 {
                        *entry = (price, Vec::new());
                    }
                    if price == entry.0 {
                        entry.1.push(e);
                    }
                }
            }
            out += best.len();
        }
        "q8" => {
            let mut people: HashMap<(usize, u64), String> = HashMap::new();
            let mut sellers: HashMap<(usize, u64), usize> = HashMap::new();
            for e in events_iter {
                match e {
                    Event::Person(p) => {
                        people.insert((p.id, p.date_time / 10_000), p.name);
                    }
                    Event::Auction(a) => {
                        *sellers.entry((a.seller, a.date_time / 10_000)).or_default() += 1
                    }
                    Event::Bid(_) => {}
                }
            }
            out += people.keys().filter(|k| sellers.contains_key(k)).count();
        }
        other => unreachable!("no native {other}"),
    }
    black_box(out);
    events as f64 / started.elapsed().as_secs_f64()
}

/// Each auction's highest bid between its opening and its expiry, handed to `closed` with the
/// auction's `group` once a bid after its expiry shows it closed.
fn closed_auctions(
    events: Box<dyn Iterator<Item = Event>>,
    group: impl Fn(&nexmark::event::Auction) -> usize,
    mut closed: impl FnMut(usize, usize),
) {
    let mut open: HashMap<usize, (usize, u64, u64, Option<usize>)> = HashMap::new();
    let mut closing: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for e in events {
        match e {
            Event::Auction(a) => {
                open.insert(a.id, (group(&a), a.date_time, a.expires, None));
                closing.entry(a.expires).or_default().push(a.id);
            }
            Event::Bid(b) => {
                if let Some(o) = open.get_mut(&b.auction)
                    && o.1 <= b.date_time
                    && b.date_time <= o.2
                {
                    o.3 = Some(o.3.map_or(b.price, |x| x.max(b.price)));
                }
                while let Some((&t, _)) = closing.first_key_value() {
                    if t >= b.date_time {
                        break;
                    }
                    for id in closing.pop_first().unwrap().1 {
                        if let Some((g, _, _, Some(best))) = open.remove(&id) {
                            closed(g, best);
                        }
                    }
                }
            }
            Event::Person(_) => {}
        }
    }
}

/// Events/s of `examples/nexmark/QUERY.toml` (or `QUERY.sql`, e.g. `sql/q1.sql`).
fn sabot(runtime: &Arc<WasmRuntime>, query: &str, events: u64) -> f64 {
    let workspace = sabot_test_artifacts::workspace();
    let file = if query.ends_with(".sql") {
        query.to_owned()
    } else {
        format!("{query}.toml")
    };
    let path = workspace.join(format!("examples/nexmark/{file}"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("count = 10_000_000", &format!("count = {events}"))
        .replace("'count' = 10000000", &format!("'count' = {events}"));
    let agents: Vec<(String, ModuleSource)> = ["winners", "average", "hottest", "highest"]
        .iter()
        .filter(|a| text.contains(&format!("[agents.{a}]")))
        .map(|a| {
            (
                a.to_string(),
                ModuleSource::Path(sabot_test_artifacts::NEXMARK_QUERIES.into()),
            )
        })
        .collect();
    let mut spec = PipelineSpec::parse_with_modules(&text, &path, &agents).unwrap();
    for sink in spec.sinks.values_mut() {
        *sink = SinkSpec::Blackhole(BlackholeSpec {});
    }
    let summary = Pipeline::new(spec, runtime.clone())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert!(summary.events_in <= events);
    // Events of the Nexmark sequence covered per second (kinds no edge reads are skipped).
    events as f64 / summary.elapsed.as_secs_f64()
}

fn main() {
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 2_000_000);
    let cache_dir = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(CompileCache::new(Some(cache_dir.path().into()))).unwrap();
    // SABOT_BENCH_QUERIES=q4,q6 measures only those.
    let only = std::env::var("SABOT_BENCH_QUERIES").ok();
    let chosen = |q: &&str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == *q))
    };
    let queries: Vec<&str> = ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8"]
        .into_iter()
        .filter(chosen)
        .collect();
    // q6 is written in SQL only.
    let pipeline = |q: &str| {
        if q == "q6" {
            "sql/q6.sql".to_owned()
        } else {
            q.to_owned()
        }
    };
    // Compile every module once, outside the timings.
    for q in &queries {
        sabot(&runtime, &pipeline(q), 10_000);
    }
    // q3 and q8 read people and auctions only, 8 % of the sequence: they run 5× the events, so
    // that a run reads enough rows to outlast starting and stopping the pipeline.
    let events_of = |q: &str| {
        if matches!(q, "q3" | "q8") {
            events * 5
        } else {
            events
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "# Nexmark, {events} events per query (q3, q8: {}), {cores} cores\n",
        events * 5
    );
    println!("Medians of 3 runs. Per core = events/s ÷ {cores} (the pipeline uses every core).\n");
    println!("| query | Sabot events/s | per core | native Rust events/s | ratio |");
    println!("|---|---|---|---|---|");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for q in &queries {
        let (mut s, mut n) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            s.push(sabot(&runtime, &pipeline(q), events_of(q)));
            n.push(native(q, events_of(q) as usize));
        }
        let (s, n) = (median(s), median(n));
        println!(
            "| {q} | {:.2} M | {:.2} M | {:.2} M | {:.2}× |",
            s / 1e6,
            s / cores / 1e6,
            n / 1e6,
            s / n
        );
    }

    // The queries written in SQL beside their hand-written pipelines, interleaved so that both
    // see the same machine.
    let sql: Vec<&str> = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"]
        .into_iter()
        .filter(chosen)
        .collect();
    for q in &sql {
        sabot(&runtime, &format!("sql/{q}.sql"), 10_000);
    }
    println!("\n## SQL against the hand-written pipeline (medians of 5, alternating)\n");
    println!("| query | SQL events/s | TOML events/s | SQL ÷ TOML |");
    println!("|---|---|---|---|");
    for q in &sql {
        let (mut s, mut t) = (Vec::new(), Vec::new());
        for round in 0..5 {
            // Alternate which goes first, so neither gains from running second.
            let events = events_of(q);
            if round % 2 == 0 {
                s.push(sabot(&runtime, &format!("sql/{q}.sql"), events));
                t.push(sabot(&runtime, q, events));
            } else {
                t.push(sabot(&runtime, q, events));
                s.push(sabot(&runtime, &format!("sql/{q}.sql"), events));
            }
        }
        let (s, t) = (median(s), median(t));
        println!(
            "| {q} | {:.2} M | {:.2} M | {:.2}× |",
            s / 1e6,
            t / 1e6,
            s / t
        );
    }
}
