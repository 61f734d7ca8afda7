//! SQL pipelines: a `.sql` file compiles to the pipeline document a TOML file would hold, and
//! from there runs through the same validation, secrets, confinement and runtime.
//!
//! ```sql
//! CREATE TABLE transactions (
//!     txn_id BIGINT, ts TIMESTAMP, card_id BIGINT, amount DOUBLE, country VARCHAR,
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
//! ) WITH ('connector' = 'file', 'path' = 'transactions.jsonl');
//!
//! CREATE TABLE per_card WITH ('connector' = 'file', 'path' = 'per_card.jsonl');
//!
//! INSERT INTO per_card
//! SELECT card_id, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS minute, COUNT(*) AS n
//! FROM transactions
//! WHERE amount > 100
//! GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE)
//! HAVING COUNT(*) > 3;
//! ```
//!
//! - `ddl`: `CREATE TABLE` (connector options, columns, `WATERMARK FOR`).
//! - `plan`: queries to chains of built-in agents (`filter`, `window`, `project`).
//! - `source`: reading tables (sources) and views; `sink`: `INSERT INTO`, materialized
//!   views, and where an updating query may go.
//! - `window`: windowed aggregates (`window`).
//! - `join`: temporal, lookup, interval and window joins (`join`).
//! - `rank`: top-N per window (`top`).
//! - `over`: windows of rows (`OVER`, `over`).
//! - `distinct`: a window join of two queries of distinct groups planned as a join of their
//!   rows, then one window.
//! - `fuse`: chains of projections merged into one after planning.
//! - `function`: `CREATE FUNCTION`, calls of agents as scalar functions.
//! - `table_function`: agents as table functions (`FROM f(TABLE t PARTITION BY k)`).
//! - `error`: errors with line, column and a caret under the mistake.

mod ddl;
mod distinct;
pub mod error;
mod function;
mod fuse;
mod join;
mod over;
mod plan;
mod rank;
mod sink;
mod source;
mod table_function;
#[cfg(test)]
mod tests;
mod window;

use arrow_schema::SchemaRef;
use sqlparser::ast::{Set, Spanned, Statement, TableObject};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Tokenizer};

use error::Source;
pub use error::SqlError;

/// The most statements one file may hold: enough for any pipeline, and a bound on the work a
/// hostile file can ask of the planner.
pub const MAX_STATEMENTS: usize = 1_000;

/// Whether `file` is a SQL pipeline (by its extension).
pub fn is_sql(file: &std::path::Path) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
}

/// What the planner asks of the world outside the SQL text.
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    /// The columns of output `port` of a source (its pipeline document), when they are known
    /// before it runs, so that expressions are checked where they are written.
    pub schema_of: &'a dyn Fn(&toml::Value, u32) -> Option<SchemaRef>,
    /// What a module (as `CREATE FUNCTION` names it) configured with a call's config (JSON)
    /// answers a batch of no rows of the given columns with — the columns of each batch it
    /// returns, by output port — or why it refuses them: calls of functions and table
    /// functions are type-checked by asking the module. `None`: their results are not known
    /// before the pipeline runs, and what reads them is checked then.
    pub functions: Option<&'a FunctionTypes<'a>>,
    /// Modules that replace those of declared functions, by function name (what
    /// `--module risk=FILE` does on the command line).
    pub modules: &'a [(String, String)],
}

/// See [`Catalog::functions`].
pub type FunctionTypes<'a> =
    dyn Fn(&str, &str, &SchemaRef) -> Result<Vec<(u32, SchemaRef)>, String> + 'a;

impl<'a> Catalog<'a> {
    /// A catalog of source columns alone.
    pub fn sources(schema_of: &'a dyn Fn(&toml::Value, u32) -> Option<SchemaRef>) -> Self {
        Catalog {
            schema_of,
            functions: None,
            modules: &[],
        }
    }
}

/// Compiles SQL `text` to a pipeline document (`[sources]`, `[agents]`, `[sinks]`, `edges`).
pub fn compile(text: &str, catalog: &Catalog<'_>) -> Result<toml::Table, SqlError> {
    compile_with(text, catalog, true)
}

/// Checks declarations (`CREATE TABLE`, `CREATE VIEW`, `CREATE FUNCTION`, `SET`, and any
/// queries) as [`compile`] does, without asking for something to write: what the `sabot sql`
/// shell checks as each statement is typed.
pub fn check(text: &str, catalog: &Catalog<'_>) -> Result<(), SqlError> {
    compile_with(text, catalog, false).map(drop)
}

/// The functions `text` declares (`CREATE FUNCTION name AS 'module'`), as (name, module).
pub fn declared_functions(text: &str) -> Result<Vec<(String, String)>, SqlError> {
    let source = Source { text };
    let mut tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| source.parse_error(&e.to_string()))?;
    Ok(function::take_functions(source, &mut tokens)?
        .into_iter()
        .map(|f| (f.name, f.module))
        .collect())
}

fn compile_with(
    text: &str,
    catalog: &Catalog<'_>,
    require_output: bool,
) -> Result<toml::Table, SqlError> {
    let source = Source { text };
    let dialect = GenericDialect {};
    let mut tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| source.parse_error(&e.to_string()))?;
    let functions = function::take_functions(source, &mut tokens)?;
    let mut watermarks = ddl::take_watermarks(source, &mut tokens)?;
    let versions = ddl::take_versions(source, &mut tokens)?;
    table_function::mark_table_arguments(&mut tokens);
    let statements = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| source.parse_error(&e.to_string()))?;
    if statements.len() > MAX_STATEMENTS {
        return Err(source.error(
            Span::empty(),
            format!(
                "{} statements; a pipeline holds at most {MAX_STATEMENTS}",
                statements.len()
            ),
        ));
    }

    let mut planner = plan::Planner::new(source, *catalog);
    planner.versions = versions;
    for mut declared in functions {
        if let Some((_, module)) = catalog
            .modules
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&declared.name))
        {
            declared.module = module.clone();
        }
        function::declare(source, &mut planner.functions, declared)?;
    }
    let mut inserts = Vec::new();
    let mut materialized = Vec::new();
    let mut settings = toml::Table::new();
    let mut parallelism: Option<i64> = None;
    for (i, statement) in statements.iter().enumerate() {
        match statement {
            Statement::CreateTable(create) => {
                let watermark = watermarks
                    .iter()
                    .position(|w| w.statement == i)
                    .map(|at| watermarks.remove(at).watermark);
                let table = ddl::table(source, create, watermark)?;
                if planner.tables.contains_key(&table.name)
                    || planner.views.contains_key(&table.name)
                {
                    return Err(
                        source.error(table.span, format!("`{}` is declared twice", table.name))
                    );
                }
                planner.tables.insert(table.name.clone(), table);
            }
            Statement::CreateView(view) => {
                let name = ddl::object_name(source, &view.name)?;
                if !view.columns.is_empty() {
                    return Err(source.error(
                        view.name.span(),
                        format!("view `{name}`: name its columns with AS in the SELECT instead of a column list"),
                    ));
                }
                if planner.tables.contains_key(&name) || planner.views.contains_key(&name) {
                    return Err(
                        source.error(view.name.span(), format!("`{name}` is declared twice"))
                    );
                }
                if view.materialized {
                    if materialized.iter().any(|(n, _, _)| *n == name) {
                        return Err(
                            source.error(view.name.span(), format!("`{name}` is declared twice"))
                        );
                    }
                    materialized.push((name, view.name.span(), &view.query));
                } else {
                    planner
                        .views
                        .insert(name, ((*view.query).clone(), view.name.span()));
                }
            }
            Statement::Insert(insert) => inserts.push(insert),
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) if variable.to_string().eq_ignore_ascii_case("parallelism") => {
                parallelism = Some(parallelism_of(source, values, variable.span())?);
            }
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) => set(source, &mut settings, variable, values)?,
            Statement::Query(query) => {
                return Err(source.error(
                    query.span(),
                    "a SELECT on its own has nowhere to go: INSERT INTO a table, e.g. one WITH ('connector' = 'stdout')",
                ));
            }
            other => {
                let first_line = other.to_string();
                let first_line = first_line
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ");
                return Err(source.error(
                    other.span(),
                    format!("unsupported statement `{first_line} …` (expected CREATE TABLE, CREATE VIEW, CREATE FUNCTION or INSERT INTO)"),
                ));
            }
        }
    }
    if let Some(w) = watermarks.first() {
        return Err(source.error(
            w.watermark.span,
            "WATERMARK belongs in the column list of a CREATE TABLE",
        ));
    }
    if require_output && inserts.is_empty() && materialized.is_empty() {
        return Err(source.error(
            statements.last().map_or(Span::empty(), Spanned::span),
            "no INSERT INTO or CREATE MATERIALIZED VIEW: a pipeline writes at least one table or view",
        ));
    }
    planner.reserve(materialized.iter().map(|(name, _, _)| name.clone()));
    for (name, span, query) in materialized {
        planner.materialize(&name, span, query)?;
    }
    for insert in inserts {
        let TableObject::TableName(name) = &insert.table else {
            return Err(source.error(insert.table.span(), "INSERT INTO a table name"));
        };
        let target = ddl::object_name(source, name)?;
        let Some(query) = &insert.source else {
            return Err(source.error(
                name.span(),
                "INSERT INTO … SELECT: the rows come from a query",
            ));
        };
        let columns: Vec<_> = insert
            .columns
            .iter()
            .map(|c| {
                c.0.last()
                    .and_then(|p| p.as_ident())
                    .cloned()
                    .ok_or_else(|| source.error(c.span(), "expected a column name"))
            })
            .collect::<Result<_, _>>()?;
        planner.insert(&target, name.span(), &columns, query)?;
    }

    if let Some(v) = planner.versions.first() {
        return Err(source.error(
            v.span,
            "FOR SYSTEM_TIME AS OF belongs after the right table of a JOIN",
        ));
    }
    let abandoned = std::mem::take(&mut planner.abandoned);
    distinct::remove_abandoned(abandoned, &mut planner.agents, &mut planner.edges);
    fuse::fuse_projections(&mut planner.agents, &mut planner.edges);
    // Keyed agents (windows, joins, aggregates, rankings per key, views) run as many instances,
    // each with its share of the keys.
    if let Some(n) = parallelism {
        for (_, agent) in planner.agents.iter_mut() {
            // An aggregate over a changelog runs as one instance: a row may change groups.
            if let Some(agent) = agent.as_table_mut()
                && agent.contains_key("key")
                && agent
                    .get("config")
                    .and_then(|c| c.get("changelog_key"))
                    .is_none()
            {
                agent.insert("parallelism".into(), n.into());
            }
        }
    }
    let mut document = toml::Table::new();
    document.insert(
        "edges".into(),
        toml::Value::Array(planner.edges.iter().map(|e| e.clone().into()).collect()),
    );
    document.insert("sources".into(), planner.sources.into());
    if !planner.agents.is_empty() {
        document.insert("agents".into(), planner.agents.into());
    }
    document.insert("sinks".into(), planner.sinks.into());
    if !settings.is_empty() {
        document.insert("pipeline".into(), settings.into());
    }
    Ok(document)
}

/// The settings `SET` may change: those of the pipeline file's `[pipeline]` table.
const SETTINGS: &[&str] = &[
    "name",
    "batch_size",
    "channel_capacity",
    "dead_letter",
    "dead_letter_mb",
    "file_sink_mb",
    "state",
    "state_cache_mb",
    "limits",
    "checkpoint",
];

/// `SET parallelism = 2`: the instances of each keyed agent.
fn parallelism_of(
    source: Source<'_>,
    values: &[sqlparser::ast::Expr],
    span: Span,
) -> Result<i64, SqlError> {
    let max = crate::config::MAX_PARALLELISM as i64;
    let n = match values {
        [sqlparser::ast::Expr::Value(v)] => match &v.value {
            sqlparser::ast::Value::Number(n, _) => n.parse::<i64>().ok(),
            sqlparser::ast::Value::SingleQuotedString(n) => n.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    };
    match n {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(source.error(
            values.first().map_or(span, Spanned::span),
            format!("SET parallelism takes a number of instances from 1 to {max}"),
        )),
    }
}

/// `SET batch_size = 8192`, `SET checkpoint.interval_ms = 1000`: a `[pipeline]` setting.
fn set(
    source: Source<'_>,
    settings: &mut toml::Table,
    variable: &sqlparser::ast::ObjectName,
    values: &[sqlparser::ast::Expr],
) -> Result<(), SqlError> {
    let span = variable.span();
    let path: Vec<String> = variable
        .0
        .iter()
        .flat_map(|p| p.as_ident().map(|i| i.value.clone()))
        .flat_map(|p| p.split('.').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let Some(first) = path.first().filter(|f| SETTINGS.contains(&f.as_str())) else {
        return Err(source.error(
            span,
            format!(
                "unknown setting `{variable}` (expected parallelism or one of: {})",
                SETTINGS.join(", ")
            ),
        ));
    };
    let [value] = values else {
        return Err(source.error(span, format!("SET {variable} takes one value")));
    };
    let value = ddl::option_value(first, value)
        .map_err(|message| source.error(value.span(), format!("SET {variable}: {message}")))?;
    let mut table = settings;
    for part in &path[..path.len() - 1] {
        table = table
            .entry(part.clone())
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .ok_or_else(|| {
                source.error(span, format!("`{part}` is set to a value, not a table"))
            })?;
    }
    table.insert(path[path.len() - 1].clone(), value);
    Ok(())
}
