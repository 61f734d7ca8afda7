//! The `nexmark` crate's event sequence, generated straight into Arrow columns.
//!
//! The crate builds each event as a struct of `String`s (every name, e-mail address, channel and
//! URL a fresh allocation, the channel and URL cloned from its tables) that the source then
//! copied into column builders. Here each event's fields are drawn from the same random number
//! generator in the same order — the crate seeds a `SmallRng` with the event's id and draws
//! field after field — and written into the builders, through one reused scratch string; the
//! channels and URLs are appended from tables built once. The result is the crate's sequence,
//! value for value (the tests compare a million events), for its default configuration with
//! our `base_time`.
//!
//! Every constant below is the crate's default ([`nexmark::config::NexmarkConfig`]); the event
//! kinds repeat every 50 events: 1 person, 3 auctions, 46 bids.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use nexmark::config::NexmarkConfig;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::schema;

const PROPORTION: usize = 50;
const PERSON_PROPORTION: usize = 1;
const AUCTION_PROPORTION: usize = 3;
const FIRST_PERSON_ID: usize = 1000;
const FIRST_AUCTION_ID: usize = 1000;
const FIRST_CATEGORY_ID: usize = 10;
const NUM_CATEGORIES: usize = 5;
const ACTIVE_PEOPLE: usize = 1000;
const PERSON_ID_LEAD: usize = 10;
const IN_FLIGHT_AUCTIONS: usize = 100;
const AUCTION_ID_LEAD: usize = 10;
const HOT_SELLER_RATIO: usize = 4;
const HOT_AUCTION_RATIO: usize = 2;
const HOT_BIDDER_RATIO: usize = 4;
const HOT_CHANNEL_RATIO: usize = 2;
/// The crate's fraction of hot sellers, bidders and auctions: 1 in 100.
const HOT_BATCH: usize = 100;
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
/// Microseconds between events: 10 000 events/s of event time.
const INTER_EVENT_DELAY_US: f32 = 100.0;
/// Entries of the crate's table of (non-hot) channels and URLs.
const CHANNELS: usize = 10_000;

/// What the crate builds once: name lists, hot channels and URLs, and the channel table.
struct Tables {
    first_names: Vec<String>,
    last_names: Vec<String>,
    cities: Vec<String>,
    states: Vec<String>,
    hot_channels: Vec<String>,
    hot_urls: Vec<String>,
    channels: Vec<(String, String)>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let defaults = NexmarkConfig::default();
    Tables {
        first_names: defaults.first_names,
        last_names: defaults.last_names,
        cities: defaults.us_cities,
        states: defaults.us_states,
        hot_channels: defaults.hot_channels,
        hot_urls: defaults.hot_urls,
        channels: (0..CHANNELS).map(channel).collect(),
    }
});

/// Entry `i` of the crate's channel table (`utils::build_channel_url_map`).
fn channel(i: usize) -> (String, String) {
    let mut url = base_url(i as u64);
    let mut rng = SmallRng::seed_from_u64(i as u64);
    if rng.gen_range(0..10) > 0 {
        url.push_str("&channel_id=");
        url.push_str(&i64::abs(i64::from((i as i32).reverse_bits())).to_string());
    }
    (format!("channel-{i}"), url)
}

/// The crate's `utils::get_base_url`.
fn base_url(seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut id = || {
        let len = rng.gen_range(3..5_usize);
        (0..len)
            .map(|_| {
                if rng.gen_range(0..13) == 0 {
                    '_'
                } else {
                    rng.gen_range(b'a'..=b'z') as char
                }
            })
            .collect::<String>()
    };
    let (a, b, c) = (id(), id(), id());
    format!("https://www.nexmark.com/{a}/{b}/{c}/item.htm?query=1")
}

/// The event time of event `n` (the crate's `event_timestamp`, in its `f32` arithmetic).
fn timestamp(base_time: u64, n: usize) -> u64 {
    base_time + ((n as f32 * INTER_EVENT_DELAY_US) / 1000.0).round() as u64
}

/// The newest person id (base 0) at event `event_id`: the crate's `epoch * PERSON_PROPORTION +
/// min(offset, PERSON_PROPORTION - 1)`, with one person per epoch.
fn person_last_id(event_id: usize) -> usize {
    const _: () = assert!(PERSON_PROPORTION == 1);
    event_id / PROPORTION
}

/// A random recent person id (base 0).
fn person_next_id(event_id: usize, rng: &mut SmallRng) -> usize {
    let people = person_last_id(event_id) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.gen_range(0..active + PERSON_ID_LEAD)
}

/// The newest auction id (base 0) at event `event_id`.
fn auction_last_id(event_id: usize) -> usize {
    let mut epoch = event_id / PROPORTION;
    let mut offset = event_id % PROPORTION;
    if offset < PERSON_PROPORTION {
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if PERSON_PROPORTION + AUCTION_PROPORTION <= offset {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// A random in-flight auction id (base 0).
fn auction_next_id(event_id: usize, rng: &mut SmallRng) -> usize {
    let max = auction_last_id(event_id);
    let min = max.saturating_sub(IN_FLIGHT_AUCTIONS);
    min + rng.gen_range(0..max - min + 1 + AUCTION_ID_LEAD)
}

fn price(rng: &mut SmallRng) -> usize {
    (10.0_f32.powf(rng.r#gen::<f32>() * 6.0) * 100.0).round() as usize
}

/// Appends `len` random letters to `out`.
fn letters(rng: &mut SmallRng, len: usize, out: &mut String) {
    for _ in 0..len {
        out.push(rng.gen_range(b'a'..=b'z') as char);
    }
}

/// The crate's `gen_next_extra`: padding that brings the event to about `average` bytes.
fn extra(rng: &mut SmallRng, size: usize, average: usize, out: &mut String) {
    if size > average {
        return;
    }
    let wanted = average - size;
    let delta = (wanted + 2) / 5;
    let len = wanted - delta
        + if delta == 0 {
            0
        } else {
            rng.gen_range(0..2 * delta)
        };
    letters(rng, len, out);
}

fn choose<'a>(rng: &mut SmallRng, from: &'a [String]) -> &'a str {
    from.choose(rng).expect("a non-empty table")
}

fn int(v: usize) -> i64 {
    i64::try_from(v).expect("a Nexmark id or price fits in i64")
}

/// Column builders of people.
#[derive(Default)]
struct People {
    id: Int64Builder,
    name: StringBuilder,
    email_address: StringBuilder,
    credit_card: StringBuilder,
    city: StringBuilder,
    state: StringBuilder,
    date_time: TimestampMillisecondBuilder,
    extra: StringBuilder,
}

impl People {
    fn push(&mut self, event_id: usize, time: u64, s: &mut String) {
        let t = &*TABLES;
        let rng = &mut SmallRng::seed_from_u64(event_id as u64);
        self.id
            .append_value(int(person_last_id(event_id) + FIRST_PERSON_ID));
        s.clear();
        let (first, last) = (choose(rng, &t.first_names), choose(rng, &t.last_names));
        let _ = write!(s, "{first} {last}");
        let mut size = s.len();
        self.name.append_value(&*s);
        s.clear();
        letters(rng, 7, s);
        s.push('@');
        letters(rng, 5, s);
        s.push_str(".com");
        size += s.len();
        self.email_address.append_value(&*s);
        s.clear();
        let digits: [i32; 4] = std::array::from_fn(|_| rng.gen_range(0..10000));
        let _ = write!(
            s,
            "{:04} {:04} {:04} {:04}",
            digits[0], digits[1], digits[2], digits[3]
        );
        size += s.len();
        self.credit_card.append_value(&*s);
        let (city, state) = (choose(rng, &t.cities), choose(rng, &t.states));
        self.city.append_value(city);
        self.state.append_value(state);
        self.date_time.append_value(time as i64);
        s.clear();
        extra(
            rng,
            8 + size + city.len() + state.len(),
            AVG_PERSON_BYTES,
            s,
        );
        self.extra.append_value(&*s);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.email_address.finish()),
            Arc::new(self.credit_card.finish()),
            Arc::new(self.city.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.extra.finish()),
        ]
    }
}

/// Column builders of auctions.
#[derive(Default)]
struct Auctions {
    id: Int64Builder,
    item_name: StringBuilder,
    description: StringBuilder,
    initial_bid: Int64Builder,
    reserve: Int64Builder,
    date_time: TimestampMillisecondBuilder,
    expires: TimestampMillisecondBuilder,
    seller: Int64Builder,
    category: Int64Builder,
    extra: StringBuilder,
}

impl Auctions {
    fn push(&mut self, base_time: u64, event_id: usize, time: u64, s: &mut String) {
        let rng = &mut SmallRng::seed_from_u64(event_id as u64);
        self.id
            .append_value(int(auction_last_id(event_id) + FIRST_AUCTION_ID));
        s.clear();
        letters(rng, 20, s);
        self.item_name.append_value(&*s);
        s.clear();
        letters(rng, 100, s);
        self.description.append_value(&*s);
        let initial_bid = price(rng);
        let reserve = initial_bid + price(rng);
        self.initial_bid.append_value(int(initial_bid));
        self.reserve.append_value(int(reserve));
        // How long the auction runs: up to twice the time until the auction this many
        // auctions later.
        let later = (IN_FLIGHT_AUCTIONS * PROPORTION) / AUCTION_PROPORTION;
        let horizon = timestamp(base_time, event_id + later) - time;
        let expires = time + 1 + rng.gen_range(0..(horizon * 2).max(1));
        self.date_time.append_value(time as i64);
        self.expires.append_value(expires as i64);
        let seller = if rng.gen_range(0..HOT_SELLER_RATIO) > 0 {
            (person_last_id(event_id) / HOT_BATCH) * HOT_BATCH
        } else {
            person_next_id(event_id, rng)
        };
        self.seller.append_value(int(seller + FIRST_PERSON_ID));
        let category = FIRST_CATEGORY_ID + rng.gen_range(0..NUM_CATEGORIES);
        self.category.append_value(int(category));
        s.clear();
        extra(rng, 8 + 20 + 100 + 5 * 8, AVG_AUCTION_BYTES, s);
        self.extra.append_value(&*s);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.item_name.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.initial_bid.finish()),
            Arc::new(self.reserve.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.expires.finish()),
            Arc::new(self.seller.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.extra.finish()),
        ]
    }
}

/// Column builders of bids.
#[derive(Default)]
struct Bids {
    auction: Int64Builder,
    bidder: Int64Builder,
    price: Int64Builder,
    channel: StringBuilder,
    url: StringBuilder,
    date_time: TimestampMillisecondBuilder,
    extra: StringBuilder,
}

impl Bids {
    fn push(&mut self, event_id: usize, time: u64, s: &mut String) {
        let t = &*TABLES;
        let rng = &mut SmallRng::seed_from_u64(event_id as u64);
        let auction = if 0 < rng.gen_range(0..HOT_AUCTION_RATIO) {
            (auction_last_id(event_id) / HOT_BATCH) * HOT_BATCH
        } else {
            auction_next_id(event_id, rng)
        };
        let bidder = if 0 < rng.gen_range(0..HOT_BIDDER_RATIO) {
            (person_last_id(event_id) / HOT_BATCH) * HOT_BATCH + 1
        } else {
            person_next_id(event_id, rng)
        };
        self.auction.append_value(int(auction + FIRST_AUCTION_ID));
        self.bidder.append_value(int(bidder + FIRST_PERSON_ID));
        self.price.append_value(int(price(rng)));
        let (channel, url) = if rng.gen_range(0..HOT_CHANNEL_RATIO) > 0 {
            let i = rng.gen_range(0..t.hot_channels.len());
            (t.hot_channels[i].as_str(), t.hot_urls[i].as_str())
        } else {
            let (c, u) = t.channels.choose(rng).expect("a non-empty table");
            (c.as_str(), u.as_str())
        };
        self.channel.append_value(channel);
        self.url.append_value(url);
        self.date_time.append_value(time as i64);
        s.clear();
        extra(rng, 4 * 8, AVG_BID_BYTES, s);
        self.extra.append_value(&*s);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.auction.finish()),
            Arc::new(self.bidder.finish()),
            Arc::new(self.price.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.extra.finish()),
        ]
    }
}

/// The events of global offsets `[start, start + events)` of the kinds `used` asks for, as one
/// batch per kind present (people, then auctions, then bids), on the current thread.
pub(super) fn batches(
    base_time: u64,
    start: u64,
    events: usize,
    used: [bool; 3],
) -> Vec<(u32, RecordBatch)> {
    let (mut people, mut auctions, mut bids) =
        (People::default(), Auctions::default(), Bids::default());
    let mut scratch = String::with_capacity(128);
    let start = usize::try_from(start).expect("a Nexmark offset fits in usize");
    for n in start..start + events {
        let time = timestamp(base_time, n);
        match n % PROPORTION {
            r if r < PERSON_PROPORTION => {
                if used[0] {
                    people.push(n, time, &mut scratch);
                }
            }
            r if r < PERSON_PROPORTION + AUCTION_PROPORTION => {
                if used[1] {
                    auctions.push(base_time, n, time, &mut scratch);
                }
            }
            _ => {
                if used[2] {
                    bids.push(n, time, &mut scratch);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (port, columns) in [
        (0, people.finish()),
        (1, auctions.finish()),
        (2, bids.finish()),
    ] {
        if columns[0].is_empty() {
            continue;
        }
        let batch = RecordBatch::try_new(schema(port), columns)
            .expect("the columns are built to the port's schema");
        out.push((port, batch));
    }
    out
}
