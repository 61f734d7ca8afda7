use super::ordered::tests_support::{emit, kept};
use super::*;

fn config(functions: &[&str]) -> OverConfig {
    OverConfig {
        partition: Some("card".into()),
        order: "ts".into(),
        preceding: None,
        range_ms: None,
        unbounded: None,
        functions: functions.iter().map(|f| f.to_string()).collect(),
        changelog_key: None,
    }
}

fn schema() -> SideSchema {
    SideSchema {
        names: vec!["card".into(), "ts".into(), "amount".into()],
        types: vec![OutType::I64, OutType::TimestampMs, OutType::I64],
    }
}

fn row(ts: i64, amount: i64) -> Values {
    vec![
        Some(Value::I(1)),
        Some(Value::I(ts)),
        Some(Value::I(amount)),
    ]
}

/// Feeds `times` (each a time and the amounts of its rows) through a fresh history, returning
/// each row's results.
fn run(config: OverConfig, times: &[(i64, &[i64])]) -> Vec<Values> {
    let functions = Functions::new(&config).unwrap();
    let mut history = Default::default();
    let mut all = Vec::new();
    for (ts, amounts) in times {
        let rows = amounts.iter().map(|a| row(*ts, *a)).collect();
        all.extend(emit(&functions, &mut history, *ts, schema(), rows).unwrap());
    }
    all
}

fn ints(results: &[Values], f: usize) -> Vec<Option<i64>> {
    results
        .iter()
        .map(|r| match &r[f] {
            Some(Value::I(v)) => Some(*v),
            None => None,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_rows_frame_reads_the_n_rows_before_each_row_and_lag_the_kth() {
    let mut c = config(&[
        "sum(amount) AS s",
        "lag(amount) AS prev",
        "lag(amount, 3) AS third",
    ]);
    c.preceding = Some(2);
    let got = run(c, &[(1, &[1, 2]), (5, &[4]), (7, &[8, 16])]);
    assert_eq!(
        ints(&got, 0),
        [Some(1), Some(3), Some(7), Some(14), Some(28)]
    );
    assert_eq!(ints(&got, 1), [None, Some(1), Some(2), Some(4), Some(8)]);
    assert_eq!(ints(&got, 2), [None, None, None, Some(1), Some(2)]);
}

#[test]
fn a_range_frame_reads_the_rows_within_the_interval_and_every_row_of_the_same_time() {
    let mut c = config(&["count(*) AS n", "sum(amount) AS s"]);
    c.range_ms = Some(10);
    let got = run(c, &[(0, &[1]), (5, &[2, 4]), (10, &[8]), (16, &[16])]);
    // At 5, both rows of time 5 are in each other's frame; at 16, rows older than 6 are out.
    assert_eq!(ints(&got, 0), [Some(1), Some(3), Some(3), Some(4), Some(2)]);
    assert_eq!(
        ints(&got, 1),
        [Some(1), Some(7), Some(7), Some(15), Some(24)]
    );
}

#[test]
fn unbounded_frames_accumulate_by_row_or_by_time() {
    let mut rows = config(&["sum(amount) AS s"]);
    rows.unbounded = Some("rows".into());
    assert_eq!(
        ints(&run(rows, &[(1, &[1, 2]), (2, &[4])]), 0),
        [Some(1), Some(3), Some(7)]
    );
    let range = config(&["sum(amount) AS s"]);
    assert_eq!(
        ints(&run(range, &[(1, &[1, 2]), (2, &[4])]), 0),
        [Some(3), Some(3), Some(7)]
    );
}

#[test]
fn a_history_keeps_only_what_later_frames_and_lags_read() {
    let mut c = config(&["max(amount) AS m", "lag(amount, 4) AS l"]);
    c.preceding = Some(2);
    let functions = Functions::new(&c).unwrap();
    let mut history = Default::default();
    for ts in 0..100 {
        emit(&functions, &mut history, ts, schema(), vec![row(ts, ts)]).unwrap();
    }
    assert_eq!(kept(&history), 4);
}

#[test]
fn bad_configs_name_what_is_expected() {
    let mut c = config(&["avg(amount)"]);
    c.preceding = Some(MAX_FRAME_ROWS + 1);
    let err = Functions::new(&c).err().unwrap().to_string();
    assert!(err.contains("at most 10000 rows"), "{err}");
    c.preceding = Some(1);
    c.range_ms = Some(5);
    let err = Functions::new(&c).err().unwrap().to_string();
    assert!(err.contains("not several"), "{err}");
    for (f, expected) in [
        ("lag(amount, 0)", "offset `0`"),
        ("lag(amount, 1, 2)", "more than two"),
        ("lag()", "no column"),
        ("collect(amount)", "not an over-aggregate"),
        ("median(amount)", "unknown function"),
    ] {
        let err = Functions::new(&config(&[f])).err().unwrap().to_string();
        assert!(err.contains(expected), "{f}: {err}");
    }
    let mut changes = config(&["avg(amount)"]);
    changes.changelog_key = Some("card".into());
    let err = Over::new("o", changes).err().unwrap().to_string();
    assert!(err.contains("preceding = N"), "{err}");
}

#[test]
fn a_range_frame_over_too_many_rows_is_refused_naming_the_limit() {
    let mut c = config(&["count(*)"]);
    c.range_ms = Some(1_000);
    let functions = Functions::new(&c).unwrap();
    let mut history = Default::default();
    let rows = (0..=MAX_FRAME_ROWS as i64).map(|a| row(7, a)).collect();
    let err = emit(&functions, &mut history, 7, schema(), rows)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("holds 10001 rows") && err.contains("at most 10000"),
        "{err}"
    );
}

#[test]
fn sliding_aggregates_equal_those_read_from_each_frame_even_over_nulls() {
    let mut c = config(&[
        "sum(amount) AS s",
        "avg(amount) AS a",
        "count(amount) AS c",
        "count(*) AS rows",
        "max(amount) AS m",
        "lag(amount, 2) AS l",
    ]);
    c.preceding = Some(3);
    let f = Functions::new(&c).unwrap();
    let schema = schema();
    let (at, _) = f.inputs(&schema).unwrap();
    let fresh = f.fresh(&schema, &at);
    // Amounts with runs of nulls longer than the frame.
    let amounts = [
        Some(5),
        None,
        Some(-2),
        None,
        None,
        None,
        None,
        Some(7),
        Some(1),
        None,
        Some(3),
    ];
    let seq: Vec<(i64, Values)> = amounts
        .iter()
        .enumerate()
        .map(|(t, a)| {
            let row = vec![Some(Value::I(1)), Some(Value::I(t as i64)), a.map(Value::I)];
            (t as i64, inputs_of(&row, &at))
        })
        .collect();
    for positions in [(0..seq.len()).collect::<Vec<_>>(), vec![1, 2, 6, 7, 8, 10]] {
        let (slid, _) = f.evaluate_rows(&seq, &positions, 3, &fresh, None);
        for (i, got) in positions.iter().zip(slid) {
            let read = f.evaluate(&seq, *i, (i.saturating_sub(3), *i), None, &fresh, false);
            assert_eq!(got, read, "row {i}");
        }
    }
    // Carried on from an earlier call, they continue where it stopped.
    let (_, carried) = f.evaluate_rows(&seq, &[0, 1, 2, 3, 4], 3, &fresh, None);
    let (later, _) = f.evaluate_rows(&seq, &[5, 6, 7], 3, &fresh, carried);
    for (i, got) in [5, 6, 7].iter().zip(later) {
        let read = f.evaluate(&seq, *i, (i - 3, *i), None, &fresh, false);
        assert_eq!(got, read, "row {i}");
    }
}
