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

/// Runs `examples/nexmark/QUERY.toml` on `EVENTS` events, its sink writing JSON Lines.
fn run(query: &str) -> Vec<serde_json::Value> {
    let path = sabot_test_artifacts::workspace().join(format!("examples/nexmark/{query}.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("count = 10_000_000", &format!("count = {EVENTS}"));
    let mut spec = PipelineSpec::parse(&text, &path).unwrap();
    let s = Scratch::new();
    for sink in spec.sinks.values_mut() {
        *sink = SinkSpec::File(FileSinkSpec {
            path: s.path("out.jsonl"),
            format: None,
        });
    }
    let summary = Pipeline::new(spec, runtime())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert_eq!(summary.events_in, EVENTS);
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
fn q0_passes_every_bid_through() {
    let bids = events()
        .iter()
        .filter(|e| matches!(e, Event::Bid(_)))
        .count();
    assert_eq!(run("q0").len(), bids);
}

#[test]
fn q1_converts_every_price_to_euros() {
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
    let got = sorted(
        run("q1")
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
    assert_same_lines(&got, &expected, "q1");
}

#[test]
fn q2_selects_the_bids_of_every_123rd_auction() {
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
    let got = sorted(
        run("q2")
            .iter()
            .map(|r| format!("{} {}", r["auction"], r["price"]))
            .collect(),
    );
    assert_same_lines(&got, &expected, "q2");
}

#[test]
fn q3_finds_the_local_sellers_of_category_10() {
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
                    let p = people.get(&a.seller).filter(|p| p.date_time <= a.date_time)?;
                    ["or", "id", "ca"]
                        .contains(&p.state.as_str())
                        .then(|| format!("{} {} {} {}", p.name, p.city, p.state, a.id))
                }
                _ => None,
            })
            .collect(),
    );
    assert!(!expected.is_empty());
    let got = sorted(
        run("q3")
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
    assert_same_lines(&got, &expected, "q3");
}

#[test]
fn q8_finds_people_who_sell_in_the_window_they_joined() {
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
