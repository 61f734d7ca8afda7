//! Agents as table functions: where SQL ends, a whole agent takes a table's rows and its output
//! is a table again —
//!
//! ```sql
//! CREATE FUNCTION fraud_rules AS 'fraud_rules.wasm';
//!
//! SELECT txn_id, reason
//! FROM fraud_rules(TABLE transactions PARTITION BY card_id, over_limit_factor => 1.5);
//! ```
//!
//! The call becomes one agent of the function's module reading the table (a table or a view),
//! keyed by the `PARTITION BY` column (so `SET parallelism` gives it instances, each with its
//! share of the keys, and its keyed state is per key), configured with the named arguments.
//! Its output port 0 is the call's rows. The planner asks the module, with that config, what
//! it answers a batch of no rows with: a refused config is reported at the call, and an answer
//! on port 0 gives the columns what follows is checked against (an agent that answers nothing
//! has columns known only when it runs).
//!
//! The SQL parser does not know table arguments (`TABLE name PARTITION BY column`), so they
//! are rewritten in the token stream before parsing into a call the parser reads,
//! `"TABLE"(name, column)`, which [`Planner::table_function`] takes apart again.

use std::collections::HashSet;

use arrow_schema::SchemaRef;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Spanned, TableAlias,
    TableFunctionArgs, UnaryOperator, Value,
};
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Word};

use super::ddl::{is_word, next_significant, previous_significant};
use super::error::SqlError;
use super::plan::{Planner, Side, Stream};

/// The name the rewritten table argument is called by: a quoted word, which no keyword is.
const MARK: &str = "TABLE";

const USAGE: &str =
    "a table function is called as name(TABLE table [PARTITION BY column], setting => value, …)";

/// Rewrites each table argument — `TABLE name [PARTITION BY column]` right after `(`, `,` or
/// `=>` — into `"TABLE"(name [, column])`, spans kept.
pub(crate) fn mark_table_arguments(tokens: &mut Vec<TokenWithSpan>) {
    let mut i = 0;
    while i < tokens.len() {
        let opens_argument = previous_significant(tokens, i).is_some_and(|p| {
            matches!(
                tokens[p].token,
                Token::LParen | Token::Comma | Token::RArrow
            )
        });
        let is_table = matches!(&tokens[i].token, Token::Word(w) if is_word(w, "TABLE"));
        let name =
            next_significant(tokens, i).filter(|n| matches!(tokens[*n].token, Token::Word(_)));
        let (true, true, Some(name)) = (opens_argument, is_table, name) else {
            i += 1;
            continue;
        };
        let at = |p: usize, token: Token| TokenWithSpan::new(token, tokens[p].span);
        let mut rewritten = vec![
            at(
                i,
                Token::Word(Word {
                    value: MARK.into(),
                    quote_style: Some('"'),
                    keyword: sqlparser::keywords::Keyword::NoKeyword,
                }),
            ),
            at(i, Token::LParen),
            tokens[name].clone(),
        ];
        let mut end = name;
        let partition = next_significant(tokens, name)
            .filter(|p| matches!(&tokens[*p].token, Token::Word(w) if is_word(w, "PARTITION")));
        let by = partition.and_then(|p| next_significant(tokens, p));
        let by = by.filter(|b| matches!(&tokens[*b].token, Token::Word(w) if is_word(w, "BY")));
        let column = by.and_then(|b| next_significant(tokens, b));
        if let (Some(partition), Some(column)) = (partition, column) {
            rewritten.push(at(partition, Token::Comma));
            rewritten.push(tokens[column].clone());
            end = column;
        }
        rewritten.push(at(end, Token::RParen));
        let added = rewritten.len();
        tokens.splice(i..=end, rewritten);
        i += added;
    }
}

/// The table argument a rewritten `"TABLE"(name [, column])` is.
fn table_argument(expr: &Expr) -> Option<Vec<&Expr>> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let [part] = f.name.0.as_slice() else {
        return None;
    };
    let ident = part.as_ident()?;
    if ident.value != MARK || ident.quote_style != Some('"') {
        return None;
    }
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl Planner<'_> {
    /// The rows of `name(TABLE t [PARTITION BY c], setting => value, …)` in `FROM`: an agent
    /// of the declared function's module reading `t`.
    pub(super) fn table_function(
        &mut self,
        name: &ObjectName,
        args: &TableFunctionArgs,
        alias: Option<&TableAlias>,
    ) -> Result<(Stream, Side), SqlError> {
        let function = super::ddl::object_name(self.source, name)?;
        let span = name.span();
        let Some(declared) = self.functions.get(&function.to_ascii_lowercase()).cloned() else {
            return Err(self.error(
                span,
                format!(
                    "no table function `{function}`: declare the agent that computes it with CREATE FUNCTION {function} AS 'module' ({USAGE})"
                ),
            ));
        };
        if declared.aggregate {
            return Err(self.error(
                span,
                format!(
                    "`{function}` is an aggregate (CREATE AGGREGATE); a table function is declared with CREATE FUNCTION"
                ),
            ));
        }
        if args.settings.is_some() {
            return Err(self.error(span, format!("SETTINGS do not apply: {USAGE}")));
        }
        let mut table: Option<(String, Option<String>, Span)> = None;
        let mut config = toml::Table::new();
        let mut named = HashSet::new();
        for arg in &args.args {
            let (setting, value) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (None, e),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => (Some(name), e),
                other => {
                    return Err(self.error(other.span(), format!("unexpected `{other}`: {USAGE}")));
                }
            };
            if let Some(parts) = table_argument(value) {
                if table.is_some() {
                    return Err(self.error(
                        value.span(),
                        format!("`{function}` reads one table: a second TABLE argument"),
                    ));
                }
                let names: Vec<String> = parts
                    .iter()
                    .map(|p| match p {
                        Expr::Identifier(i) => Ok(i.value.clone()),
                        other => Err(self.error(
                            other.span(),
                            format!(
                                "expected the name of a table, a view or a column, got `{other}`"
                            ),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                table = Some((names[0].clone(), names.get(1).cloned(), value.span()));
                continue;
            }
            let Some(setting) = setting else {
                return Err(self.error(
                    value.span(),
                    format!(
                        "`{value}`: the arguments of `{function}` besides its TABLE are settings of its agent, `name => value` (PARTITION BY takes one column)"
                    ),
                ));
            };
            if !named.insert(setting.value.clone()) {
                return Err(self.error(
                    setting.span,
                    format!("setting `{}` is given twice", setting.value),
                ));
            }
            config.insert(setting.value.clone(), self.setting_value(value)?);
        }
        let Some((table, partition, table_span)) = table else {
            return Err(self.error(span, format!("`{function}` needs a table to read: {USAGE}")));
        };

        let input = self.read(&table, table_span)?;
        if input.updating {
            return Err(self.error(
                table_span,
                format!(
                    "`{table}` is an updating query (a changelog of upserts and deletes); a table function reads rows: aggregate over a window, or call the function first"
                ),
            ));
        }
        if let (Some(column), Some(schema)) = (&partition, &input.schema)
            && schema.field_with_name(column).is_err()
        {
            return Err(self.error(
                table_span,
                format!(
                    "PARTITION BY `{column}`: `{table}` has no such column (columns: {})",
                    super::plan::field_names(schema)
                ),
            ));
        }
        let schema =
            self.table_function_schema(&function, &declared.module, &config, &input, span)?;
        let agent = self.fresh(&function.to_ascii_lowercase());
        self.agent(
            &agent,
            &declared.module,
            config,
            partition.as_deref(),
            &input,
        );
        // The event time goes on when the agent's rows keep its column.
        let time = input
            .time
            .clone()
            .filter(|t| schema.as_ref().is_none_or(|s| s.field_with_name(t).is_ok()));
        let mut qualifiers = vec![function];
        qualifiers.extend(alias.map(|a| a.name.value.clone()));
        Ok((
            Stream::rows(vec![agent], schema, time),
            Side {
                qualifiers,
                renames: Default::default(),
            },
        ))
    }

    /// What the module answers on port 0 for a batch of no rows of the input's columns, when
    /// those and a way to ask are known; a refusal is the plan's error.
    fn table_function_schema(
        &self,
        function: &str,
        module: &str,
        config: &toml::Table,
        input: &Stream,
        span: Span,
    ) -> Result<Option<SchemaRef>, SqlError> {
        let (Some(schema), Some(ask)) = (&input.schema, self.catalog.functions) else {
            return Ok(None);
        };
        let json = serde_json::to_string(config).expect("a TOML table is JSON");
        let answered = ask(module, &json, schema).map_err(|why| {
            self.error(
                span,
                format!("table function `{function}` (module '{module}'): {why}"),
            )
        })?;
        Ok(answered
            .into_iter()
            .find_map(|(port, schema)| (port == 0).then_some(schema)))
    }

    /// A setting's value as its agent's config holds it: a number, text, a boolean, an
    /// `ARRAY[…]` of them, or `JSON '…'` for anything else (a table of settings).
    fn setting_value(&self, value: &Expr) -> Result<toml::Value, SqlError> {
        let refused = || {
            self.error(
                value.span(),
                format!(
                    "setting value `{value}`: expected a number, 'text', TRUE or FALSE, ARRAY[…] of them, or JSON '…'"
                ),
            )
        };
        let number = |n: &str, negative: bool| -> Option<toml::Value> {
            let text = if negative {
                format!("-{n}")
            } else {
                n.to_owned()
            };
            match text.parse::<i64>() {
                Ok(i) => Some(i.into()),
                Err(_) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Into::into),
            }
        };
        match value {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => number(n, false).ok_or_else(refused),
                Value::SingleQuotedString(s) => Ok(s.clone().into()),
                Value::Boolean(b) => Ok((*b).into()),
                _ => Err(refused()),
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match expr.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => number(n, true).ok_or_else(refused),
                    _ => Err(refused()),
                },
                _ => Err(refused()),
            },
            Expr::Array(array) => Ok(toml::Value::Array(
                array
                    .elem
                    .iter()
                    .map(|e| self.setting_value(e))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::TypedString(typed)
                if matches!(typed.data_type, sqlparser::ast::DataType::JSON) =>
            {
                let text = match &typed.value.value {
                    Value::SingleQuotedString(s) => s.as_str(),
                    _ => return Err(refused()),
                };
                let json: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| self.error(value.span(), format!("JSON setting: {e}")))?;
                toml::Value::try_from(json).map_err(|e| {
                    self.error(
                        value.span(),
                        format!(
                            "JSON setting: {e} (null has no place in a config: leave the key out)"
                        ),
                    )
                })
            }
            _ => Err(refused()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    use super::super::tests::{TRANSACTIONS, declared, strings};
    use super::super::{Catalog, SqlError, compile};

    /// A module that flags rows: its config needs a positive `factor`, and it answers with the
    /// rows it got and a `reason`; `quiet.wasm` answers nothing.
    fn module(
        module: &str,
        config: &str,
        input: &SchemaRef,
    ) -> Result<Vec<(u32, SchemaRef)>, String> {
        if module == "quiet.wasm" {
            return Ok(Vec::new());
        }
        assert_eq!(module, "rules.wasm");
        let config: serde_json::Value = serde_json::from_str(config).unwrap();
        if config["factor"].as_f64().is_none_or(|f| f <= 0.0) {
            return Err(format!(
                "init failed: factor must be a positive number, got {}",
                config["factor"]
            ));
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("reason", DataType::Utf8, false));
        Ok(vec![(1, input.clone()), (0, Arc::new(Schema::new(fields)))])
    }

    const RULES: &str = "CREATE FUNCTION rules AS 'rules.wasm';\nCREATE FUNCTION quiet AS 'quiet.wasm';\nCREATE AGGREGATE median AS 'rules.wasm';\n";

    fn compiled(sql: &str) -> Result<toml::Table, SqlError> {
        let catalog = Catalog {
            schema_of: &declared,
            functions: Some(&module),
            modules: &[],
        };
        compile(&format!("{TRANSACTIONS}{RULES}{sql}"), &catalog)
    }

    fn error(sql: &str) -> String {
        match compiled(sql) {
            Ok(doc) => panic!("compiled: {doc}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_table_function_is_one_keyed_agent_configured_by_its_named_arguments() {
        let doc = compiled(
            "SET parallelism = 2;
             INSERT INTO out
             SELECT txn_id, reason FROM rules(
                 TABLE transactions PARTITION BY card_id,
                 factor => 1.5, limit => -3, name => 'x', strict => TRUE,
                 countries => ARRAY['KP', 'IR'],
                 velocity => JSON '{\"max\": 5, \"within_ms\": 1000}'
             ) WHERE reason <> 'none';",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rules = &doc["agents"]["rules"];
        assert_eq!(rules["module"].as_str(), Some("rules.wasm"));
        assert_eq!(rules["key"].as_str(), Some("card_id"));
        assert_eq!(rules["parallelism"].as_integer(), Some(2));
        let config = rules["config"].as_table().unwrap();
        assert_eq!(config["factor"].as_float(), Some(1.5));
        assert_eq!(config["limit"].as_integer(), Some(-3));
        assert_eq!(config["name"].as_str(), Some("x"));
        assert_eq!(config["strict"].as_bool(), Some(true));
        assert_eq!(strings(&config["countries"]), ["KP", "IR"]);
        assert_eq!(config["velocity"]["max"].as_integer(), Some(5));
        assert_eq!(config["velocity"]["within_ms"].as_integer(), Some(1000));
        let edges = strings(&doc["edges"]);
        assert_eq!(edges[0], "transactions -> rules");
        assert!(edges.contains(&"rules -> out_where"), "{edges:?}");
    }

    #[test]
    fn what_follows_a_table_function_is_checked_against_the_columns_its_module_answers() {
        let e = error(
            "INSERT INTO out SELECT txn_id, UPPER(reason_code) FROM rules(TABLE transactions, factor => 2);",
        );
        assert!(e.contains("unknown column `reason_code`"), "{e}");
        // An agent that answers nothing: its columns are known when it runs.
        compiled(
            "INSERT INTO out SELECT txn_id, UPPER(reason_code) FROM quiet(TABLE transactions);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_refused_config_is_reported_at_the_call() {
        let e = error("INSERT INTO out SELECT * FROM rules(TABLE transactions, factor => 0);");
        assert!(e.contains("table function `rules` (module 'rules.wasm'): init failed: factor must be a positive number, got 0"), "{e}");
        assert!(e.contains("9:31: table function"), "{e}");
    }

    #[test]
    fn mistakes_in_a_table_function_call_are_named() {
        let cases = [
            (
                "SELECT * FROM nothing(TABLE transactions)",
                "no table function `nothing`: declare the agent that computes it with CREATE FUNCTION nothing AS 'module'",
            ),
            (
                "SELECT * FROM median(TABLE transactions)",
                "`median` is an aggregate (CREATE AGGREGATE)",
            ),
            (
                "SELECT * FROM rules(factor => 2)",
                "`rules` needs a table to read: a table function is called as name(TABLE table [PARTITION BY column], setting => value, …)",
            ),
            (
                "SELECT * FROM rules(TABLE transactions, TABLE transactions, factor => 2)",
                "`rules` reads one table: a second TABLE argument",
            ),
            (
                "SELECT * FROM rules(TABLE transactions PARTITION BY card_id, country, factor => 2)",
                "`country`: the arguments of `rules` besides its TABLE are settings of its agent, `name => value` (PARTITION BY takes one column)",
            ),
            (
                "SELECT * FROM rules(TABLE transactions PARTITION BY card, factor => 2)",
                "PARTITION BY `card`: `transactions` has no such column (columns: txn_id, ts, card_id, amount, country)",
            ),
            (
                "SELECT * FROM rules(TABLE nowhere, factor => 2)",
                "no table or view `nowhere`",
            ),
            (
                "SELECT * FROM rules(TABLE transactions, factor => 2, factor => 3)",
                "setting `factor` is given twice",
            ),
            (
                "SELECT * FROM rules(TABLE transactions, factor => amount * 2)",
                "setting value `amount * 2`: expected a number, 'text', TRUE or FALSE, ARRAY[…] of them, or JSON '…'",
            ),
            (
                "SELECT * FROM rules(TABLE transactions, factor => JSON '{\"a\": }')",
                "JSON setting: expected value",
            ),
            (
                "SELECT * FROM rules(TABLE transactions, factor => JSON '{\"a\": null}')",
                "null has no place in a config",
            ),
        ];
        for (query, expected) in cases {
            let e = error(&format!("INSERT INTO out {query};"));
            assert!(e.contains(expected), "{query}: {e}");
        }
        let e = error(
            "CREATE VIEW totals AS SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id;
             INSERT INTO out SELECT * FROM rules(TABLE totals, factor => 2);",
        );
        assert!(e.contains("`totals` is an updating query"), "{e}");
    }

    #[test]
    fn a_table_function_reads_a_view_and_keeps_the_event_time() {
        let doc = compiled(
            "CREATE VIEW big AS SELECT * FROM transactions WHERE amount > 100;
             CREATE VIEW flagged AS SELECT * FROM rules(TABLE big PARTITION BY card_id, factor => 2) AS r;
             INSERT INTO out SELECT card_id, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS minute, COUNT(*) AS n
             FROM flagged GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let edges = strings(&doc["edges"]);
        assert!(edges.contains(&"big_where -> rules"), "{edges:?}");
        assert!(
            edges.iter().any(|e| e.starts_with("rules -> ")),
            "{edges:?}"
        );
    }
}
