//! `CREATE TABLE`: the tables a SQL pipeline reads and writes, their columns, event time,
//! primary key (`PRIMARY KEY (column) NOT ENFORCED`, trusted) and connector options; and the
//! `WATERMARK FOR` clause, which the SQL parser does not know and which is taken out of the
//! token stream before parsing.

use sqlparser::ast::{
    ColumnDef, ColumnOption, CreateTable, CreateTableOptions, Expr, Ident, Spanned, SqlOption,
    TableConstraint,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Word};

use super::error::{Source, SqlError};

/// `WATERMARK FOR column AS column [- INTERVAL …]`.
#[derive(Debug, Clone)]
pub(crate) struct Watermark {
    pub(crate) column: String,
    pub(crate) delay_ms: i64,
    pub(crate) span: Span,
}

/// A `WATERMARK` clause found in the tokens of statement number `statement`.
pub(crate) struct Found {
    pub(crate) statement: usize,
    pub(crate) watermark: Watermark,
}

/// Removes every `WATERMARK FOR …` clause from `tokens` (with the comma before it) and parses
/// it.
pub(crate) fn take_watermarks(
    source: Source<'_>,
    tokens: &mut Vec<TokenWithSpan>,
) -> Result<Vec<Found>, SqlError> {
    let mut found = Vec::new();
    let mut statement = 0;
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].token {
            Token::SemiColon if depth == 0 => statement += 1,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 1 && is_word(w, "WATERMARK") && next_is_for(tokens, i) => {
                // The clause runs to the next comma or closing parenthesis at this depth.
                let mut end = i;
                let mut inner = 0usize;
                while end < tokens.len() {
                    match tokens[end].token {
                        Token::LParen => inner += 1,
                        Token::RParen if inner == 0 => break,
                        Token::RParen => inner -= 1,
                        Token::Comma if inner == 0 => break,
                        _ => {}
                    }
                    end += 1;
                }
                let clause: Vec<TokenWithSpan> = tokens[i..end].to_vec();
                let watermark = parse_watermark(source, &clause)?;
                // Drop the comma before the clause (or after it, when it comes first).
                let start = match previous_significant(tokens, i) {
                    Some(p) if tokens[p].token == Token::Comma => p,
                    _ => i,
                };
                let end = if start == i && tokens.get(end).is_some_and(|t| t.token == Token::Comma)
                {
                    end + 1
                } else {
                    end
                };
                tokens.drain(start..end);
                found.push(Found {
                    statement,
                    watermark,
                });
                i = start;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(found)
}

/// `FOR SYSTEM_TIME AS OF column` after a table in `FROM` (a temporal join's right side): found
/// by the start of the table's name, with the column.
pub(crate) struct Version {
    pub(crate) table_at: sqlparser::tokenizer::Location,
    pub(crate) column: Expr,
    pub(crate) span: Span,
}

/// Removes every `FOR SYSTEM_TIME AS OF column` from `tokens` and returns them.
pub(crate) fn take_versions(
    source: Source<'_>,
    tokens: &mut Vec<TokenWithSpan>,
) -> Result<Vec<Version>, SqlError> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let is = |at: Option<usize>, keyword: &str| {
            at.and_then(|a| tokens.get(a))
                .is_some_and(|t| matches!(&t.token, Token::Word(w) if is_word(w, keyword)))
        };
        if !is(Some(i), "FOR") {
            i += 1;
            continue;
        }
        let system_time = next_significant(tokens, i);
        let as_ = system_time.and_then(|a| next_significant(tokens, a));
        let of = as_.and_then(|a| next_significant(tokens, a));
        if !(is(system_time, "SYSTEM_TIME") && is(as_, "AS") && is(of, "OF")) {
            i += 1;
            continue;
        }
        let usage = "expected FOR SYSTEM_TIME AS OF column (the event-time column of the left side, e.g. t.ts), or AS OF PROCTIME() (a lookup join)";
        let table_at = previous_significant(tokens, i)
            .map(|p| tokens[p].span.start)
            .ok_or_else(|| source.error(tokens[i].span, usage))?;
        // The column: `name` or `alias.name`; or `PROCTIME()`.
        let mut end = next_significant(tokens, of.expect("matched"))
            .ok_or_else(|| source.error(tokens[i].span, usage))?;
        if !matches!(tokens[end].token, Token::Word(_)) {
            return Err(source.error(tokens[end].span, usage));
        }
        if is(Some(end), "PROCTIME")
            && let Some(open) = next_significant(tokens, end)
            && tokens[open].token == Token::LParen
            && let Some(close) = next_significant(tokens, open)
            && tokens[close].token == Token::RParen
        {
            end = close;
        }
        while let Some(dot) = next_significant(tokens, end)
            && tokens[dot].token == Token::Period
            && let Some(part) = next_significant(tokens, dot)
            && matches!(tokens[part].token, Token::Word(_))
        {
            end = part;
        }
        let span = tokens[i].span.union(&tokens[end].span);
        let column_tokens: Vec<TokenWithSpan> = tokens[of.expect("matched") + 1..=end].to_vec();
        let column = Parser::new(&GenericDialect {})
            .with_tokens_with_locations(column_tokens)
            .parse_expr()
            .map_err(|e| source.error(span, format!("{e}; {usage}")))?;
        tokens.drain(i..=end);
        found.push(Version {
            table_at,
            column,
            span,
        });
    }
    Ok(found)
}

pub(super) fn next_significant(tokens: &[TokenWithSpan], i: usize) -> Option<usize> {
    (i + 1..tokens.len()).find(|p| !matches!(tokens[*p].token, Token::Whitespace(_)))
}

pub(super) fn is_word(w: &Word, keyword: &str) -> bool {
    w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword)
}

fn next_is_for(tokens: &[TokenWithSpan], i: usize) -> bool {
    tokens[i + 1..]
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .is_some_and(|t| matches!(&t.token, Token::Word(w) if is_word(w, "FOR")))
}

pub(super) fn previous_significant(tokens: &[TokenWithSpan], i: usize) -> Option<usize> {
    (0..i)
        .rev()
        .find(|p| !matches!(tokens[*p].token, Token::Whitespace(_)))
}

fn parse_watermark(source: Source<'_>, clause: &[TokenWithSpan]) -> Result<Watermark, SqlError> {
    let span = clause
        .iter()
        .map(|t| t.span)
        .reduce(|a, b| a.union(&b))
        .unwrap_or(Span::empty());
    let usage = "expected WATERMARK FOR column AS column, or AS column - INTERVAL '5' SECOND";
    let mut parser = Parser::new(&GenericDialect {}).with_tokens_with_locations(clause.to_vec());
    let parsed = (|| {
        // `WATERMARK` is not one of the parser's keywords: the caller matched it.
        parser.next_token();
        parser.expect_keyword(sqlparser::keywords::Keyword::FOR)?;
        let column = parser.parse_identifier()?;
        parser.expect_keyword(sqlparser::keywords::Keyword::AS)?;
        let expr = parser.parse_expr()?;
        Ok::<_, sqlparser::parser::ParserError>((column, expr))
    })();
    let (column, expr) = parsed.map_err(|e| source.error(span, format!("{e}; {usage}")))?;
    let same_column =
        |e: &Expr| matches!(e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(&column.value));
    let delay_ms = match &expr {
        e if same_column(e) => 0,
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Minus,
            right,
        } if same_column(left) => match right.as_ref() {
            Expr::Interval(interval) => interval_ms(source, interval, right.span())?,
            other => return Err(source.error(other.span(), usage)),
        },
        other => return Err(source.error(other.span(), usage)),
    };
    Ok(Watermark {
        column: column.value,
        delay_ms,
        span,
    })
}

/// An interval as milliseconds (months do not have a fixed length, so they are refused).
pub(crate) fn interval_ms(
    source: Source<'_>,
    interval: &sqlparser::ast::Interval,
    span: Span,
) -> Result<i64, SqlError> {
    let amount = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s) | sqlparser::ast::Value::Number(s, _) => {
                s.clone()
            }
            _ => return Err(source.error(span, "expected an interval such as INTERVAL '5' SECOND")),
        },
        _ => return Err(source.error(span, "expected an interval such as INTERVAL '5' SECOND")),
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{amount} {field}"),
        None => amount,
    };
    let value = arrow_cast::parse::parse_interval_month_day_nano(&text)
        .map_err(|e| source.error(span, format!("not an interval: {e}")))?;
    if value.months != 0 {
        return Err(source.error(
            span,
            "an interval of months or years has no fixed length: use days",
        ));
    }
    let ms = i64::from(value.days) * 86_400_000 + value.nanoseconds / 1_000_000;
    if ms <= 0 {
        return Err(source.error(span, format!("expected a positive interval, got {ms} ms")));
    }
    Ok(ms)
}

/// A value of a `WITH (…)` option.
#[derive(Debug, Clone)]
pub(crate) struct Opt {
    pub(crate) key: String,
    pub(crate) value: toml::Value,
}

/// A table of `CREATE TABLE`.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) span: Span,
    pub(crate) connector: String,
    pub(crate) columns: Vec<(String, String, Span)>,
    pub(crate) options: Vec<Opt>,
    pub(crate) watermark: Option<Watermark>,
    /// `PRIMARY KEY (column) NOT ENFORCED`: a column the table's rows are declared not to
    /// share (not checked: a query planned on it trusts it), and where it is written.
    pub(crate) primary_key: Option<(String, Span)>,
}

/// Options whose values stay text even when they look like numbers.
const TEXT_OPTIONS: &[&str] = &[
    "path",
    "topic",
    "topics",
    "group",
    "bootstrap",
    "key",
    "format",
    "kind",
    "name",
    "dead_letter",
    "state",
];

pub(crate) fn table(
    source: Source<'_>,
    create: &CreateTable,
    watermark: Option<Watermark>,
) -> Result<Table, SqlError> {
    let name = object_name(source, &create.name)?;
    let span = create.name.span();
    if create.query.is_some() || create.like.is_some() || create.clone.is_some() {
        return Err(source.error(
            span,
            format!("table `{name}`: CREATE TABLE … AS/LIKE/CLONE is not supported; declare columns and WITH ('connector' = …)"),
        ));
    }
    let with = match &create.table_options {
        CreateTableOptions::With(options) => options.as_slice(),
        CreateTableOptions::None => &[],
        _ => {
            return Err(source.error(
                span,
                format!("table `{name}`: expected WITH ('connector' = '…', …)"),
            ));
        }
    };
    let mut options = Vec::new();
    let mut connector = None;
    for option in with {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(source.error(
                option.span(),
                format!("table `{name}`: expected 'key' = value options"),
            ));
        };
        let value_span = value.span();
        let key_name = key.value.to_ascii_lowercase();
        let value = option_value(&key_name, value).map_err(|message| {
            source.error(
                value_span,
                format!("table `{name}`, option '{key_name}': {message}"),
            )
        })?;
        if key_name == "connector" {
            let known = [
                "file",
                "generator",
                "kafka",
                "nexmark",
                "stdout",
                "blackhole",
            ];
            let text = value.as_str().map(str::to_owned).ok_or_else(|| {
                source.error(value_span, format!("table `{name}`: 'connector' is text"))
            })?;
            if !known.contains(&text.as_str()) {
                return Err(source.error(
                    value_span,
                    format!(
                        "table `{name}`: unknown connector '{text}' (expected one of: {})",
                        known.join(", ")
                    ),
                ));
            }
            connector = Some(text);
            continue;
        }
        if options.iter().any(|o: &Opt| o.key == key_name) {
            return Err(source.error(
                key.span,
                format!("table `{name}`: option '{key_name}' given twice"),
            ));
        }
        options.push(Opt {
            key: key_name,
            value,
        });
    }
    let connector = connector.ok_or_else(|| {
        source.error(
            span,
            format!("table `{name}` has no connector: add WITH ('connector' = 'file' | 'generator' | 'kafka' | 'stdout' | 'blackhole', …)"),
        )
    })?;
    let columns = create
        .columns
        .iter()
        .map(|c| column(source, &name, c))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(w) = &watermark
        && !columns.is_empty()
        && !columns
            .iter()
            .any(|(c, _, _)| c.eq_ignore_ascii_case(&w.column))
    {
        return Err(source.error(
            w.span,
            format!(
                "table `{name}`: the watermark's column `{}` is not one of its columns",
                w.column
            ),
        ));
    }
    let primary_key = primary_key(source, &name, create)?;
    if let Some((key, span)) = &primary_key
        && !columns.is_empty()
        && !columns.iter().any(|(c, _, _)| c == key)
    {
        return Err(source.error(
            *span,
            format!("table `{name}`: the primary key `{key}` is not one of its columns"),
        ));
    }
    Ok(Table {
        name,
        span,
        connector,
        columns,
        options,
        watermark,
        primary_key,
    })
}

/// The table's `PRIMARY KEY (column) NOT ENFORCED`, the one constraint a table takes: Sabot
/// does not check it (as Flink, it trusts it), so it must say `NOT ENFORCED`.
fn primary_key(
    source: Source<'_>,
    table: &str,
    create: &CreateTable,
) -> Result<Option<(String, Span)>, SqlError> {
    let usage = "expected PRIMARY KEY (column) NOT ENFORCED";
    let mut found: Option<(String, Span)> = None;
    let mut one = |column: String, span: Span, enforced: Option<bool>| {
        if found.is_some() {
            return Err(source.error(
                span,
                format!("table `{table}` has one primary key; this is a second"),
            ));
        }
        if enforced != Some(false) {
            return Err(source.error(
                span,
                format!("table `{table}`: Sabot does not check that rows' keys differ, so the primary key must say so: PRIMARY KEY ({column}) NOT ENFORCED"),
            ));
        }
        found = Some((column, span));
        Ok(())
    };
    for c in &create.columns {
        for o in &c.options {
            if let ColumnOption::PrimaryKey(key) = &o.option {
                let enforced = key.characteristics.and_then(|c| c.enforced);
                one(c.name.value.clone(), c.name.span, enforced)?;
            }
        }
    }
    for constraint in &create.constraints {
        let span = constraint.span();
        let TableConstraint::PrimaryKey(key) = constraint else {
            return Err(source.error(
                span,
                format!("table `{table}`: `{constraint}` is not supported; a table takes one constraint, PRIMARY KEY (column) NOT ENFORCED"),
            ));
        };
        let column = match key.columns.as_slice() {
            [c] => {
                match &c.column.expr {
                    Expr::Identifier(ident) => ident.value.clone(),
                    other => {
                        return Err(source.error(
                        span,
                        format!("table `{table}`: the primary key is a column, not `{other}`; {usage}"),
                    ));
                    }
                }
            }
            _ => {
                return Err(source.error(
                    span,
                    format!("table `{table}`: a primary key of {} columns is not supported; {usage} (combine the columns into one in a view first)", key.columns.len()),
                ));
            }
        };
        one(column, span, key.characteristics.and_then(|c| c.enforced))?;
    }
    Ok(found)
}

fn column(
    source: Source<'_>,
    table: &str,
    c: &ColumnDef,
) -> Result<(String, String, Span), SqlError> {
    use sqlparser::ast::DataType as S;
    let ty = match &c.data_type {
        S::Boolean | S::Bool => "bool",
        S::TinyInt(_) => "int8",
        S::SmallInt(_) | S::Int2(_) => "int16",
        S::Int(_) | S::Integer(_) | S::Int4(_) => "int32",
        S::BigInt(_) | S::Int8(_) | S::Int64 => "int64",
        S::Float(_) | S::Real | S::Float4 | S::Float32 => "float32",
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => "float64",
        S::Varchar(_) | S::Text | S::String(_) | S::Char(_) | S::CharVarying(_) => "string",
        S::Bytes(_) | S::Varbinary(_) | S::Binary(_) | S::Bytea | S::Blob(_) => "binary",
        S::Date => "date",
        S::Timestamp(_, _) | S::Datetime(_) => "timestamp",
        other => {
            return Err(source.error(
                c.name.span,
                format!("table `{table}`, column `{}`: the type {other} is not supported (expected BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, VARCHAR, BYTES, DATE or TIMESTAMP)", c.name.value),
            ));
        }
    };
    // `id BIGINT PRIMARY KEY NOT ENFORCED` is the table's primary key (see `primary_key`).
    if c.options
        .iter()
        .any(|o| !matches!(o.option, ColumnOption::PrimaryKey(_)))
    {
        return Err(source.error(
            c.name.span,
            format!("table `{table}`, column `{}`: column options (NOT NULL, DEFAULT, …) are not supported; a column takes PRIMARY KEY NOT ENFORCED", c.name.value),
        ));
    }
    Ok((c.name.value.clone(), ty.to_owned(), c.name.span))
}

/// A `WITH` value as TOML: numbers and booleans as such, text as text — and text that spells a
/// number or a boolean as that number or boolean (Flink writes every option as text), except for
/// options that are always text.
pub(crate) fn option_value(key: &str, value: &Expr) -> Result<toml::Value, String> {
    let literal = match value {
        Expr::Value(v) => &v.value,
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                sqlparser::ast::Value::Number(n, _) => {
                    return number(&format!("-{n}"))
                        .ok_or_else(|| format!("`-{n}` is not a number"));
                }
                _ => return Err("expected a literal".into()),
            },
            _ => return Err("expected a literal".into()),
        },
        Expr::Identifier(Ident { value, .. }) => return Ok(toml::Value::String(value.clone())),
        _ => return Err(format!("expected a literal, got `{value}`")),
    };
    Ok(match literal {
        sqlparser::ast::Value::Number(n, _) => {
            number(n).ok_or_else(|| format!("`{n}` is not a number"))?
        }
        sqlparser::ast::Value::Boolean(b) => toml::Value::Boolean(*b),
        sqlparser::ast::Value::SingleQuotedString(s)
        | sqlparser::ast::Value::DoubleQuotedString(s) => {
            let textual = TEXT_OPTIONS.contains(&key) || key.starts_with("properties.");
            match (textual, s.as_str()) {
                (false, "true") => toml::Value::Boolean(true),
                (false, "false") => toml::Value::Boolean(false),
                (false, n) if number(n).is_some() => number(n).expect("checked"),
                _ => toml::Value::String(s.clone()),
            }
        }
        other => {
            return Err(format!(
                "expected text, a number or a boolean, got `{other}`"
            ));
        }
    })
}

fn number(n: &str) -> Option<toml::Value> {
    if let Ok(i) = n.parse::<i64>() {
        return Some(toml::Value::Integer(i));
    }
    n.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(toml::Value::Float)
}

/// A table's name: one plain part.
pub(crate) fn object_name(
    source: Source<'_>,
    name: &sqlparser::ast::ObjectName,
) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [part] => part.as_ident().map(|i| i.value.clone()).ok_or_else(|| {
            source.error(name.span(), format!("expected a table name, got `{name}`"))
        }),
        _ => Err(source.error(
            name.span(),
            format!("expected a table name without a schema or catalog, got `{name}`"),
        )),
    }
}

/// The TOML table of a source: its connector, options, declared schema and event time.
pub(crate) fn source_document(table: &Table) -> toml::Value {
    let mut source = toml::Table::new();
    source.insert("type".into(), table.connector.clone().into());
    put_options(&mut source, table);
    if !table.columns.is_empty() && matches!(table.connector.as_str(), "file" | "kafka") {
        let mut schema = toml::Table::new();
        for (column, ty, _) in &table.columns {
            schema.insert(column.clone(), ty.clone().into());
        }
        source.insert("schema".into(), schema.into());
    }
    if let Some(w) = &table.watermark {
        let mut event_time = toml::Table::new();
        event_time.insert("column".into(), w.column.clone().into());
        event_time.insert("max_out_of_orderness_ms".into(), w.delay_ms.into());
        source.insert("event_time".into(), event_time.into());
    }
    source.into()
}

/// `WITH` options into a connector's table: `'properties.x'` and `'avro.x'` into nested tables.
pub(crate) fn put_options(into: &mut toml::Table, table: &Table) {
    for option in &table.options {
        match option.key.split_once('.') {
            Some((group @ ("properties" | "avro" | "event_time" | "tls" | "sasl"), rest)) => {
                let nested = into
                    .entry(group.to_owned())
                    .or_insert_with(|| toml::Table::new().into());
                if let Some(t) = nested.as_table_mut() {
                    t.insert(rest.to_owned(), option.value.clone());
                }
            }
            _ => {
                into.insert(option.key.clone(), option.value.clone());
            }
        }
    }
}
