//! Behaviour of the expression library, as operators and `sabot validate` see it.

use super::*;
use arrow_array::{Float64Array, Int32Array, Int64Array, StringArray};

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(Float64Array::from(vec![
                Some(10.0),
                Some(2500.0),
                None,
                Some(99.5),
            ])),
            Arc::new(StringArray::from(vec![
                Some("FR"),
                Some("NG"),
                Some("KP"),
                None,
            ])),
            Arc::new(Int32Array::from(vec![1, 5, 10, 20])),
        ],
    )
    .unwrap()
}

fn ids(filtered: &RecordBatch) -> Vec<i64> {
    filtered
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

fn keep(expr: &str) -> Vec<i64> {
    ids(&Predicate::parse(expr).unwrap().filter(&batch()).unwrap())
}

#[test]
fn comparisons_mix_integer_and_float_operands() {
    assert_eq!(keep("amount > 50"), vec![2, 4]);
    assert_eq!(keep("qty >= 5 AND qty < 20"), vec![2, 3]);
    assert_eq!(keep("qty * 2.5 > amount"), Vec::<i64>::new());
    assert_eq!(keep("id % 2 = 0"), vec![2, 4]);
}

#[test]
fn nulls_follow_sql_three_valued_logic() {
    assert_eq!(keep("amount IS NULL"), vec![3]);
    assert_eq!(keep("country IS NOT NULL AND amount < 100"), vec![1]);
    assert_eq!(keep("amount > 100 OR country = 'KP'"), vec![2, 3]);
    assert_eq!(keep("NOT (amount > 100)"), vec![1, 4]);
}

#[test]
fn in_between_and_like_select_rows() {
    assert_eq!(keep("country IN ('NG', 'KP')"), vec![2, 3]);
    assert_eq!(keep("country NOT IN ('NG', 'KP')"), vec![1]);
    assert_eq!(keep("qty BETWEEN 5 AND 10"), vec![2, 3]);
    assert_eq!(keep("country LIKE 'N%'"), vec![2]);
    assert_eq!(keep("country ILIKE 'fr'"), vec![1]);
    assert_eq!(keep("CAST(qty AS VARCHAR) = '20'"), vec![4]);
}

#[test]
fn constant_predicates_apply_to_every_row() {
    assert_eq!(keep("true"), vec![1, 2, 3, 4]);
    assert_eq!(keep("1 = 2"), Vec::<i64>::new());
}

#[test]
fn unknown_columns_are_named_with_the_available_ones() {
    let err = Predicate::parse("amout > 5")
        .unwrap()
        .filter(&batch())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown column `amout`"), "{err}");
    assert!(err.contains("id, amount, country, qty"), "{err}");
}

#[test]
fn parse_errors_quote_the_expression() {
    let err = Predicate::parse("amount >").unwrap_err().to_string();
    assert!(err.contains("`amount >`"), "{err}");
    let err = Predicate::parse("amount > 1 2").unwrap_err().to_string();
    assert!(err.contains("unexpected `2`"), "{err}");
}

#[test]
fn non_boolean_filters_and_type_clashes_are_refused() {
    let err = Predicate::parse("amount + 1")
        .unwrap()
        .filter(&batch())
        .unwrap_err()
        .to_string();
    assert!(err.contains("boolean"), "{err}");
    let err = Predicate::parse("country > 5")
        .unwrap()
        .filter(&batch())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot combine Utf8 with Int64"), "{err}");
}

#[test]
fn projection_computes_named_columns_and_wildcards() {
    let mut p = Projection::parse("id, amount * 2 AS double_amount, upper_country")
        .unwrap_or_else(|e| panic!("{e}"));
    let err = p.apply(&batch()).unwrap_err().to_string();
    assert!(err.contains("unknown column `upper_country`"), "{err}");

    let mut p = Projection::parse_items(&["id", "amount * 2 AS double_amount", "qty + 1"]).unwrap();
    let out = p.apply(&batch()).unwrap();
    let names: Vec<_> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["id", "double_amount", "qty + 1"]);
    let doubled = out
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(doubled.value(1), 5000.0);
    assert!(doubled.is_null(2));

    let mut all = Projection::parse("*, id * 10 AS id10").unwrap();
    assert_eq!(all.apply(&batch()).unwrap().num_columns(), 5);
}

#[test]
fn projection_keeps_one_schema_across_batches() {
    let mut p = Projection::parse("id, amount").unwrap();
    let a = p.apply(&batch()).unwrap();
    let b = p.apply(&batch()).unwrap();
    assert!(Arc::ptr_eq(&a.schema(), &b.schema()));
}

/// The column `expr` computes over [`batch`], as text (`None` for `NULL`), and its type.
fn column(expr: &str) -> (Vec<Option<String>>, DataType) {
    let mut p = Projection::parse(expr).unwrap_or_else(|e| panic!("{e}"));
    let out = p.apply(&batch()).unwrap_or_else(|e| panic!("{e}"));
    let array = out.column(0);
    let text = arrow_cast::cast(array, &DataType::Utf8).unwrap();
    let text = text.as_any().downcast_ref::<StringArray>().unwrap();
    (
        text.iter().map(|v| v.map(str::to_owned)).collect(),
        array.data_type().clone(),
    )
}

/// The values of `expr`, `NULL` written as `null`.
fn show(expr: &str) -> Vec<String> {
    column(expr)
        .0
        .into_iter()
        .map(|v| v.unwrap_or_else(|| "null".into()))
        .collect()
}

fn error(expr: &str) -> String {
    match Projection::parse(expr) {
        Err(e) => e.to_string(),
        Ok(mut p) => match p.apply(&batch()) {
            Ok(_) => panic!("`{expr}` evaluated"),
            Err(e) => e.to_string(),
        },
    }
}

#[test]
fn case_picks_the_first_matching_branch_and_defaults_to_null() {
    assert_eq!(
        show("CASE WHEN amount >= 1000 THEN 'high' WHEN amount >= 50 THEN 'mid' ELSE 'low' END"),
        vec!["low", "high", "low", "mid"]
    );
    assert_eq!(
        show("CASE country WHEN 'FR' THEN 1 WHEN 'NG' THEN 2.5 END"),
        vec!["1.0", "2.5", "null", "null"]
    );
    assert_eq!(column("CASE WHEN qty > 5 THEN qty END").1, DataType::Int32);
}

#[test]
fn case_evaluates_a_branch_only_on_its_own_rows() {
    // Integer division by zero fails a batch; CASE keeps the zero row away from it.
    assert_eq!(
        show("CASE WHEN qty - 5 <> 0 THEN 100 / (qty - 5) ELSE -1 END"),
        vec!["-25", "-1", "20", "6"]
    );
    assert_eq!(
        show("IF(qty = 5, 0, 10 / (qty - 5))"),
        vec!["-2", "0", "2", "0"]
    );
}

#[test]
fn coalesce_nullif_greatest_and_least_skip_nulls() {
    assert_eq!(
        show("COALESCE(amount, 0)"),
        vec!["10.0", "2500.0", "0.0", "99.5"]
    );
    assert_eq!(
        show("COALESCE(country, 'none')"),
        vec!["FR", "NG", "KP", "none"]
    );
    assert_eq!(
        show("NULLIF(country, 'NG')"),
        vec!["FR", "null", "KP", "null"]
    );
    assert_eq!(
        show("GREATEST(amount, qty)"),
        vec!["10.0", "2500.0", "10.0", "99.5"]
    );
    assert_eq!(show("LEAST(qty, 7, id)"), vec!["1", "2", "3", "4"]);
    assert!(error("COALESCE(country, 1)").contains("do not mix: Utf8 and Int64"));
}

#[test]
fn cast_fails_on_a_bad_value_and_try_cast_gives_null() {
    assert_eq!(show("TRY_CAST(country AS INT)"), vec!["null"; 4]);
    let err = error("CAST(country AS INT)");
    assert!(
        err.contains("cannot cast to INT") && err.contains("TRY_CAST"),
        "{err}"
    );
    assert_eq!(
        show("CAST('42' AS BIGINT) + id"),
        vec!["43", "44", "45", "46"]
    );
    assert_eq!(
        column("CAST(amount AS DECIMAL(10, 2))").1,
        DataType::Decimal128(10, 2)
    );
    let err = error("CAST(id AS BLOB)");
    assert!(
        err.contains("the type `BLOB`") && err.contains("supported types"),
        "{err}"
    );
}

#[test]
fn text_functions_count_characters_from_one() {
    let b = "Ünïcode";
    assert_eq!(show(&format!("LENGTH('{b}')"))[0], "7");
    assert_eq!(show(&format!("OCTET_LENGTH('{b}')"))[0], "9");
    assert_eq!(show(&format!("SUBSTRING('{b}' FROM 2 FOR 3)"))[0], "nïc");
    assert_eq!(show(&format!("SUBSTR('{b}', 0, 2)"))[0], "Ü");
    assert_eq!(show("SUBSTRING('abc' FROM 2)")[0], "bc");
    assert_eq!(show("UPPER(country)"), vec!["FR", "NG", "KP", "null"]);
    assert_eq!(
        show("LOWER(country) || '-' || id"),
        vec!["fr-1", "ng-2", "kp-3", "null"]
    );
    assert_eq!(
        show("CONCAT(country, '-', id)"),
        vec!["FR-1", "NG-2", "KP-3", "-4"]
    );
    assert_eq!(show("CONCAT_WS('/', '', country, NULL, id)")[0], "/FR/1");
    assert_eq!(show("INITCAP('hello wORLD')")[0], "Hello World");
    assert_eq!(show("TRIM('  x  ')")[0], "x");
    assert_eq!(show("TRIM(LEADING 'x' FROM 'xxaxx')")[0], "axx");
    assert_eq!(show("RTRIM('xxaxx', 'x')")[0], "xxa");
    assert_eq!(show("REPLACE('a-b-c', '-', '+')")[0], "a+b+c");
    assert_eq!(show("POSITION('c' IN 'Übc')")[0], "3");
    assert_eq!(show("STRPOS('abc', 'z')")[0], "0");
    assert_eq!(show("LEFT('abcdef', 2) || RIGHT('abcdef', -4)")[0], "abef");
    assert_eq!(
        show("LPAD(CAST(id AS VARCHAR), 3, '0')"),
        vec!["001", "002", "003", "004"]
    );
    assert_eq!(show("RPAD('ab', 5, 'xy')")[0], "abxyx");
    assert_eq!(show("LPAD('abcdef', 3)")[0], "abc");
    assert_eq!(show("REVERSE('abc') || REPEAT('z', 3)")[0], "cbazzz");
    assert_eq!(
        show("SPLIT_PART('a,b,c', ',', 2) || SPLIT_PART('a,b,c', ',', -1)")[0],
        "bc"
    );
    assert_eq!(
        show("STARTS_WITH(country, 'N')"),
        vec!["false", "true", "false", "null"]
    );
    assert_eq!(show("ENDS_WITH('abc', 'bc')")[0], "true");
}

#[test]
fn group_key_writes_each_combination_of_values_as_the_cast_text_it_replaces() {
    assert_eq!(
        show("GROUP_KEY(id, country, amount)"),
        [
            "1:1,2:FR,4:10.0",
            "1:2,2:NG,6:2500.0",
            "1:3,2:KP,-",
            "1:4,-,4:99.5"
        ]
    );
    assert_eq!(show("GROUP_KEY('été', TRUE)"), ["3:été,4:true"; 4]);
    // Exactly what the text expression planned before it gives, so that a checkpoint keyed by
    // the one is read by the other.
    for columns in [&["id", "country"][..], &["amount", "qty", "country"]] {
        let before: Vec<String> = columns
            .iter()
            .map(|c| {
                let text = format!("CAST({c} AS VARCHAR)");
                format!("COALESCE(CAST(CHAR_LENGTH({text}) AS VARCHAR) || ':' || {text}, '-')")
            })
            .collect();
        assert_eq!(
            show(&format!("GROUP_KEY({})", columns.join(", "))),
            show(&before.join(" || ',' || ")),
            "{columns:?}"
        );
    }
}

#[test]
fn regular_expressions_match_replace_and_extract() {
    assert_eq!(
        show("REGEXP_LIKE(country, '^[FK]')"),
        vec!["true", "false", "true", "null"]
    );
    assert_eq!(show("REGEXP_REPLACE('a1b22c', '[0-9]+', '#')")[0], "a#b#c");
    assert_eq!(
        show("REGEXP_EXTRACT('order-1234-x', '([a-z]+)-([0-9]+)', 2)")[0],
        "1234"
    );
    assert_eq!(show("REGEXP_EXTRACT('abc', '[0-9]+')")[0], "null");
    let err = error("REGEXP_LIKE(country, '(')");
    assert!(err.contains("bad pattern `(`"), "{err}");
    let err = error("REGEXP_EXTRACT('a', '(a)', 3)");
    assert!(err.contains("group 3 does not exist"), "{err}");
}

#[test]
fn text_builders_refuse_values_past_the_limit() {
    let err = error("REPEAT('x', 100000000)");
    assert!(
        err.contains("REPEAT would build a value of 100000000 bytes"),
        "{err}"
    );
    let err = error("LPAD('x', 2000000000)");
    assert!(err.contains("more than the limit of 1048576"), "{err}");
    let err = error("REPLACE(REPEAT('a', 1000000), 'a', 'aaaa')");
    assert!(err.contains("REPLACE would build"), "{err}");
}

#[test]
fn the_text_one_batch_builds_is_bounded_before_it_is_built() {
    // 100 rows of values just under 1 MiB each: 100 MiB for the batch, over the 64 MiB one
    // evaluation may build. Refused, naming the function and the limit.
    let rows = 100;
    let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
    let many =
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["x"; rows]))]).unwrap();
    let apply = |expr: &str| Projection::parse(expr).unwrap().apply(&many);
    let err = apply("REPEAT(s, 1000000)").unwrap_err().to_string();
    assert!(
        err.contains("REPEAT would build more than 64 MiB of text for one batch of 100 rows"),
        "{err}"
    );
    // The budget is the projection's, all columns together: two columns of 40 MiB are over.
    let err = apply("REPEAT(s, 400000) AS a, RPAD(s, 100000) AS b")
        .unwrap_err()
        .to_string();
    assert!(err.contains("RPAD would build more than 64 MiB"), "{err}");
    // Concatenation counts what it joins.
    let err = apply("REPEAT(s, 600000) || REPEAT(s, 600000)")
        .unwrap_err()
        .to_string();
    assert!(err.contains("would build more than 64 MiB"), "{err}");
    // Under the budget, the same functions build what they are asked.
    let out = apply("REPEAT(s, 100000) AS a").unwrap();
    assert_eq!(out.num_rows(), rows);
}

#[test]
fn math_functions_keep_integers_exact_and_compute_doubles_otherwise() {
    assert_eq!(show("ABS(-id)"), vec!["1", "2", "3", "4"]);
    assert_eq!(column("ABS(-id)").1, DataType::Int64);
    assert_eq!(show("ROUND(amount / 3, 2)")[3], "33.17");
    assert_eq!(show("ROUND(2.5) || '/' || ROUND(-2.5)")[0], "3.0/-3.0");
    assert_eq!(show("ROUND(1234, -2)")[0], "1200");
    assert_eq!(show("TRUNC(-7.89, 1)")[0], "-7.8");
    assert_eq!(show("CEIL(99.1) + FLOOR(0.9)")[0], "100.0");
    assert_eq!(show("CEILING(qty)"), vec!["1", "5", "10", "20"]);
    assert_eq!(show("POWER(2, 10)")[0], "1024.0");
    assert_eq!(show("SQRT(16) + LN(1) + LOG10(100) + LOG(2, 8)")[0], "9.0");
    assert_eq!(show("MOD(qty, 3)"), vec!["1", "2", "1", "2"]);
    assert_eq!(
        show("SIGN(amount - 100)"),
        vec!["-1.0", "1.0", "null", "-1.0"]
    );
    assert_eq!(show("SQRT(-1)")[0], "NaN");
    assert!(error("SQRT(country)").contains("argument 1 of SQRT must be a number, got Utf8"));
    assert!(error("ABS(-9223372036854775807 - 1)").contains("overflows BIGINT"));
}

#[test]
fn time_functions_truncate_extract_and_shift_timestamps() {
    let ts = "TIMESTAMP '2024-02-29 13:45:10.250'";
    assert_eq!(
        show(&format!("DATE_TRUNC('hour', {ts})"))[0],
        "2024-02-29T13:00:00"
    );
    assert_eq!(
        show(&format!("FLOOR({ts} TO DAY)"))[0],
        "2024-02-29T00:00:00"
    );
    assert_eq!(
        show(&format!("CEIL({ts} TO MONTH)"))[0],
        "2024-03-01T00:00:00"
    );
    assert_eq!(
        show(&format!("DATE_TRUNC('week', {ts})"))[0],
        "2024-02-26T00:00:00"
    );
    assert_eq!(show(&format!("EXTRACT(YEAR FROM {ts})"))[0], "2024");
    assert_eq!(show(&format!("EXTRACT(DOW FROM {ts})"))[0], "4");
    assert_eq!(
        show(&format!("EXTRACT(HOUR FROM {ts} + INTERVAL '11' HOUR)"))[0],
        "0"
    );
    assert_eq!(
        show(&format!("EXTRACT(EPOCH FROM {ts})"))[0],
        "1709214310.25"
    );
    assert_eq!(
        show(&format!("{ts} - INTERVAL '1 day 45 minutes'"))[0],
        "2024-02-28T13:00:10.250"
    );
    assert_eq!(
        show("TO_TIMESTAMP_MILLIS(id * 1000)"),
        vec![
            "1970-01-01T00:00:01",
            "1970-01-01T00:00:02",
            "1970-01-01T00:00:03",
            "1970-01-01T00:00:04"
        ]
    );
    assert_eq!(
        show("TO_TIMESTAMP('2026-12-03T10:00:00Z')")[0],
        "2026-12-03T10:00:00"
    );
    assert_eq!(show("TO_TIMESTAMP(1.5)")[0], "1970-01-01T00:00:01.500");
    assert_eq!(
        show(&format!("TO_CHAR({ts}, '%Y/%m/%d %Hh')"))[0],
        "2024/02/29 13h"
    );
    assert_eq!(
        show("DATE_TRUNC('month', DATE '2024-02-29')")[0],
        "2024-02-01"
    );
    assert_eq!(
        column("DATE_TRUNC('month', DATE '2024-02-29')").1,
        DataType::Date32
    );
    assert!(
        show(&format!("{ts} > '2024-01-01'"))
            .iter()
            .all(|v| v == "true")
    );

    let err = error("DATE_TRUNC('fortnight', TIMESTAMP '2024-01-01')");
    assert!(
        err.contains("unknown unit 'fortnight'") && err.contains("expected one of"),
        "{err}"
    );
    let err = error("EXTRACT(HOUR FROM id)");
    assert!(
        err.contains("needs a date or timestamp, got Int64") && err.contains("TO_TIMESTAMP_MILLIS"),
        "{err}"
    );
    let err = error("TO_CHAR(TIMESTAMP '2024-01-01', '%Q')");
    assert!(err.contains("bad format '%Q'"), "{err}");
    let err = error("INTERVAL 'soon'");
    assert!(err.contains("is not an interval"), "{err}");
}

#[test]
fn json_paths_and_arrows_read_text_columns() {
    let doc = r#"'{"user": {"name": "ada", "tags": ["x", "y"], "n": 3}, "odd key": true}'"#;
    assert_eq!(show(&format!("JSON_VALUE({doc}, '$.user.name')"))[0], "ada");
    assert_eq!(
        show(&format!("JSON_VALUE({doc}, '$.user.tags[1]')"))[0],
        "y"
    );
    assert_eq!(
        show(&format!("JSON_VALUE({doc}, '$.\"odd key\"')"))[0],
        "true"
    );
    assert_eq!(show(&format!("JSON_VALUE({doc}, '$.user')"))[0], "null");
    assert_eq!(
        show(&format!("JSON_QUERY({doc}, '$.user.tags')"))[0],
        r#"["x","y"]"#
    );
    assert_eq!(
        show(&format!("JSON_EXISTS({doc}, '$.user.missing')"))[0],
        "false"
    );
    assert_eq!(show(&format!("{doc} -> 'user' ->> 'n'"))[0], "3");
    assert_eq!(show(&format!("{doc} -> 'user' -> 'tags' ->> 0"))[0], "x");
    assert_eq!(show("JSON_VALUE('not json', '$.a')")[0], "null");
    let err = error(&format!("JSON_VALUE({doc}, 'user.name')"));
    assert!(err.contains("bad JSON path 'user.name'"), "{err}");
    let err = error("JSON_VALUE(country, country)");
    assert!(err.contains("must be a constant"), "{err}");
}

#[test]
fn distinctness_and_truth_tests_never_give_null() {
    assert_eq!(
        show("amount IS DISTINCT FROM 10"),
        vec!["false", "true", "true", "true"]
    );
    assert_eq!(
        show("country IS NOT DISTINCT FROM NULL"),
        vec!["false", "false", "false", "true"]
    );
    assert_eq!(
        show("(amount > 50) IS TRUE"),
        vec!["false", "true", "false", "true"]
    );
    assert_eq!(
        show("(amount > 50) IS NOT FALSE"),
        vec!["false", "true", "true", "true"]
    );
}

#[test]
fn misuse_of_functions_is_named_with_what_was_expected() {
    let err = error("SUBSTRING('abc')");
    assert!(
        err.contains("SUBSTRING takes 2 or 3 arguments, got 1"),
        "{err}"
    );
    let err = error("UPPER(id)");
    assert!(
        err.contains("argument 1 of UPPER must be text, got Int64"),
        "{err}"
    );
    let err = error("FROBNICATE(id)");
    assert!(err.contains("the function `FROBNICATE`"), "{err}");
    let err = error("SUM(amount)");
    assert!(err.contains("aggregate") && err.contains("window"), "{err}");
    let err = error("NOW()");
    assert!(err.contains("exactly-once"), "{err}");
    let err = error("CURRENT_TIMESTAMP");
    assert!(err.contains("exactly-once"), "{err}");
    let err = error("ROW_NUMBER() OVER (ORDER BY id)");
    assert!(err.contains("OVER"), "{err}");
}

#[test]
fn every_function_types_on_an_empty_batch_as_validation_does() {
    let empty = batch().slice(0, 0);
    for expr in [
        "CASE WHEN amount > 1 THEN UPPER(country) ELSE 'x' END",
        "COALESCE(amount, qty)",
        "JSON_VALUE(country, '$.a')",
        "DATE_TRUNC('day', TO_TIMESTAMP_MILLIS(id))",
        "REGEXP_EXTRACT(country, '([A-Z])', 1)",
        "LPAD(country, 4)",
    ] {
        let mut p = Projection::parse(expr).unwrap();
        let out = p.apply(&empty).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(out.num_rows(), 0);
    }
    // Mistakes show up without a single row.
    for (expr, wanted) in [
        ("REGEXP_LIKE(country, '[')", "bad pattern"),
        ("CASE WHEN id THEN 1 END", "boolean"),
        ("UPPER(qty)", "must be text"),
    ] {
        let err = Projection::parse(expr)
            .unwrap()
            .apply(&empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{expr}: {err}");
    }
}

#[test]
fn shorthand_casts_and_two_argument_null_defaults_work_as_documented() {
    assert_eq!(show("id::VARCHAR || 'x'")[0], "1x");
    assert_eq!(show("IFNULL(amount, -1) + NVL(amount, -1)")[2], "-2.0");
    assert!(error("IFNULL(amount, 1, 2)").contains("IFNULL takes 2 arguments, got 3"));
    // Floating-point division by zero is IEEE; integer division by zero fails the batch.
    assert_eq!(show("amount / 0.0")[0], "inf");
    assert!(error("id / 0").contains("Divide by zero"));
    assert!(error("9223372036854775807 + id").contains("Overflow"));
}

#[test]
fn the_library_knows_its_own_function_names_whatever_their_case() {
    for name in [
        "upper",
        "COALESCE",
        "round",
        "Json_Value",
        "date_trunc",
        "sum",
        "now",
    ] {
        assert!(functions::is_function(name), "{name}");
    }
    for name in ["risk", "tier", "p95", "uppercase"] {
        assert!(!functions::is_function(name), "{name}");
    }
}

#[test]
fn a_projection_reports_whether_it_only_renames_columns() {
    let renaming = Projection::parse_items(&["id", "amount AS a"]).unwrap();
    assert_eq!(
        renaming.renames(),
        Some(vec![("id", "id"), ("amount", "a")])
    );
    let computing = Projection::parse_items(&["id", "amount * 2 AS a"]).unwrap();
    assert_eq!(computing.renames(), None);
    let named = computing.named_items().unwrap();
    assert_eq!(named[0], ("id", "id".to_owned()));
    assert_eq!(named[1].0, "a");
    assert!(named[1].1.contains("amount"), "{named:?}");
    let wildcard = Projection::parse_items(&["*", "id AS i"]).unwrap();
    assert_eq!(wildcard.renames(), None);
    assert_eq!(wildcard.named_items(), None);
}
