//! The SQL compiler: documents it produces and the mistakes it points at.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{Catalog, SqlError, compile};

/// Columns of a declared schema, as the pipeline loader would give them.
pub(super) fn declared(source: &toml::Value, _port: u32) -> Option<SchemaRef> {
    let schema = source.get("schema")?.as_table()?;
    let fields: Vec<Field> = schema
        .iter()
        .map(|(name, ty)| {
            let ty = match ty.as_str().unwrap() {
                "int64" => DataType::Int64,
                "float64" => DataType::Float64,
                "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
                _ => DataType::Utf8,
            };
            Field::new(name, ty, true)
        })
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

pub(super) const TRANSACTIONS: &str = "CREATE TABLE transactions (
    txn_id BIGINT, ts TIMESTAMP(3), card_id BIGINT, amount DOUBLE, country VARCHAR,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'file', 'path' = 'in.jsonl', 'infer_rows' = '10');
CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');
";

/// The strings of a TOML array (edges, select lists, aggregates).
pub(super) fn strings(v: &toml::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect()
}

/// The agent of `doc` whose name ends with `suffix` (`_select`, `_window`…).
pub(super) fn agent_named<'a>(doc: &'a toml::Table, suffix: &str) -> &'a toml::Value {
    doc["agents"]
        .as_table()
        .unwrap()
        .iter()
        .find(|(n, _)| n.ends_with(suffix))
        .unwrap_or_else(|| panic!("no agent named …{suffix}: {doc}"))
        .1
}

/// The first agent of `doc` that runs `module`.
pub(super) fn agent_running<'a>(doc: &'a toml::Table, module: &str) -> &'a toml::Value {
    doc["agents"]
        .as_table()
        .unwrap()
        .values()
        .find(|a| a["module"].as_str() == Some(module))
        .unwrap_or_else(|| panic!("no agent runs {module}: {doc}"))
}

pub(super) fn ok(sql: &str) -> toml::Table {
    compile(
        &format!("{TRANSACTIONS}{sql}"),
        &Catalog::sources(&declared),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn err(sql: &str) -> SqlError {
    match compile(
        &format!("{TRANSACTIONS}{sql}"),
        &Catalog::sources(&declared),
    ) {
        Ok(doc) => panic!("compiled: {doc}"),
        Err(e) => e,
    }
}

#[test]
fn a_filtered_projection_becomes_a_filter_and_a_project_agent() {
    let doc = ok(
        "INSERT INTO out SELECT txn_id, amount * 0.92 AS eur FROM transactions WHERE amount > 1000;",
    );
    let source = &doc["sources"]["transactions"];
    assert_eq!(source["type"].as_str(), Some("file"));
    assert_eq!(
        source["infer_rows"].as_integer(),
        Some(10),
        "numbers written as text become numbers"
    );
    assert_eq!(source["path"].as_str(), Some("in.jsonl"));
    assert_eq!(source["schema"]["amount"].as_str(), Some("float64"));
    assert_eq!(source["event_time"]["column"].as_str(), Some("ts"));
    assert_eq!(
        source["event_time"]["max_out_of_orderness_ms"].as_integer(),
        Some(5000)
    );
    assert_eq!(
        doc["agents"]["out_where"]["module"].as_str(),
        Some("builtin:filter")
    );
    assert_eq!(
        doc["agents"]["out_where"]["config"]["where"].as_str(),
        Some("amount > 1000")
    );
    assert_eq!(
        doc["agents"]["out_select"]["config"]["select"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let edges: Vec<&str> = strings(&doc["edges"]);
    assert_eq!(
        edges,
        [
            "transactions -> out_where",
            "out_where -> out_select",
            "out_select -> out"
        ]
    );
}

#[test]
fn a_windowed_aggregate_becomes_a_window_agent_and_reads_its_columns() {
    let doc = ok("INSERT INTO out
        SELECT card_id, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS minute, COUNT(*) AS n, SUM(amount)
        FROM transactions
        GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE)
        HAVING COUNT(*) > 2;");
    let window = &doc["agents"]["out_window"];
    assert_eq!(window["module"].as_str(), Some("builtin:window"));
    assert_eq!(window["key"].as_str(), Some("card_id"));
    let config = &window["config"];
    assert_eq!(config["kind"].as_str(), Some("tumbling"));
    assert_eq!(config["size_ms"].as_integer(), Some(60_000));
    assert_eq!(config["time"].as_str(), Some("ts"));
    let aggregates: Vec<&str> = config["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(aggregates, ["count(*) AS agg0_", "sum(amount) AS agg1_"]);
    assert_eq!(
        doc["agents"]["out_having"]["config"]["where"].as_str(),
        Some("agg0_ > 2")
    );
    let select: Vec<&str> = strings(&doc["agents"]["out_select"]["config"]["select"]);
    assert_eq!(
        select,
        [
            "card_id",
            "window_start AS minute",
            "agg0_ AS n",
            "agg1_ AS \"SUM(amount)\""
        ]
    );
}

#[test]
fn hop_and_session_windows_take_their_intervals_in_order() {
    let doc = ok(
        "INSERT INTO out SELECT COUNT(*) AS n FROM transactions GROUP BY HOP(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE);",
    );
    let config = &doc["agents"]["out_window"]["config"];
    assert_eq!(
        (
            config["slide_ms"].as_integer(),
            config["size_ms"].as_integer()
        ),
        (Some(10_000), Some(60_000))
    );
    let doc = ok(
        "INSERT INTO out SELECT card_id, MAX(amount) AS top FROM transactions GROUP BY SESSION(ts, INTERVAL '30' SECOND), card_id;",
    );
    assert_eq!(
        doc["agents"]["out_window"]["config"]["gap_ms"].as_integer(),
        Some(30_000)
    );
}

#[test]
fn a_view_is_planned_once_and_shared_by_the_queries_that_read_it() {
    let doc = ok(
        "CREATE VIEW big AS SELECT * FROM transactions WHERE amount > 1000;
        CREATE TABLE out2 WITH ('connector' = 'stdout');
        INSERT INTO out SELECT txn_id FROM big;
        INSERT INTO out2 SELECT t.card_id FROM big AS t WHERE t.country <> 'FR';",
    );
    let edges: Vec<&str> = strings(&doc["edges"]);
    assert_eq!(
        edges,
        [
            "transactions -> big_where",
            "big_where -> out_select",
            "out_select -> out",
            "big_where -> out2_where",
            "out2_where -> out2_select",
            "out2_select -> out2",
        ]
    );
    assert_eq!(
        doc["agents"]["out2_where"]["config"]["where"].as_str(),
        Some("country <> 'FR'")
    );
}

#[test]
fn sink_columns_rename_the_query_columns_in_order() {
    let doc = ok(
        "CREATE TABLE named (id BIGINT, value DOUBLE) WITH ('connector' = 'stdout');
        INSERT INTO named SELECT txn_id, amount FROM transactions;",
    );
    let select: Vec<&str> = strings(&doc["agents"]["named_columns"]["config"]["select"]);
    assert_eq!(select, ["txn_id AS id", "amount AS value"]);
    let e = err(
        "CREATE TABLE named (id BIGINT) WITH ('connector' = 'stdout');
        INSERT INTO named SELECT txn_id, amount FROM transactions;",
    );
    assert!(
        e.message
            .contains("table `named` takes 1 columns (id), the query gives 2 (txn_id, amount)"),
        "{e}"
    );
}

#[test]
fn mistakes_are_reported_at_their_line_and_column_with_a_caret() {
    let e = err("INSERT INTO out SELECT txn_id, amout FROM transactions;");
    assert_eq!((e.line, e.column), (6, 32), "{e}");
    assert!(e.message.contains("unknown column `amout`"), "{e}");
    assert!(e.to_string().contains("6 | INSERT INTO out SELECT txn_id, amout FROM transactions;\n  |                                ^^^^^"), "{e}");

    let e = err("INSERT INTO out SELECT * FROM transactons;");
    assert!(
        e.message
            .contains("no table or view `transactons` (tables and views: transactions, out)"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (6, 31));

    let e = err("INSERT INTO nowhere SELECT * FROM transactions;");
    assert!(
        e.message.contains("no table `nowhere` to insert into"),
        "{e}"
    );

    let e = err("INSERT INTO out SELECT * FROM transactions WHERE amount >> 3;");
    assert_eq!(e.line, 6, "{e}");

    let e = err("INSERT INTO out SELECT txn_id FROM transactions WHERE;");
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.starts_with("expected"), "{e}");

    let e = err(
        "INSERT INTO out SELECT card_id, amount, COUNT(*) FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    assert!(
        e.message.contains("unknown column `amount`")
            && e.message.contains("grouped or inside an aggregate"),
        "{e}"
    );

    let e = err("INSERT INTO out SELECT card_id, COUNT(*) FROM transactions GROUP BY card_id;");
    assert_eq!((e.line, e.column), (6, 13), "{e}");
    assert!(
        e.message
            .contains("table `out` (connector 'file') can only append, and the query is updating"),
        "{e}"
    );

    let e = err(
        "INSERT INTO out SELECT COUNT(*) FROM transactions GROUP BY TUMBLE(txn_id, INTERVAL '1' MINUTE);",
    );
    assert!(
        e.message
            .contains("windows are on the event-time column, `ts`, not `txn_id`"),
        "{e}"
    );

    let e = err(
        "INSERT INTO out SELECT COUNT(*) FROM transactions GROUP BY TUMBLE(ts, INTERVAL '1' MONTH);",
    );
    assert!(e.message.contains("no fixed length"), "{e}");

    let e = err("INSERT INTO out SELECT * FROM transactions ORDER BY ts;");
    assert!(e.message.contains("unbounded stream"), "{e}");

    let e = err("SELECT * FROM transactions;");
    assert!(e.message.contains("nowhere to go"), "{e}");

    let e = err("INSERT INTO out SELECT * FROM transactions JOIN out ON true;");
    assert!(
        e.message.contains("unsupported join condition `true`"),
        "{e}"
    );

    let e = err("INSERT INTO transactions SELECT * FROM transactions;");
    assert!(e.message.contains("cannot also be written"), "{e}");

    let e = err("CREATE MATERIALIZED VIEW m AS SELECT * FROM transactions;");
    assert!(
        e.message
            .contains("materialized view `m` keeps one row per key, so its query needs GROUP BY"),
        "{e}"
    );

    let e = err("DROP TABLE out;");
    assert!(
        e.message
            .contains("unsupported statement `DROP TABLE out …`"),
        "{e}"
    );

    let e = compile(
        "CREATE TABLE t (a BIGINT) WITH ('path' = 'x');",
        &Catalog::sources(&declared),
    )
    .unwrap_err();
    assert!(e.message.contains("table `t` has no connector"), "{e}");

    let e = compile(
        "CREATE TABLE t (a BIGINT, WATERMARK FOR b AS b) WITH ('connector' = 'file');",
        &Catalog::sources(&declared),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("the watermark's column `b` is not one of its columns"),
        "{e}"
    );

    let e = compile(
        "CREATE TABLE t (a BIGINT, WATERMARK FOR a AS a + 1) WITH ('connector' = 'file');",
        &Catalog::sources(&declared),
    )
    .unwrap_err();
    assert!(e.message.contains("WATERMARK FOR column AS column"), "{e}");
}

#[test]
fn nothing_to_write_and_an_empty_file_are_refused() {
    let e = compile("", &Catalog::sources(&declared)).unwrap_err();
    assert!(e.message.contains("no INSERT INTO"), "{e}");
    let e = compile(TRANSACTIONS, &Catalog::sources(&declared)).unwrap_err();
    assert!(e.message.contains("no INSERT INTO"), "{e}");
}

#[test]
fn a_file_of_too_many_statements_is_refused() {
    let many = "CREATE VIEW v AS SELECT 1;".repeat(super::MAX_STATEMENTS + 1);
    let e = compile(&many, &Catalog::sources(&declared)).unwrap_err();
    assert!(e.message.contains("at most 1000"), "{e}");
}

#[test]
fn nexmark_tables_of_one_sequence_share_one_generator_on_their_ports() {
    let doc = compile(
        "CREATE TABLE bid WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 1000);
         CREATE TABLE auction WITH ('connector' = 'nexmark', 'kind' = 'auction', 'count' = 1000);
         CREATE TABLE a WITH ('connector' = 'blackhole');
         CREATE TABLE b WITH ('connector' = 'blackhole');
         INSERT INTO a SELECT * FROM bid;
         INSERT INTO b SELECT * FROM auction;",
        &Catalog::sources(&declared),
    )
    .unwrap();
    let sources = doc["sources"].as_table().unwrap();
    assert_eq!(sources.len(), 1, "{doc}");
    assert_eq!(sources["nexmark"]["type"].as_str(), Some("nexmark"));
    assert!(sources["nexmark"].get("kind").is_none());
    let edges: Vec<&str> = strings(&doc["edges"]);
    assert_eq!(edges, ["nexmark:2 -> a", "nexmark:1 -> b"]);

    let e = compile(
        "CREATE TABLE bid WITH ('connector' = 'nexmark');
         CREATE TABLE a WITH ('connector' = 'blackhole');
         INSERT INTO a SELECT * FROM bid;",
        &Catalog::sources(&declared),
    )
    .unwrap_err();
    assert!(
        e.message.contains("'kind' = 'person' | 'auction' | 'bid'"),
        "{e}"
    );
}

#[test]
fn set_changes_pipeline_settings_and_refuses_unknown_ones() {
    let doc = ok(
        "SET batch_size = 1024; SET checkpoint.interval_ms = '500'; SET name = '42';
        INSERT INTO out SELECT * FROM transactions;",
    );
    let settings = &doc["pipeline"];
    assert_eq!(settings["batch_size"].as_integer(), Some(1024));
    assert_eq!(
        settings["checkpoint"]["interval_ms"].as_integer(),
        Some(500)
    );
    assert_eq!(settings["name"].as_str(), Some("42"), "a name stays text");
    let e = err("SET batch_sise = 10; INSERT INTO out SELECT * FROM transactions;");
    assert!(e.message.contains("unknown setting `batch_sise`"), "{e}");
    assert_eq!(e.line, 6);
}

#[test]
fn union_all_feeds_both_sides_into_what_reads_it_and_refuses_mismatched_sides() {
    let doc = ok(
        "CREATE VIEW big AS SELECT txn_id, amount FROM transactions WHERE amount > 1000
          UNION ALL SELECT txn_id, amount FROM transactions WHERE country = 'KP';
        INSERT INTO out SELECT txn_id FROM big;",
    );
    let edges: Vec<&str> = strings(&doc["edges"]);
    assert_eq!(
        edges,
        [
            "transactions -> big_where",
            "big_where -> big_select",
            "transactions -> big_where_2",
            "big_where_2 -> big_select_2",
            "big_select -> out_select",
            "big_select_2 -> out_select",
            "out_select -> out",
        ]
    );
    let e = err(
        "INSERT INTO out SELECT txn_id FROM transactions UNION ALL SELECT amount FROM transactions;",
    );
    assert!(
        e.message
            .contains("the sides of UNION ALL differ: (txn_id Int64) and (amount Float64)"),
        "{e}"
    );
    let e = err(
        "INSERT INTO out SELECT txn_id FROM transactions UNION SELECT txn_id FROM transactions;",
    );
    assert!(e.message.contains("use UNION ALL"), "{e}");
}

#[test]
fn joins_are_temporal_or_bounded_in_time_and_resolve_qualified_columns() {
    let quotes =
        "CREATE TABLE quotes (country VARCHAR, at TIMESTAMP, amount DOUBLE, WATERMARK FOR at AS at)
        WITH ('connector' = 'file', 'path' = 'q.jsonl');";
    let doc = ok(&format!("{quotes}
        INSERT INTO out SELECT t.txn_id, q.amount AS quoted, t.amount
        FROM transactions AS t JOIN quotes FOR SYSTEM_TIME AS OF t.ts AS q ON t.country = q.country;"));
    let join = &doc["agents"]["out_join"];
    assert_eq!(join["module"].as_str(), Some("builtin:join"));
    assert_eq!(join["key"].as_str(), Some("country"));
    assert_eq!(join["config"]["kind"].as_str(), Some("temporal"));
    assert_eq!(join["config"]["right_time"].as_str(), Some("at"));
    let select: Vec<&str> = strings(&doc["agents"]["out_select"]["config"]["select"]);
    assert_eq!(
        select,
        ["txn_id", "right_amount AS quoted", "amount"],
        "q.amount collides with t.amount"
    );
    let edges: Vec<&str> = strings(&doc["edges"]);
    let into_join: Vec<&str> = edges
        .iter()
        .copied()
        .filter(|e| e.ends_with("-> out_join"))
        .collect();
    assert_eq!(
        into_join,
        ["out_columns -> out_join", "quotes -> out_join"],
        "the left side is input 0"
    );
    // Only the columns the query names (and the event time) cross the join.
    assert_eq!(
        strings(&doc["agents"]["out_columns"]["config"]["select"]),
        ["txn_id", "ts", "amount", "country"],
        "{doc}"
    );

    let doc = ok(&format!("{quotes}
        INSERT INTO out SELECT t.txn_id FROM transactions AS t JOIN quotes AS q
        ON t.country = q.country AND q.at BETWEEN t.ts - INTERVAL '5' SECOND AND t.ts + INTERVAL '1' MINUTE;"));
    let config = &doc["agents"]["out_join"]["config"];
    assert_eq!(config["kind"].as_str(), Some("interval"));
    assert_eq!(
        (
            config["lower_ms"].as_integer(),
            config["upper_ms"].as_integer()
        ),
        (Some(-5_000), Some(60_000))
    );

    let e = err(&format!(
        "{quotes} INSERT INTO out SELECT * FROM transactions AS t JOIN quotes AS q ON t.country = q.country;"
    ));
    assert!(e.message.contains("FOR SYSTEM_TIME AS OF left.time"), "{e}");
    let e = err(&format!(
        "{quotes} INSERT INTO out SELECT * FROM transactions AS t LEFT JOIN quotes AS q ON t.country = q.country;"
    ));
    assert!(e.message.contains("only inner joins"), "{e}");
    let e = err(&format!(
        "{quotes} INSERT INTO out SELECT * FROM transactions AS t JOIN quotes FOR SYSTEM_TIME AS OF t.txn_id AS q ON t.country = q.country;"
    ));
    assert!(
        e.message
            .contains("the left side's event-time column, `ts`"),
        "{e}"
    );
    let e = err(&format!(
        "{quotes} INSERT INTO out SELECT * FROM transactions AS t JOIN quotes FOR SYSTEM_TIME AS OF t.ts AS q ON t.country = q.amount;"
    ));
    assert!(e.message.contains("one name on both sides"), "{e}");
    let e = err("INSERT INTO out SELECT * FROM transactions FOR SYSTEM_TIME AS OF ts;");
    assert!(
        e.message
            .contains("belongs after the right table of a JOIN"),
        "{e}"
    );
}

#[test]
fn a_hostile_file_of_deep_nesting_is_refused_without_exhausting_the_stack() {
    let deep = format!(
        "INSERT INTO out SELECT {}1{} AS x FROM transactions;",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let e = err(&deep);
    assert!(e.message.contains("recursion limit"), "{}", e.message);
    let e = compile(&"(".repeat(1_000_000), &Catalog::sources(&declared)).unwrap_err();
    assert!(!e.message.is_empty());
}

#[test]
fn a_hostile_chain_of_views_is_refused_without_exhausting_the_stack() {
    let chain = |n: usize| {
        let mut sql = String::from("CREATE VIEW v0 AS SELECT amount AS a FROM transactions;\n");
        for i in 1..n {
            sql += &format!("CREATE VIEW v{i} AS SELECT a FROM v{};\n", i - 1);
        }
        sql + &format!("INSERT INTO out SELECT a FROM v{};", n - 1)
    };
    ok(&chain(super::source::MAX_VIEW_DEPTH));
    // Run where a server plans SQL: a blocking-pool thread of tokio's default 2 MiB stack.
    let e = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || err(&chain(990)))
        .unwrap()
        .join()
        .unwrap();
    assert!(e.message.contains("more than 64 views"), "{}", e.message);
}

const CHANGES: &str = "CREATE TABLE changes WITH ('connector' = 'kafka', 'bootstrap' = '127.0.0.1:9092', 'topic' = 'totals', 'key' = 'card_id');\n";

#[test]
fn a_group_by_without_a_window_is_an_updating_aggregate_whose_having_deletes() {
    let doc = ok(&format!(
        "{CHANGES}INSERT INTO changes SELECT card_id, COUNT(*) AS n, SUM(amount) AS total FROM transactions GROUP BY card_id HAVING SUM(amount) < 1000;"
    ));
    let agents = &doc["agents"];
    let aggregate = &agents["changes_aggregate"];
    assert_eq!(aggregate["module"].as_str(), Some("builtin:aggregate"));
    assert_eq!(aggregate["key"].as_str(), Some("card_id"));
    assert_eq!(
        strings(&aggregate["config"]["aggregates"]),
        ["count(*) AS agg0_", "sum(amount) AS agg1_"]
    );
    assert_eq!(aggregate["config"]["time"].as_str(), Some("ts"));
    // HAVING remembers, per key, what it let through: partitioned and configured by the key.
    let having = &agents["changes_having"];
    assert_eq!(having["key"].as_str(), Some("card_id"));
    assert_eq!(having["config"]["key"].as_str(), Some("card_id"));
    assert_eq!(having["config"]["where"].as_str(), Some("agg1_ < 1000"));
    assert_eq!(
        strings(&doc["edges"]),
        [
            "transactions -> changes_aggregate",
            "changes_aggregate -> changes_having",
            "changes_having -> changes_select",
            "changes_select -> changes"
        ]
    );
}

#[test]
fn an_updating_query_goes_only_where_its_upserts_and_deletes_can_be_applied() {
    let updating = "SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id";
    // Kafka: keyed by the group column, or refused with what to set.
    let e = err(&format!(
        "CREATE TABLE t WITH ('connector' = 'kafka', 'bootstrap' = 'b:1', 'topic' = 't');\nINSERT INTO t {updating};"
    ));
    assert!(
        e.message.contains("table `t` needs 'key' = 'card_id'"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (7, 13), "{e}");
    let e = err(&format!(
        "CREATE TABLE t WITH ('connector' = 'kafka', 'bootstrap' = 'b:1', 'topic' = 't', 'key' = 'country');\nINSERT INTO t {updating};"
    ));
    assert!(
        e.message.contains("table `t` is keyed by `country`") && e.message.contains("by `card_id`"),
        "{e}"
    );
    // stdout prints the changes.
    ok(&format!(
        "CREATE TABLE s WITH ('connector' = 'stdout');\nINSERT INTO s {updating};"
    ));
    // The group column must survive the projection under its name.
    let e = err(&format!(
        "{CHANGES}INSERT INTO changes SELECT COUNT(*) AS n FROM transactions GROUP BY card_id;"
    ));
    assert!(
        e.message
            .contains("must select its group column `card_id` under its own name"),
        "{e}"
    );
    // What cannot read a changelog says so.
    let e = err(&format!(
        "CREATE VIEW totals AS {updating};\nINSERT INTO out SELECT card_id, COUNT(*) FROM totals GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);"
    ));
    assert!(
        e.message.contains("over an updating query") && e.message.contains("not supported"),
        "{e}"
    );
    // An aggregate of an updating query takes each changed row back out of its group.
    let doc = ok(&format!(
        "CREATE VIEW totals AS {updating};\nCREATE TABLE changes2 WITH ('connector' = 'stdout');\nINSERT INTO changes2 SELECT n, COUNT(*) AS cards FROM totals GROUP BY n;"
    ));
    let again = &doc["agents"]
        .as_table()
        .unwrap()
        .values()
        .rfind(|a| a["module"].as_str() == Some("builtin:aggregate"))
        .unwrap()["config"];
    assert_eq!(again["changelog_key"].as_str(), Some("card_id"), "{doc}");
    let e = err(&format!(
        "CREATE VIEW totals AS {updating};\nCREATE TABLE changes2 WITH ('connector' = 'stdout');\nINSERT INTO changes2 SELECT n, MAX(card_id) AS top FROM totals GROUP BY n;"
    ));
    assert!(
        e.message.contains("COUNT, SUM and AVG can do and MIN, MAX"),
        "{e}"
    );
    let e = err(&format!(
        "CREATE VIEW totals AS {updating};\nINSERT INTO out SELECT * FROM transactions UNION ALL SELECT * FROM totals;"
    ));
    assert!(e.message.contains("UNION ALL of an updating query"), "{e}");
}

#[test]
fn a_materialized_view_keeps_one_row_per_key_and_one_per_window_of_a_key() {
    let doc = ok(
        "CREATE MATERIALIZED VIEW totals AS SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id;
CREATE MATERIALIZED VIEW per_minute AS SELECT country, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS window_start, COUNT(*) AS n FROM transactions GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    let totals = &doc["agents"]["totals"];
    assert_eq!(totals["module"].as_str(), Some("builtin:view"));
    assert_eq!(totals["key"].as_str(), Some("card_id"));
    assert_eq!(totals["config"]["key"].as_str(), Some("card_id"));
    assert!(totals["config"].get("sub_key").is_none());
    let per_minute = &doc["agents"]["per_minute"];
    assert_eq!(
        per_minute["config"]["sub_key"].as_str(),
        Some("window_start")
    );
    // A view is an output: no sink is needed.
    assert!(doc["sinks"].as_table().unwrap().is_empty());

    let e = err(
        "CREATE MATERIALIZED VIEW out AS SELECT card_id, COUNT(*) FROM transactions GROUP BY card_id;",
    );
    assert!(e.message.contains("`out` is declared twice"), "{e}");
    let e = err(
        "CREATE MATERIALIZED VIEW m AS SELECT COUNT(*) AS n, MAX(card_id) AS c FROM transactions GROUP BY card_id;",
    );
    assert!(e.message.contains("group column `card_id`"), "{e}");
}

#[test]
fn aggregates_of_expressions_are_computed_by_a_projection_before_the_aggregate() {
    let doc = ok(
        "INSERT INTO out SELECT country, SUM(amount * 0.92) AS eur, COUNT(CASE WHEN amount > 1000 THEN 1 END) AS big, MAX(amount * 0.92) AS largest
         FROM transactions GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    let agents = &doc["agents"];
    let inputs = &agents["out_inputs"];
    assert_eq!(inputs["module"].as_str(), Some("builtin:project"));
    // One column per distinct expression, the input's columns kept (the key, the event time).
    assert_eq!(
        strings(&inputs["config"]["select"]),
        [
            "*",
            "amount * 0.92 AS aggin0_",
            "CASE WHEN amount > 1000 THEN 1 END AS aggin1_"
        ]
    );
    assert_eq!(
        strings(&agents["out_window"]["config"]["aggregates"]),
        [
            "sum(aggin0_) AS agg0_",
            "count(aggin1_) AS agg1_",
            "max(aggin0_) AS agg2_"
        ]
    );
    assert_eq!(
        strings(&doc["edges"])[..2],
        ["transactions -> out_inputs", "out_inputs -> out_window"]
    );

    let e = err(
        "INSERT INTO out SELECT country, SUM(amout * 2) FROM transactions GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    assert!(e.message.contains("unknown column `amout`"), "{e}");
    assert_eq!((e.line, e.column), (6, 37), "{e}");
    let e = err(
        "INSERT INTO out SELECT country, SUM(COUNT(*) + 1) FROM transactions GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    assert!(e.message.contains("SUM of an aggregate"), "{e}");
}

#[test]
fn several_group_columns_are_one_composite_key_and_come_back_as_columns() {
    let doc = ok(
        "INSERT INTO out SELECT country, card_id, window_start, COUNT(*) AS n FROM transactions GROUP BY country, card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    let inputs = agent_named(&doc, "_inputs");
    let items = strings(&inputs["config"]["select"]);
    assert_eq!(items[0], "*");
    assert_eq!(
        items[1],
        "GROUP_KEY(\"country\", \"card_id\") AS group_key_"
    );
    let window = agent_named(&doc, "_window");
    assert_eq!(window["key"].as_str(), Some("group_key_"));
    assert_eq!(window["config"]["key"].as_str(), Some("group_key_"));
    assert_eq!(
        strings(&window["config"]["aggregates"]),
        [
            "count(*) AS agg0_",
            "first(country) AS country",
            "first(card_id) AS card_id"
        ]
    );
    let select = agent_named(&doc, "_select");
    assert_eq!(
        strings(&select["config"]["select"]),
        ["country", "card_id", "window_start", "agg0_ AS n"]
    );

    for (sql, expected) in [
        (
            "INSERT INTO out SELECT country, card_id, COUNT(*) AS n FROM transactions GROUP BY country, card_id;",
            "GROUP BY several columns needs a window",
        ),
        (
            "INSERT INTO out SELECT country, COUNT(*) AS n FROM transactions GROUP BY country, country, TUMBLE(ts, INTERVAL '1' MINUTE);",
            "`country` is grouped by twice",
        ),
        (
            "INSERT INTO out SELECT country, COUNT(*) AS n FROM transactions GROUP BY country, nope, TUMBLE(ts, INTERVAL '1' MINUTE);",
            "no column `nope` to group by",
        ),
    ] {
        let e = err(sql);
        assert!(e.message.contains(expected), "{sql}: {e}");
    }
}

#[test]
fn a_materialized_view_is_read_by_later_queries_as_the_rows_it_keeps() {
    let doc = ok("CREATE MATERIALIZED VIEW per_minute AS
         SELECT card_id, window_start, COUNT(*) AS n FROM transactions
         GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);
         CREATE MATERIALIZED VIEW busy AS SELECT card_id, COUNT(*) AS minutes FROM per_minute WHERE n > 2 GROUP BY card_id;
         INSERT INTO out SELECT card_id, n FROM per_minute WHERE n > 5;");
    let edges = strings(&doc["edges"]);
    let source = edges
        .iter()
        .find(|e| e.ends_with(" -> per_minute"))
        .map(|e| e.trim_end_matches(" -> per_minute"))
        .unwrap();
    // The view and the queries that read it share the nodes of its query.
    assert!(
        edges.contains(&format!("{source} -> busy_where").as_str()),
        "{edges:?}"
    );
    assert!(
        edges.contains(&format!("{source} -> out_where").as_str()),
        "{edges:?}"
    );
    assert_eq!(
        doc["agents"]["busy"]["module"].as_str(),
        Some("builtin:view")
    );

    // An updating view is a changelog: what reads it goes where changes are applied.
    let e = err("CREATE MATERIALIZED VIEW totals AS SELECT card_id, SUM(amount) AS total FROM transactions GROUP BY card_id;
         INSERT INTO out SELECT card_id, total FROM totals;");
    assert!(e.message.contains("can only append"), "{e}");
    let e = err("CREATE MATERIALIZED VIEW a AS SELECT card_id, COUNT(*) AS n FROM b GROUP BY card_id;
         CREATE MATERIALIZED VIEW b AS SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id;");
    assert!(
        e.message
            .contains("materialized view `b` is read before it is declared"),
        "{e}"
    );
    let e =
        err("CREATE MATERIALIZED VIEW a AS SELECT card_id, COUNT(*) AS n FROM a GROUP BY card_id;");
    assert!(e.message.contains("view `a` reads itself"), "{e}");
}

#[test]
fn a_lookup_join_reads_the_right_side_as_it_stands_and_applies_a_changelog() {
    let doc = ok("CREATE VIEW totals AS SELECT card_id, SUM(amount) AS total FROM transactions GROUP BY card_id HAVING SUM(amount) < 5000;
         INSERT INTO out SELECT t.txn_id, t.card_id, c.total FROM transactions AS t
         JOIN totals FOR SYSTEM_TIME AS OF PROCTIME() AS c ON t.card_id = c.card_id;");
    let join = agent_named(&doc, "_join");
    assert_eq!(join["config"]["kind"].as_str(), Some("lookup"));
    assert_eq!(join["config"]["op"].as_str(), Some("_op"));
    let select = agent_named(&doc, "out_select");
    assert_eq!(
        strings(&select["config"]["select"]),
        ["txn_id", "card_id", "total"]
    );
    // Over two append-only tables, no `op`; a changelog on the left is refused.
    let e = err("CREATE VIEW totals AS SELECT card_id, SUM(amount) AS total FROM transactions GROUP BY card_id;
         INSERT INTO out SELECT c.card_id, t.amount FROM totals AS c
         JOIN transactions FOR SYSTEM_TIME AS OF PROCTIME() AS t ON c.card_id = t.card_id;");
    assert!(
        e.message
            .contains("except as the right side of a lookup join"),
        "{e}"
    );
}

#[test]
fn a_group_by_of_an_interval_joins_key_is_folded_into_the_join() {
    let tables =
        "CREATE TABLE quotes (country VARCHAR, at TIMESTAMP, amount DOUBLE, WATERMARK FOR at AS at)
        WITH ('connector' = 'file', 'path' = 'q.jsonl');
        CREATE TABLE sink WITH ('connector' = 'blackhole');
        CREATE VIEW pairs AS SELECT t.country, t.amount, q.amount AS quoted, t.card_id
        FROM transactions AS t JOIN quotes AS q
        ON t.country = q.country AND q.at BETWEEN t.ts AND t.ts + INTERVAL '1' MINUTE;";
    let doc = ok(&format!(
        "{tables}
        INSERT INTO sink SELECT country, COUNT(*) AS n, MAX(quoted) AS best,
            FIRST_VALUE(card_id) AS card, AVG(amount) AS average
        FROM pairs GROUP BY country HAVING COUNT(*) > 1;"
    ));
    let modules: Vec<&str> = doc["agents"]
        .as_table()
        .unwrap()
        .values()
        .map(|a| a["module"].as_str().unwrap())
        .collect();
    assert!(!modules.contains(&"builtin:aggregate"), "{doc}");
    assert_eq!(
        modules.iter().filter(|m| **m == "builtin:join").count(),
        1,
        "the join planned first is removed: {doc}"
    );
    let join = agent_running(&doc, "builtin:join");
    assert_eq!(join["key"].as_str(), Some("country"));
    assert_eq!(
        strings(&join["config"]["aggregates"]),
        [
            "count(*) AS agg0_",
            "max(right.amount) AS agg1_",
            "first(left.card_id) AS agg2_",
            "mean(left.amount) AS agg3_"
        ],
        "`quoted` is the right side's `amount`: {doc}"
    );
    assert_eq!(join["config"]["kind"].as_str(), Some("interval"));
    // It keeps only the columns its aggregates read, so it reads the table, not a projection
    // that pruned its columns for the join of pairs.
    assert!(
        strings(&doc["edges"]).contains(&"transactions -> sink_aggregate"),
        "{doc}"
    );
    assert!(
        !doc["agents"]
            .as_table()
            .unwrap()
            .keys()
            .any(|k| k.ends_with("_columns")),
        "{doc}"
    );
    // HAVING and the select list read its output as they would the aggregate's.
    assert!(
        doc["agents"]
            .as_table()
            .unwrap()
            .keys()
            .any(|k| k.ends_with("_having")),
        "{doc}"
    );

    // Not the join's key, an aggregate of an expression, a filter between: planned as written.
    for query in [
        "SELECT card_id, COUNT(*) AS n FROM pairs GROUP BY card_id",
        "SELECT country, SUM(amount * 2) AS n FROM pairs GROUP BY country",
        "SELECT country, COUNT(*) AS n FROM pairs WHERE amount > 1 GROUP BY country",
    ] {
        let doc = ok(&format!("{tables} INSERT INTO sink {query};"));
        let join = agent_running(&doc, "builtin:join");
        assert!(join["config"].get("aggregates").is_none(), "{query}: {doc}");
        agent_running(&doc, "builtin:aggregate");
    }

    // A join also read as pairs keeps its join beside the grouped one.
    let doc = ok(&format!(
        "{tables}
        CREATE TABLE raw WITH ('connector' = 'blackhole');
        INSERT INTO sink SELECT country, COUNT(*) AS n FROM pairs GROUP BY country;
        INSERT INTO raw SELECT * FROM pairs;"
    ));
    let joins: Vec<&toml::Value> = doc["agents"]
        .as_table()
        .unwrap()
        .values()
        .filter(|a| a["module"].as_str() == Some("builtin:join"))
        .collect();
    assert_eq!(joins.len(), 2, "{doc}");
    assert_eq!(
        joins
            .iter()
            .filter(|j| j["config"].get("aggregates").is_some())
            .count(),
        1,
        "{doc}"
    );
}

/// Orders, each with a unique id and a due time, and the payments that settle them.
const ORDERS: &str =
    "CREATE TABLE orders (id BIGINT, ts TIMESTAMP(3), due TIMESTAMP(3), region VARCHAR,
        PRIMARY KEY (id) NOT ENFORCED, WATERMARK FOR ts AS ts)
    WITH ('connector' = 'file', 'path' = 'o.jsonl');
    CREATE TABLE payments (order_id BIGINT, at TIMESTAMP(3), paid DOUBLE, WATERMARK FOR at AS at)
    WITH ('connector' = 'file', 'path' = 'p.jsonl');
    CREATE TABLE totals WITH ('connector' = 'blackhole');
    CREATE VIEW placed AS SELECT id AS order_id, ts, due, region FROM orders;
    CREATE VIEW settled AS
    SELECT o.order_id, FIRST_VALUE(o.region) AS region, SUM(p.paid) AS paid
    FROM placed AS o JOIN payments AS p ON o.order_id = p.order_id AND p.at BETWEEN o.ts AND o.due
    GROUP BY o.order_id;
    INSERT INTO totals SELECT region, SUM(paid) AS paid FROM settled GROUP BY region;";

#[test]
fn a_join_grouped_by_its_left_tables_primary_key_emits_final_rows_an_append_only_sink_takes() {
    let doc = ok(&format!(
        "{ORDERS}\nINSERT INTO out SELECT order_id, region, paid FROM settled;"
    ));
    let join = agent_running(&doc, "builtin:join");
    assert_eq!(join["config"]["left_unique"].as_bool(), Some(true), "{doc}");
    // The average reads final rows: no changelog to take back.
    let total = agent_running(&doc, "builtin:aggregate");
    assert!(total["config"].get("changelog_key").is_none(), "{doc}");

    // Without the primary key the grouped join's rows are upserts: a file cannot take them,
    // and the aggregate after it takes an order's earlier value back.
    let without = ORDERS.replace("PRIMARY KEY (id) NOT ENFORCED, ", "");
    let e = err(&format!(
        "{without}\nINSERT INTO out SELECT order_id, region, paid FROM settled;"
    ));
    assert!(e.message.contains("can only append"), "{e}");
    let doc = ok(&without);
    let join = agent_running(&doc, "builtin:join");
    assert!(join["config"].get("left_unique").is_none(), "{doc}");
    let total = agent_running(&doc, "builtin:aggregate");
    assert_eq!(
        total["config"]["changelog_key"].as_str(),
        Some("order_id"),
        "{doc}"
    );

    // A key that is not the join's: the join's rows are not final.
    let other = ORDERS.replace("PRIMARY KEY (id)", "PRIMARY KEY (region)");
    let doc = ok(&other);
    let join = agent_running(&doc, "builtin:join");
    assert!(join["config"].get("left_unique").is_none(), "{doc}");

    // The key declared on its column is the same key.
    let inline = ORDERS
        .replace("PRIMARY KEY (id) NOT ENFORCED, ", "")
        .replace("(id BIGINT,", "(id BIGINT PRIMARY KEY NOT ENFORCED,");
    let doc = ok(&format!(
        "{inline}\nINSERT INTO out SELECT order_id, region, paid FROM settled;"
    ));
    let join = agent_running(&doc, "builtin:join");
    assert_eq!(join["config"]["left_unique"].as_bool(), Some(true), "{doc}");
}

#[test]
fn a_primary_key_must_be_one_declared_column_not_enforced_on_a_table_that_is_read() {
    for (from, to, says) in [
        (
            "PRIMARY KEY (id) NOT ENFORCED",
            "PRIMARY KEY (id)",
            "table `orders`: Sabot does not check that rows' keys differ, so the primary key must say so: PRIMARY KEY (id) NOT ENFORCED",
        ),
        (
            "PRIMARY KEY (id) NOT ENFORCED",
            "PRIMARY KEY (id, region) NOT ENFORCED",
            "table `orders`: a primary key of 2 columns is not supported",
        ),
        (
            "PRIMARY KEY (id) NOT ENFORCED",
            "PRIMARY KEY (ident) NOT ENFORCED",
            "table `orders`: the primary key `ident` is not one of its columns",
        ),
        (
            "PRIMARY KEY (id) NOT ENFORCED",
            "PRIMARY KEY (id) NOT ENFORCED, UNIQUE (region)",
            "table `orders`: `UNIQUE (region)` is not supported; a table takes one constraint, PRIMARY KEY (column) NOT ENFORCED",
        ),
        (
            "PRIMARY KEY (id) NOT ENFORCED",
            "PRIMARY KEY (id) NOT ENFORCED, PRIMARY KEY (region) NOT ENFORCED",
            "table `orders` has one primary key; this is a second",
        ),
        (
            "(id BIGINT,",
            "(id BIGINT PRIMARY KEY,",
            "table `orders`: Sabot does not check that rows' keys differ, so the primary key must say so: PRIMARY KEY (id) NOT ENFORCED",
        ),
        (
            "(id BIGINT,",
            "(id BIGINT PRIMARY KEY NOT ENFORCED,",
            "table `orders` has one primary key; this is a second",
        ),
        (
            "(id BIGINT,",
            "(id BIGINT NOT NULL,",
            "table `orders`, column `id`: column options (NOT NULL, DEFAULT, …) are not supported; a column takes PRIMARY KEY NOT ENFORCED",
        ),
        (
            "CREATE TABLE totals WITH",
            "CREATE TABLE totals (PRIMARY KEY (region) NOT ENFORCED) WITH",
            "table `totals` is written: a primary key tells the planner which column no two rows of a table it reads share; a sink's rows are keyed by its 'key' option (e.g. 'key' = 'region')",
        ),
    ] {
        let sql = ORDERS.replace(from, to);
        let e = err(&sql);
        assert!(e.message.contains(says), "{to}: {e}");
        // On the line of the text that says it (the file begins with TRANSACTIONS' lines): a
        // second primary key is the one written after the first.
        let at = if says.ends_with("this is a second") && to.starts_with("(id") {
            "PRIMARY KEY (id) NOT ENFORCED, WATERMARK"
        } else {
            to
        };
        let before = sql[..sql.find(at).unwrap()].matches('\n').count();
        assert_eq!(
            e.line as usize,
            TRANSACTIONS.lines().count() + 1 + before,
            "{to}: {e}"
        );
    }
}
