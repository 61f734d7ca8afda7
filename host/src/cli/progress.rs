//! The live progress line on a terminal's stderr.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dataflow::RunStats;

/// A thread redrawing the progress line until finished.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing progress for `stats`.
    pub fn start(stats: Arc<RunStats>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("sabot-progress".into())
            .spawn(move || {
                let mut last = (Instant::now(), 0u64);
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let now = Instant::now();
                    let events = stats.events_in();
                    let rate = (events - last.1) as f64
                        / now.duration_since(last.0).as_secs_f64().max(1e-9);
                    last = (now, events);
                    let elapsed = stats.elapsed().as_secs();
                    let line = format!(
                        "  {} events in ({}/s) · {} out · {}:{:02}",
                        si(events as f64),
                        si(rate),
                        si(stats.events_out() as f64),
                        elapsed / 60,
                        elapsed % 60
                    );
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                }
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            })
            .ok();
        Progress { done, thread }
    }

    /// Stops and erases the line.
    pub fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `1234567.0` → `1.23M`.
pub fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}K", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency: `0.42 ms`, `12 ms`, `1.3 s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    match ms {
        ms if ms >= 1e3 => format!("{:.1} s", ms / 1e3),
        ms if ms >= 10.0 => format!("{ms:.0} ms"),
        ms => format!("{ms:.2} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_shown_readably() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(si(4_560_000.0), "4.56M");
        assert_eq!(si(12_300.0), "12.3K");
        assert_eq!(duration(Duration::from_micros(420)), "0.42 ms");
        assert_eq!(duration(Duration::from_micros(12_400)), "12 ms");
        assert_eq!(duration(Duration::from_millis(1_340)), "1.3 s");
    }
}
