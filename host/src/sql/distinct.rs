//! Joins of distinct groups: a window join of two queries that each keep only the distinct
//! groups of a tumbling window (`GROUP BY seller, TUMBLE(date_time, …)` with no aggregate, as
//! Nexmark q8 asks "who registered, and who opened an auction, in this window") is planned as
//! a window join of the rows they group, then one window that keeps each joined group once.
//!
//! The two plans give the same rows: the distinct groups of each side, joined on the key and
//! the window, are the distinct groups of the joined rows (a join condition that reads only
//! grouped columns and the window cannot tell two rows of one group apart). The rewritten plan
//! has one keyed operator fewer, and the join reads each side's rows without waiting for a
//! window of them to close. Anything else (a side that is not such a query, a name that
//! would collide) is planned as written.

use std::collections::{HashMap, HashSet};

use arrow_schema::SchemaRef;
use sqlparser::tokenizer::Span;

use super::error::SqlError;
use super::plan::{Planner, Stream, quote};
use super::window::{COMPOSITE_KEY, canonical, composite_key};

/// How to compute a query's rows when they are the distinct groups of tumbling windows,
/// selected as plain columns, from the rows before the window.
#[derive(Debug, Clone)]
pub(super) struct Distinct {
    /// The node that emits exactly these rows: what this describes only while the stream is
    /// that node's (any agent after it changes its rows).
    pub(super) output: String,
    /// The rows grouped.
    pub(super) input: Stream,
    /// The input's event-time column, which the window reads.
    pub(super) time: String,
    pub(super) size_ms: i64,
    /// The output columns, by name.
    pub(super) columns: Vec<(String, Column)>,
}

/// What a column of a distinct query's rows is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Column {
    /// A grouped column of the input (its name there).
    Group(String),
    /// The window's start.
    Start,
    /// The window's end.
    End,
}

impl Distinct {
    /// The same rows after a select list that renames columns (`id AS seller`,
    /// `window_start AS starttime`), or `None` when an item computes anything.
    pub(super) fn select(&self, items: &[(String, String)], output: &str) -> Option<Distinct> {
        let columns = items
            .iter()
            .map(|(column, name)| {
                let (_, what) = self.columns.iter().find(|(c, _)| c == column)?;
                Some((name.clone(), what.clone()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Distinct {
            output: output.to_owned(),
            columns,
            ..self.clone()
        })
    }

    fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, what)| what)
    }
}

/// The distinct description of `stream`, while it is still the rows it describes.
pub(super) fn of(stream: &Stream) -> Option<Distinct> {
    let d = stream.distinct.as_deref()?;
    (stream.nodes.len() == 1 && stream.nodes[0] == d.output).then(|| d.clone())
}

/// What the planned join of two distinct queries is, to rewrite it.
pub(super) struct WindowJoin<'s> {
    pub(super) left: &'s Distinct,
    pub(super) right: &'s Distinct,
    /// The columns each side keeps into the join (after pruning).
    pub(super) left_schema: &'s SchemaRef,
    pub(super) right_schema: &'s SchemaRef,
    /// The join key (one name on both sides).
    pub(super) key: &'s str,
    /// The planned join's output (the left columns, then the right ones except the key,
    /// renamed where they clash), which the rewrite gives too.
    pub(super) output: &'s SchemaRef,
    /// The right columns' names in that output.
    pub(super) renames: &'s HashMap<String, String>,
}

impl Planner<'_> {
    /// Plans `join` as a window join of the rows both sides group, then one window of the
    /// distinct joined groups; `None` (and nothing added) when the sides do not allow it.
    pub(super) fn join_distinct(
        &mut self,
        join: &WindowJoin<'_>,
        hint: &str,
        span: Span,
    ) -> Result<Option<Stream>, SqlError> {
        let Some((left, right)) = sides(join) else {
            return Ok(None);
        };
        let (l, r) = (join.left, join.right);
        let size = l.size_ms;
        // The groups of the joined rows, each once per window: by one text key that encodes
        // them all when they are several, as a GROUP BY of several columns is — computed on
        // the left rows when they hold every group column (one agent and one hop fewer).
        let groups: Vec<&str> = left
            .groups
            .iter()
            .chain(right.groups.iter().skip(1))
            .map(|g| g.joined.as_str())
            .collect();
        let composite = groups.len() > 1;
        let keyed_left = composite && right.groups.len() == 1;

        let rows = |planner: &mut Self, d: &Distinct, side: &Side, suffix: &str, key: bool| {
            let inputs: Vec<String> = side.groups.iter().map(|g| g.input.clone()).collect();
            let items: Vec<String> = side
                .groups
                .iter()
                .map(|g| renamed(&g.input, &g.name))
                .chain([quote(&side.time)])
                .chain(key.then(|| format!("{} AS {COMPOSITE_KEY}", composite_key(&inputs))))
                .collect();
            let agent = planner.fresh(&format!("{hint}_{suffix}"));
            planner.project(&agent, &d.input, &items, span)
        };
        let left_rows = rows(self, l, &left, "left_rows", keyed_left)?;
        let right_rows = rows(self, r, &right, "right_rows", false)?;
        let mut config = toml::Table::new();
        config.insert("kind".into(), "window".into());
        config.insert("size_ms".into(), size.into());
        config.insert("key".into(), join.key.into());
        config.insert("time".into(), left.time.clone().into());
        if right.time != left.time {
            config.insert("right_time".into(), right.time.clone().into());
        }
        let agent = self.fresh(&format!("{hint}_join"));
        self.agent(&agent, "builtin:join", config, Some(join.key), &left_rows);
        self.edges
            .push(format!("{} -> {agent}", right_rows.nodes[0]));
        let mut joined = Stream::rows(vec![agent], None, Some(left.time.clone()));

        let window_key = if keyed_left {
            COMPOSITE_KEY.to_owned()
        } else if composite {
            let agent = self.fresh(&format!("{hint}_groups"));
            let names: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            let items = [
                "*".to_owned(),
                format!("{} AS {COMPOSITE_KEY}", composite_key(&names)),
            ];
            joined = self.project(&agent, &joined, &items, span)?;
            COMPOSITE_KEY.to_owned()
        } else {
            groups[0].to_owned()
        };
        let aggregates: Vec<toml::Value> = std::iter::once("count(*) AS agg0_".to_owned())
            .chain(
                groups
                    .iter()
                    .filter(|_| composite)
                    .map(|g| format!("first({}) AS {}", quote(g), quote(g))),
            )
            .map(Into::into)
            .collect();
        let mut config = toml::Table::new();
        config.insert("kind".into(), "tumbling".into());
        config.insert("size_ms".into(), size.into());
        config.insert("time".into(), left.time.clone().into());
        config.insert("key".into(), window_key.clone().into());
        config.insert("aggregates".into(), toml::Value::Array(aggregates));
        let window = self.fresh(&format!("{hint}_once"));
        self.agent(
            &window,
            "builtin:window",
            config,
            Some(&window_key),
            &joined,
        );

        // The planned join's columns, in its order and under its names.
        let mut items = Vec::new();
        for (name, what) in columns(join) {
            items.push(match what {
                Column::Group(input) => {
                    let side = if join.left_schema.field_with_name(name).is_ok() {
                        &left
                    } else {
                        &right
                    };
                    let g = side
                        .groups
                        .iter()
                        .find(|g| g.input == *input)
                        .expect("each grouped column is kept");
                    renamed(&g.joined, name)
                }
                Column::Start => format!("window_start AS {}", quote(name)),
                Column::End => format!("window_end AS {}", quote(name)),
            });
        }
        let select = self.fresh(&format!("{hint}_distinct"));
        let once = Stream::rows(vec![window], None, None);
        let nodes = self.project(&select, &once, &items, span)?.nodes;
        Ok(Some(Stream::rows(nodes, Some(join.output.clone()), None)))
    }
}

/// A grouped column one side of the rewritten join keeps.
struct Group {
    /// Its name in the rows the side groups.
    input: String,
    /// Its name in the join's input.
    name: String,
    /// Its name in the join's output.
    joined: String,
}

/// One side of the rewritten join: the grouped columns it keeps (the key first on the right),
/// and its time column.
struct Side {
    groups: Vec<Group>,
    time: String,
}

/// Each output column of the planned join with what it is, in order.
fn columns<'j>(join: &'j WindowJoin<'_>) -> impl Iterator<Item = (&'j String, &'j Column)> {
    let original: HashMap<&str, &str> = join
        .renames
        .iter()
        .map(|(from, to)| (to.as_str(), from.as_str()))
        .collect();
    join.output.fields().iter().filter_map(move |f| {
        let name = f.name();
        let what = if join.left_schema.field_with_name(name).is_ok() {
            join.left.column(name)?
        } else {
            join.right
                .column(original.get(name.as_str()).copied().unwrap_or(name))?
        };
        Some((name, what))
    })
}

/// The sides of the rewritten join, when both are distinct queries of one window size over
/// rows with event time, joined on a grouped column, and no two columns of the join's inputs
/// or output would have one name.
fn sides(join: &WindowJoin<'_>) -> Option<(Side, Side)> {
    let (l, r) = (join.left, join.right);
    let shaped = l.size_ms == r.size_ms
        && l.input.time.as_deref() == Some(l.time.as_str())
        && r.input.time.as_deref() == Some(r.time.as_str())
        && !l.input.updating
        && !r.input.updating
        && l.input.nodes.len() == 1
        && r.input.nodes.len() == 1;
    if !shaped || columns(join).count() != join.output.fields().len() {
        return None;
    }
    let (Some(Column::Group(left_key)), Some(Column::Group(right_key))) =
        (l.column(join.key), r.column(join.key))
    else {
        return None;
    };
    let kept = |d: &Distinct, schema: &SchemaRef, skip: Option<&str>| -> Vec<Group> {
        schema
            .fields()
            .iter()
            .filter(|f| Some(f.name().as_str()) != skip)
            .filter_map(|f| match d.column(f.name())? {
                Column::Group(input) => Some(Group {
                    input: input.clone(),
                    name: f.name().clone(),
                    joined: f.name().clone(),
                }),
                _ => None,
            })
            .collect()
    };
    let key = |input: &String| Group {
        input: input.clone(),
        name: join.key.to_owned(),
        joined: join.key.to_owned(),
    };
    let mut left = Side {
        groups: kept(l, join.left_schema, None),
        time: l.time.clone(),
    };
    if !left.groups.iter().any(|g| g.name == join.key) {
        left.groups.push(key(left_key));
    }
    let mut right = Side {
        groups: std::iter::once(key(right_key))
            .chain(kept(r, join.right_schema, Some(join.key)))
            .collect(),
        time: r.time.clone(),
    };
    let reserved = |side: &Side| side.names().any(|n| n == COMPOSITE_KEY);
    if !unique(left.names()) || !unique(right.names()) || reserved(&left) || reserved(&right) {
        return None;
    }
    // The join's output: the left columns, then the right ones but the key, renamed
    // `right_NAME` where a left column has the name (as the join operator names them).
    let left_names: HashSet<String> = left.names().map(str::to_owned).collect();
    let joined = |name: &str| {
        if left_names.contains(name) {
            format!("right_{name}")
        } else {
            name.to_owned()
        }
    };
    for g in right.groups.iter_mut().skip(1) {
        g.joined = joined(&g.name);
    }
    let outputs: Vec<String> = left
        .names()
        .map(str::to_owned)
        .chain(right.names().skip(1).map(joined))
        .collect();
    if !unique(outputs.iter().map(String::as_str)) {
        return None;
    }
    // Every grouped column has a type the window's text key and `first` read.
    let typed = |d: &Distinct, side: &Side| {
        d.input.schema.as_ref().is_some_and(|schema| {
            side.groups.iter().all(|g| {
                schema
                    .field_with_name(&g.input)
                    .is_ok_and(|f| canonical(f.data_type()).is_some())
            })
        })
    };
    (typed(l, &left) && typed(r, &right)).then_some((left, right))
}

/// Whether no two of `names` are alike.
fn unique<'n>(names: impl IntoIterator<Item = &'n str>) -> bool {
    let mut seen = HashSet::new();
    names.into_iter().all(|n| seen.insert(n))
}

impl Side {
    /// The names of the columns this side gives the join: its groups, then its time.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .map(|g| g.name.as_str())
            .chain([self.time.as_str()])
    }
}

/// The select item giving column `from` the name `to`.
fn renamed(from: &str, to: &str) -> String {
    if from == to {
        quote(to)
    } else {
        format!("{} AS {}", quote(from), quote(to))
    }
}

/// Removes the agents in `abandoned` that feed nothing, and then those of their inputs that
/// feed nothing any more, with their edges. A materialized view's agent (which feeds nothing by
/// design) and sources are never removed. Each edge is read once, so this takes time linear in
/// the pipeline however many joins were rewritten.
pub(super) fn remove_abandoned(
    abandoned: Vec<String>,
    agents: &mut toml::Table,
    edges: &mut Vec<String>,
) {
    if abandoned.is_empty() {
        return;
    }
    // A node's name, without the output port of `node:1`.
    let node = |end: &str| end.split(':').next().unwrap_or(end).trim().to_owned();
    let ends: Vec<Option<(String, String)>> = edges
        .iter()
        .map(|e| {
            e.split_once(" -> ")
                .map(|(from, to)| (node(from), node(to)))
        })
        .collect();
    let mut feeds: HashMap<&str, usize> = HashMap::new();
    let mut inputs: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (from, to)) in ends
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((i, e.as_ref()?)))
    {
        *feeds.entry(from.as_str()).or_default() += 1;
        inputs.entry(to.as_str()).or_default().push(i);
    }
    let mut dropped = vec![false; ends.len()];
    let mut work = abandoned;
    while let Some(name) = work.pop() {
        let removable = agents
            .get(&name)
            .and_then(|a| a.get("module"))
            .and_then(toml::Value::as_str)
            .is_some_and(|m| m != "builtin:view");
        if !removable || feeds.get(name.as_str()).copied().unwrap_or(0) > 0 {
            continue;
        }
        agents.remove(&name);
        for &i in inputs.get(name.as_str()).into_iter().flatten() {
            if std::mem::replace(&mut dropped[i], true) {
                continue;
            }
            let (from, _) = ends[i].as_ref().expect("an edge into the node");
            if let Some(n) = feeds.get_mut(from.as_str()) {
                *n -= 1;
            }
            work.push(from.clone());
        }
    }
    let mut index = 0;
    edges.retain(|_| {
        index += 1;
        !dropped[index - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ok, strings};

    const VIEWS: &str = "
        CREATE VIEW big AS
        SELECT card_id, country, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS s,
               TUMBLE_END(ts, INTERVAL '1' MINUTE) AS e
        FROM transactions WHERE amount > 1000
        GROUP BY card_id, country, TUMBLE(ts, INTERVAL '1' MINUTE);
        CREATE VIEW cards AS
        SELECT card_id, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS s,
               TUMBLE_END(ts, INTERVAL '1' MINUTE) AS e
        FROM transactions
        GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);
    ";

    const JOIN: &str = "INSERT INTO out
        SELECT b.card_id, b.country, b.s, c.e AS until
        FROM big AS b JOIN cards AS c ON b.card_id = c.card_id AND b.s = c.s AND b.e = c.e;";

    /// How many agents of `doc` run `module`.
    fn running(doc: &toml::Table, module: &str) -> usize {
        doc["agents"]
            .as_table()
            .unwrap()
            .values()
            .filter(|a| a["module"].as_str() == Some(module))
            .count()
    }

    /// Every agent feeds something: nothing the rewrite stopped reading is left behind.
    fn assert_nothing_dangles(doc: &toml::Table) {
        let edges = strings(&doc["edges"]);
        for name in doc["agents"].as_table().unwrap().keys() {
            assert!(
                edges.iter().any(|e| e.starts_with(&format!("{name} -> "))),
                "`{name}` feeds nothing: {doc}"
            );
        }
    }

    #[test]
    fn a_join_of_two_queries_of_distinct_groups_joins_their_rows_then_keeps_each_group_once() {
        let doc = ok(&format!("{VIEWS}{JOIN}"));
        assert_eq!(running(&doc, "builtin:join"), 1, "{doc}");
        assert_eq!(running(&doc, "builtin:window"), 1, "{doc}");
        assert_nothing_dangles(&doc);
        let join = super::super::tests::agent_running(&doc, "builtin:join");
        assert_eq!(join["config"]["kind"].as_str(), Some("window"));
        assert_eq!(join["config"]["size_ms"].as_integer(), Some(60_000));
        assert_eq!(join["config"]["key"].as_str(), Some("card_id"));
        assert_eq!(join["config"]["time"].as_str(), Some("ts"));
        let window = super::super::tests::agent_running(&doc, "builtin:window");
        assert_eq!(window["config"]["time"].as_str(), Some("ts"));
        // The groups are the left side's (card and country): one row per pair and window.
        let aggregates = strings(&window["config"]["aggregates"]);
        assert!(
            aggregates.contains(&"first(country) AS country"),
            "{aggregates:?}"
        );
        // The columns are the ones the join of the two views has, under the query's names.
        let edges = strings(&doc["edges"]);
        let last = edges.iter().find(|e| e.ends_with(" -> out")).unwrap();
        let select = &doc["agents"][last.split(" -> ").next().unwrap()]["config"]["select"];
        assert_eq!(
            strings(select),
            [
                "card_id",
                "country",
                "window_start AS s",
                "window_end AS until"
            ]
        );
    }

    #[test]
    fn a_join_of_windows_with_aggregates_or_a_filter_is_planned_as_written() {
        for (what, views) in [
            (
                "an aggregate",
                VIEWS.replace(
                    "AS e\n        FROM transactions\n",
                    "AS e, COUNT(*) AS n\n        FROM transactions\n",
                ),
            ),
            (
                "HAVING",
                VIEWS.replace("MINUTE);\n    ", "MINUTE) HAVING COUNT(*) > 1;\n    "),
            ),
        ] {
            assert_ne!(views, VIEWS, "{what}");
            let doc = ok(&format!("{views}{JOIN}"));
            assert_eq!(running(&doc, "builtin:window"), 2, "{what}: {doc}");
            assert_nothing_dangles(&doc);
        }
        // A filter after the distinct groups: the rows are no longer all the groups.
        let doc = ok(&format!(
            "{VIEWS}CREATE VIEW some AS SELECT * FROM cards WHERE card_id > 3;
             {}",
            JOIN.replace("JOIN cards", "JOIN some")
        ));
        assert_eq!(running(&doc, "builtin:window"), 2, "{doc}");
    }

    #[test]
    fn a_query_of_distinct_groups_that_another_query_reads_is_kept_for_it() {
        let doc = ok(&format!(
            "{VIEWS}CREATE TABLE all_cards WITH ('connector' = 'file', 'path' = 'cards.jsonl');
             INSERT INTO all_cards SELECT * FROM cards;
             {JOIN}"
        ));
        // The cards' window for `all_cards`, and the one after the join; `big`'s is gone.
        assert_eq!(running(&doc, "builtin:window"), 2, "{doc}");
        assert_eq!(running(&doc, "builtin:join"), 1, "{doc}");
        assert_nothing_dangles(&doc);
    }
}
