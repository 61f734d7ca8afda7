//! User-defined functions: `CREATE FUNCTION risk AS 'MODULE'` declares `risk`, and each call
//! of it in a query becomes an agent of that module that appends the call's result to every row
//! (`sabot_sdk::function`: one crossing per batch). The planner asks the module for the
//! result's type through [`super::Catalog::functions`], so a call with the wrong argument types
//! is refused where it is written, and what follows the call is checked against its type.
//!
//! The SQL parser knows only PostgreSQL's `CREATE FUNCTION`, so the statement is taken out of
//! the token stream before parsing, like `WATERMARK FOR`.

use std::collections::HashMap;
use std::ops::ControlFlow;

use arrow_schema::SchemaRef;
use sabot_sdk::function::Call;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Spanned, visit_expressions,
    visit_expressions_mut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan};

use super::error::{Source, SqlError};
use super::plan::{Planner, Stream};

/// A function declared with `CREATE FUNCTION name AS 'module'` (or an aggregate, with
/// `CREATE AGGREGATE`).
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    /// As written (calls match it case-insensitively).
    pub(crate) name: String,
    /// Whether it aggregates a group's values (`CREATE AGGREGATE`): the window collects them
    /// into a list, which the module folds into one value.
    pub(crate) aggregate: bool,
    /// A module file (relative to the pipeline's directory) or, on a server, `NAME@VERSION`.
    pub(crate) module: String,
    pub(crate) span: Span,
}

const USAGE: &str = "expected CREATE FUNCTION name AS 'module' or CREATE AGGREGATE name AS 'module' (a .wasm file, or NAME@VERSION of an uploaded module on a server)";

/// Removes every `CREATE [TEMPORARY] FUNCTION …;` and `CREATE AGGREGATE …;` statement from
/// `tokens` and parses it.
pub(crate) fn take_functions(
    source: Source<'_>,
    tokens: &mut Vec<TokenWithSpan>,
) -> Result<Vec<Declared>, SqlError> {
    let mut found = Vec::new();
    let mut i = 0;
    // Statements start at the beginning and after each `;`.
    let mut at_start = true;
    while i < tokens.len() {
        match &tokens[i].token {
            Token::Whitespace(_) => {}
            Token::SemiColon => at_start = true,
            Token::Word(w) if at_start && w.keyword == Keyword::CREATE => {
                at_start = false;
                let mut next = i + 1;
                let mut saw_function = None;
                while let Some(t) = tokens.get(next) {
                    match &t.token {
                        Token::Whitespace(_) => {}
                        Token::Word(w)
                            if matches!(
                                w.keyword,
                                Keyword::TEMPORARY | Keyword::TEMP | Keyword::OR | Keyword::REPLACE
                            ) => {}
                        Token::Word(w)
                            if matches!(w.keyword, Keyword::FUNCTION | Keyword::AGGREGATE) =>
                        {
                            saw_function = Some(w.keyword == Keyword::AGGREGATE);
                            break;
                        }
                        _ => break,
                    }
                    next += 1;
                }
                if let Some(aggregate) = saw_function {
                    let end = tokens[i..]
                        .iter()
                        .position(|t| t.token == Token::SemiColon)
                        .map_or(tokens.len(), |p| i + p);
                    let mut declared = parse(source, &tokens[next + 1..end], tokens[i].span)?;
                    declared.aggregate = aggregate;
                    found.push(declared);
                    let drain_to = (end + 1).min(tokens.len());
                    tokens.drain(i..drain_to);
                    at_start = true;
                    continue;
                }
            }
            _ => at_start = false,
        }
        i += 1;
    }
    Ok(found)
}

/// `name AS 'module'`, the tokens after `FUNCTION`.
fn parse(source: Source<'_>, rest: &[TokenWithSpan], create: Span) -> Result<Declared, SqlError> {
    let span = rest
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| t.span)
        .fold(create, |a, b| a.union(&b));
    let mut parser = Parser::new(&GenericDialect {}).with_tokens_with_locations(rest.to_vec());
    let parsed = (|| {
        let name = parser.parse_identifier()?;
        if parser.peek_token_ref().token == Token::LParen {
            return Ok(Err((
                parser.peek_token_ref().span,
                "a function's argument and result types come from its module: write CREATE FUNCTION name AS 'module', without (…) RETURNS …",
            )));
        }
        parser.expect_keyword(Keyword::AS)?;
        let module = parser.parse_literal_string()?;
        let trailing = parser.peek_token_ref().clone();
        if trailing.token != Token::EOF {
            return Ok(Err((trailing.span, "unexpected text after the module")));
        }
        Ok::<_, sqlparser::parser::ParserError>(Ok((name, module)))
    })();
    match parsed {
        Ok(Ok((name, module))) => {
            if module.trim().is_empty() {
                return Err(source.error(span, format!("function `{}`: {USAGE}", name.value)));
            }
            Ok(Declared {
                name: name.value,
                aggregate: false,
                module,
                span,
            })
        }
        Ok(Err((at, message))) => Err(source.error(at, message)),
        Err(e) => Err(source.error(span, format!("{e}; {USAGE}"))),
    }
}

/// Checks a declaration against the others and the built-in functions.
pub(crate) fn declare(
    source: Source<'_>,
    declared: &mut HashMap<String, Declared>,
    function: Declared,
) -> Result<(), SqlError> {
    let key = function.name.to_ascii_lowercase();
    if sabot_expr::functions::is_function(&key) {
        return Err(source.error(
            function.span,
            format!(
                "`{}` is a built-in function: give the user-defined function another name",
                function.name
            ),
        ));
    }
    if declared.contains_key(&key) {
        return Err(source.error(
            function.span,
            format!("function `{}` is declared twice", function.name),
        ));
    }
    declared.insert(key, function);
    Ok(())
}

/// The declared function `expr` calls, if it calls one.
pub(super) fn called<'a>(
    functions: &'a HashMap<String, Declared>,
    expr: &Expr,
) -> Option<&'a Declared> {
    match expr {
        Expr::Function(f) if f.name.0.len() == 1 => {
            functions.get(&f.name.to_string().to_ascii_lowercase())
        }
        _ => None,
    }
}

/// Whether `expr` calls a declared scalar function anywhere.
pub(crate) fn calls_any(functions: &HashMap<String, Declared>, expr: &Expr) -> bool {
    calls(functions, expr, false)
}

/// Whether `expr` calls a declared aggregate anywhere.
pub(crate) fn calls_aggregate(functions: &HashMap<String, Declared>, expr: &Expr) -> bool {
    calls(functions, expr, true)
}

fn calls(functions: &HashMap<String, Declared>, expr: &Expr, aggregate: bool) -> bool {
    visit_expressions(expr, |e| {
        if called(functions, e).is_some_and(|d| d.aggregate == aggregate) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

impl Planner<'_> {
    /// Runs the calls of declared functions in `exprs` before what reads them: for each call
    /// (innermost first, each distinct call once), an agent of the function's module appends
    /// its result as a column, and the call becomes a reference to that column.
    /// `made` holds the column of each call already made on this stream, by the call's text.
    pub(super) fn call_functions(
        &mut self,
        exprs: &mut [&mut Expr],
        mut stream: Stream,
        made: &mut HashMap<String, String>,
        hint: &str,
    ) -> Result<Stream, SqlError> {
        for expr in exprs.iter_mut() {
            let flow = visit_expressions_mut(*expr, |e| {
                let Some(declared) = called(&self.functions, e).filter(|d| !d.aggregate).cloned()
                else {
                    return ControlFlow::Continue(());
                };
                let text = e.to_string();
                let column = match made.get(&text) {
                    Some(column) => column.clone(),
                    None => match self.call_function(&declared, e, &mut stream, hint) {
                        Ok(column) => {
                            made.insert(text, column.clone());
                            column
                        }
                        Err(err) => return ControlFlow::Break(err),
                    },
                };
                *e = Expr::Identifier(Ident::with_quote('"', column));
                ControlFlow::Continue(())
            });
            if let ControlFlow::Break(err) = flow {
                return Err(err);
            }
        }
        Ok(stream)
    }

    /// Adds the agent of one call to `stream` and returns the column it writes.
    fn call_function(
        &mut self,
        declared: &Declared,
        call: &Expr,
        stream: &mut Stream,
        hint: &str,
    ) -> Result<String, SqlError> {
        let Expr::Function(f) = call else {
            unreachable!("called() matched a function call")
        };
        let name = &declared.name;
        let span = call.span();
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(self.error(
                span,
                format!(
                    "`{name}` is a scalar function: OVER, FILTER and WITHIN GROUP do not apply"
                ),
            ));
        }
        let args: Vec<Expr> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list)
                if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                list.args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                        other => Err(self.error(
                            other.span(),
                            format!("`{other}`: the arguments of `{name}` are expressions"),
                        )),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(self.error(
                    span,
                    format!("`{name}` takes expressions as arguments (no DISTINCT, ORDER BY or sub-query)"),
                ));
            }
        };
        if let Some(aggregate) = args
            .iter()
            .find(|a| super::window::contains_aggregate(a) || calls_aggregate(&self.functions, a))
        {
            return Err(self.error(
                aggregate.span(),
                format!("`{name}` of an aggregate is not supported: aggregate in a view, then call `{name}` on its column"),
            ));
        }
        let agent = self.fresh(&name.to_ascii_lowercase());
        let output = self.column_name(stream, &format!("{agent}_"));
        // Arguments that are not columns are computed first, by a projection.
        let mut columns = Vec::with_capacity(args.len());
        let mut computed = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            match arg {
                Expr::Identifier(column) => columns.push(column.value.clone()),
                other => {
                    let column = format!("{output}arg{i}");
                    computed.push(format!("{other} AS \"{column}\""));
                    columns.push(column);
                }
            }
        }
        if !computed.is_empty() {
            let items: Vec<String> = std::iter::once("*".to_owned()).chain(computed).collect();
            let agent = self.fresh(&format!("{hint}_{}_args", name.to_ascii_lowercase()));
            *stream = self.project(&agent, stream, &items, span)?;
        }
        if let Some(schema) = &stream.schema {
            for (column, arg) in columns.iter().zip(&args) {
                if schema.field_with_name(column).is_err() {
                    return Err(self.error(
                        arg.span(),
                        format!(
                            "unknown column `{column}` in the call of `{name}` (columns: {})",
                            super::plan::field_names(schema)
                        ),
                    ));
                }
            }
        }
        self.apply_function(declared, &agent, columns, &output, stream, span)?;
        Ok(output)
    }

    /// Adds agent `agent` of `declared`'s module to `stream`, appending the function of columns
    /// `args` as column `output`.
    pub(super) fn apply_function(
        &mut self,
        declared: &Declared,
        agent: &str,
        args: Vec<String>,
        output: &str,
        stream: &mut Stream,
        span: Span,
    ) -> Result<(), SqlError> {
        let config = Call {
            function: declared.name.clone(),
            args,
            output: output.to_owned(),
        };
        let schema = self.function_schema(declared, &config, stream.schema.as_ref(), span)?;
        let table = toml::Table::try_from(&config).expect("a call is a TOML table");
        self.agent(agent, &declared.module, table, None, stream);
        stream.nodes = vec![agent.to_owned()];
        stream.schema = schema;
        Ok(())
    }

    /// What the module says a call returns, when the input's columns and a way to ask are
    /// known.
    fn function_schema(
        &self,
        declared: &Declared,
        call: &Call,
        input: Option<&SchemaRef>,
        span: Span,
    ) -> Result<Option<SchemaRef>, SqlError> {
        let (Some(input), Some(ask)) = (input, self.catalog.functions) else {
            return Ok(None);
        };
        let name = &declared.name;
        let config = serde_json::to_string(call).expect("a call is JSON");
        let answered = ask(&declared.module, &config, input).map_err(|why| {
            self.error(
                span,
                format!("function `{name}` (module '{}'): {why}", declared.module),
            )
        })?;
        let schema = match answered.as_slice() {
            [(0, schema)] => schema.clone(),
            other => {
                return Err(self.error(
                    span,
                    format!(
                        "function `{name}` (module '{}'): answered a batch of no rows with {} batch(es) on port(s) {:?}; a function module returns one batch on port 0, every row it got with the result appended",
                        declared.module,
                        other.len(),
                        other.iter().map(|(p, _)| *p).collect::<Vec<_>>()
                    ),
                ));
            }
        };
        let fine = schema.fields().len() == input.fields().len() + 1
            && schema.field_with_name(&call.output).is_ok()
            && input
                .fields()
                .iter()
                .all(|f| schema.field_with_name(f.name()).is_ok());
        if !fine {
            return Err(self.error(
                span,
                format!(
                    "function `{name}` (module '{}') answered columns ({}) for ({}): a function module returns every column it got and its result as `{}`",
                    declared.module,
                    super::plan::field_names(&schema),
                    super::plan::field_names(input),
                    call.output
                ),
            ));
        }
        Ok(Some(schema))
    }

    /// A column name starting with `base` that `stream` does not have.
    fn column_name(&self, stream: &Stream, base: &str) -> String {
        let taken = |c: &str| {
            stream
                .schema
                .as_ref()
                .is_some_and(|s| s.field_with_name(c).is_ok())
        };
        (0..)
            .map(|n| format!("{base}{n}"))
            .find(|c| !taken(c))
            .expect("an unused name")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    use super::super::tests::{TRANSACTIONS, agent_named, agent_running, declared, strings};
    use super::super::{Catalog, SqlError, compile};

    /// What the module of `examples/sql/functions` answers: `risk(Float64, Utf8) -> Float64`,
    /// `tier(Utf8) -> Utf8`, refusing other argument types as the SDK does.
    fn module(
        module: &str,
        config: &str,
        input: &SchemaRef,
    ) -> Result<Vec<(u32, SchemaRef)>, String> {
        assert_eq!(module, "fx.wasm");
        let call: sabot_sdk::function::Call = serde_json::from_str(config).unwrap();
        let (takes, returns) = match call.function.as_str() {
            "risk" => (vec![DataType::Float64, DataType::Utf8], DataType::Float64),
            "tier" => (vec![DataType::Utf8], DataType::Utf8),
            "median" => (
                vec![DataType::List(Arc::new(Field::new_list_field(
                    DataType::Float64,
                    true,
                )))],
                DataType::Float64,
            ),
            other => return Err(format!("this module has no function `{other}`")),
        };
        if call.args.len() != takes.len() {
            return Err(format!(
                "init failed: {} takes {} argument(s); the call gives {}",
                call.function,
                takes.len(),
                call.args.len()
            ));
        }
        for (i, (column, ty)) in call.args.iter().zip(&takes).enumerate() {
            let got = input.field_with_name(column).map_err(|e| e.to_string())?;
            if got.data_type() != ty {
                return Err(format!(
                    "argument {} (`{column}`) is {}, expected {ty} (CAST it)",
                    i + 1,
                    got.data_type()
                ));
            }
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(&call.output, returns, true));
        Ok(vec![(0, Arc::new(Schema::new(fields)))])
    }

    const FX: &str = "CREATE FUNCTION risk AS 'fx.wasm';\nCREATE FUNCTION tier AS 'fx.wasm';\nCREATE AGGREGATE median AS 'fx.wasm';\n";

    fn compiled(sql: &str) -> Result<toml::Table, SqlError> {
        let catalog = Catalog {
            schema_of: &declared,
            functions: Some(&module),
            modules: &[],
        };
        compile(&format!("{TRANSACTIONS}{FX}{sql}"), &catalog)
    }

    #[test]
    fn a_call_becomes_an_agent_of_its_module_made_once_for_the_filter_and_the_select() {
        let doc = compiled(
            "INSERT INTO out SELECT txn_id, risk(amount, country) AS score FROM transactions WHERE risk(amount, country) > 1;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let agents = doc["agents"].as_table().unwrap();
        let risk = &agents["risk"];
        assert_eq!(risk["module"].as_str(), Some("fx.wasm"));
        assert_eq!(risk["config"]["function"].as_str(), Some("risk"));
        assert_eq!(strings(&risk["config"]["args"]), ["amount", "country"]);
        assert_eq!(risk["config"]["output"].as_str(), Some("risk_0"));
        assert_eq!(
            agents.len(),
            3,
            "one call agent, a filter, a projection: {agents:#?}"
        );
        let filter = agent_running(&doc, "builtin:filter");
        assert_eq!(filter["config"]["where"].as_str(), Some("\"risk_0\" > 1"));
        let select = agent_running(&doc, "builtin:project");
        assert_eq!(
            strings(&select["config"]["select"]),
            ["txn_id", "\"risk_0\" AS score"]
        );
        let edges = strings(&doc["edges"]);
        assert_eq!(edges[0], "transactions -> risk");
    }

    #[test]
    fn expression_arguments_are_computed_before_the_call_and_unnamed_calls_keep_their_text() {
        let doc = compiled(
            "INSERT INTO out SELECT tier(UPPER(country)), risk(amount * 2, country) FROM transactions;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let agents = doc["agents"].as_table().unwrap();
        let args = agents
            .iter()
            .filter(|(n, _)| n.ends_with("_args"))
            .map(|(_, a)| strings(&a["config"]["select"]))
            .collect::<Vec<_>>();
        assert_eq!(
            args,
            [
                vec!["*", "UPPER(country) AS \"tier_0arg0\""],
                vec!["*", "amount * 2 AS \"risk_0arg0\""]
            ]
        );
        let select = agent_named(&doc, "_select");
        assert_eq!(
            strings(&select["config"]["select"]),
            [
                "\"tier_0\" AS \"tier(UPPER(country))\"",
                "\"risk_0\" AS \"risk(amount * 2, country)\""
            ]
        );
    }

    #[test]
    fn select_star_with_a_call_in_where_returns_the_table_columns_only() {
        let doc =
            compiled("INSERT INTO out SELECT * FROM transactions WHERE tier(country) = 'gold';")
                .unwrap_or_else(|e| panic!("{e}"));
        let select = agent_named(&doc, "_select");
        assert_eq!(
            strings(&select["config"]["select"]),
            ["txn_id", "ts", "card_id", "amount", "country"]
        );
    }

    #[test]
    fn a_call_with_arguments_of_the_wrong_type_is_refused_where_it_is_written() {
        let e = compiled("INSERT INTO out SELECT risk(card_id, country) AS r FROM transactions;")
            .unwrap_err();
        assert_eq!((e.line, e.column), (9, 24), "{e}");
        assert!(
            e.message.contains("function `risk` (module 'fx.wasm')"),
            "{e}"
        );
        assert!(
            e.message.contains("is Int64, expected Float64 (CAST it)"),
            "{e}"
        );
        // A CAST makes it fit, and what follows is typed by the result.
        let e = compiled(
            "INSERT INTO out SELECT risk(CAST(card_id AS DOUBLE), country) || 'x' AS r FROM transactions;",
        );
        assert!(e.is_ok(), "{e:?}");
        let e = compiled(
            "INSERT INTO out SELECT risk(amount, country) + 1 AS r, UPPER(tier(country)) AS t FROM transactions;",
        );
        assert!(e.is_ok(), "{e:?}");
    }

    #[test]
    fn declarations_are_checked() {
        let catalog = Catalog::sources(&declared);
        let cases = [
            (
                "CREATE FUNCTION upper AS 'fx.wasm';",
                "`upper` is a built-in function",
            ),
            (
                "CREATE FUNCTION risk AS 'a.wasm'; CREATE FUNCTION RISK AS 'b.wasm';",
                "function `RISK` is declared twice",
            ),
            (
                "CREATE FUNCTION risk(a DOUBLE) RETURNS DOUBLE AS 'fx.wasm';",
                "types come from its module",
            ),
            (
                "CREATE FUNCTION risk AS '';",
                "expected CREATE FUNCTION name AS 'module'",
            ),
            (
                "CREATE FUNCTION risk 'fx.wasm';",
                "expected CREATE FUNCTION name AS 'module'",
            ),
            (
                "CREATE FUNCTION risk AS 'fx.wasm' LANGUAGE wasm;",
                "unexpected text after the module",
            ),
        ];
        for (sql, expected) in cases {
            let e = compile(&format!("{TRANSACTIONS}{sql}"), &catalog).unwrap_err();
            assert!(e.message.contains(expected), "{sql}: {e}");
            assert_eq!(e.line, 6, "{sql}: {e}");
        }
    }

    #[test]
    fn calls_where_a_function_cannot_run_are_refused() {
        let cases = [
            (
                "INSERT INTO out SELECT card_id, risk(SUM(amount), 'FR') AS r FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
                "`risk` of an aggregate is not supported",
            ),
            (
                "INSERT INTO out SELECT card_id, SUM(amount) AS s FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE) HAVING tier(card_id) = 'x';",
                "in HAVING is not supported",
            ),
            (
                "INSERT INTO out SELECT risk(amount) AS r FROM transactions;",
                "risk takes 2 argument(s); the call gives 1",
            ),
        ];
        for (sql, expected) in cases {
            let e = compiled(sql).unwrap_err();
            assert!(e.message.contains(expected), "{sql}: {e}");
        }
    }

    #[test]
    fn an_aggregate_of_a_call_runs_the_call_before_the_window() {
        let doc = compiled(
            "INSERT INTO out SELECT card_id, SUM(risk(amount, country)) AS total FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let edges = strings(&doc["edges"]);
        assert_eq!(edges[0], "transactions -> risk");
        let window = agent_running(&doc, "builtin:window");
        assert!(
            strings(&window["config"]["aggregates"])[0].contains("risk_0"),
            "{window}"
        );
    }

    #[test]
    fn a_user_aggregate_folds_the_values_the_window_collects() {
        let doc = compiled(
            "INSERT INTO out SELECT card_id, median(amount) AS m, median(amount * 2), COUNT(*) AS n FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let agents = doc["agents"].as_table().unwrap();
        let window = agent_running(&doc, "builtin:window");
        assert_eq!(
            strings(&window["config"]["aggregates"]),
            [
                "collect(amount) AS agg0_list",
                "collect(aggin0_) AS agg1_list",
                "count(*) AS agg2_"
            ]
        );
        let median = &agents["median"];
        assert_eq!(median["module"].as_str(), Some("fx.wasm"));
        assert_eq!(strings(&median["config"]["args"]), ["agg0_list"]);
        assert_eq!(median["config"]["output"].as_str(), Some("agg0_"));
        assert_eq!(
            strings(&agents["median_2"]["config"]["args"]),
            ["agg1_list"]
        );
        let select = agent_named(&doc, "_select");
        assert_eq!(
            strings(&select["config"]["select"]),
            [
                "card_id",
                "agg0_ AS m",
                "agg1_ AS \"median(amount * 2)\"",
                "agg2_ AS n"
            ]
        );
        let edges = strings(&doc["edges"]);
        assert!(
            edges.iter().any(|e| e.ends_with("_window -> median")),
            "{edges:?}"
        );
        assert!(edges.contains(&"median -> median_2"), "{edges:?}");
    }

    #[test]
    fn a_user_aggregate_needs_a_window_and_values_it_can_collect() {
        let e = compiled("INSERT INTO out SELECT card_id, median(amount) AS m FROM transactions GROUP BY card_id;")
            .unwrap_err();
        assert!(
            e.message
                .contains("the user-defined aggregate `median` needs a window"),
            "{e}"
        );
        let e = compiled(
            "INSERT INTO out SELECT card_id, median(country) AS m FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
        )
        .unwrap_err();
        assert!(
            e.message.contains("is List(Utf8), expected List(Float64)")
                || e.message.contains("List"),
            "{e}"
        );
        let e = compiled(
            "INSERT INTO out SELECT risk(median(amount), 'FR') AS r FROM transactions GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE);",
        )
        .unwrap_err();
        assert!(e.message.contains("`risk` of an aggregate"), "{e}");
    }
}
