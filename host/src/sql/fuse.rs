//! Fusing projections: a `builtin:project` that only selects or renames the columns of another
//! projection, its only input, becomes one projection (one operator and one batch crossing
//! fewer). Planning a query emits such chains (a sub-query's select list, then the outer one).

use std::collections::HashMap;

use sabot_expr::Projection;

use super::plan::quote;

const PROJECT: &str = "builtin:project";

/// Merges each chain `a -> b` of projections where `a` feeds only `b`, `b` reads only `a`, and
/// `b` only selects or renames `a`'s columns: `b` then computes `a`'s items under `b`'s names,
/// reading `a`'s inputs, and `a` is gone. Anything else is left as planned.
///
/// Each edge is looked at once, and again only when a fusion changed one of its ends, so a
/// pipeline of thousands of projections is fused in time linear in its edges.
pub(super) fn fuse_projections(agents: &mut toml::Table, edges: &mut Vec<String>) {
    let mut ends: Vec<Option<(String, String)>> = edges
        .iter()
        .map(|e| ends(e).map(|(from, to)| (from.to_owned(), to.to_owned())))
        .collect();
    // The edges out of and into each agent (indices into `ends`, dropped edges included).
    let mut outs: HashMap<String, Vec<usize>> = HashMap::new();
    let mut ins: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (from, to)) in ends
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((i, e.as_ref()?)))
    {
        outs.entry(from.clone()).or_default().push(i);
        ins.entry(to.clone()).or_default().push(i);
    }
    let mut dropped = vec![false; ends.len()];
    let live = |list: Option<&Vec<usize>>, dropped: &[bool]| {
        list.map_or(0, |l| l.iter().filter(|&&i| !dropped[i]).count())
    };
    let mut work: Vec<usize> = (0..ends.len()).rev().collect();
    while let Some(i) = work.pop() {
        let Some((a, b)) = ends[i].clone().filter(|_| !dropped[i]) else {
            continue;
        };
        if live(outs.get(&a), &dropped) != 1 || live(ins.get(&b), &dropped) != 1 {
            continue;
        }
        let (Some(outer), Some(inner)) = (select_of(agents, &b), select_of(agents, &a)) else {
            continue;
        };
        let Some(select) = fused(&inner, &outer) else {
            continue;
        };
        agents.remove(&a);
        if let Some(config) = agents
            .get_mut(&b)
            .and_then(|agent| agent.get_mut("config"))
            .and_then(toml::Value::as_table_mut)
        {
            config.insert(
                "select".into(),
                toml::Value::Array(select.into_iter().map(Into::into).collect()),
            );
        }
        // `a`'s inputs now feed `b`, in their order; the edge `a -> b` is gone. Those inputs
        // and `b`'s outputs may fuse now.
        dropped[i] = true;
        for j in ins.remove(&a).unwrap_or_default() {
            if let Some((_, to)) = ends[j].as_mut() {
                b.clone_into(to);
            }
            ins.entry(b.clone()).or_default().push(j);
            work.push(j);
        }
        work.extend(outs.get(&b).into_iter().flatten().copied());
    }
    *edges = std::mem::take(edges)
        .into_iter()
        .zip(ends)
        .zip(dropped)
        .filter(|(_, dropped)| !dropped)
        .map(|((edge, ends), _)| match ends {
            Some((from, to)) => format!("{from} -> {to}"),
            None => edge,
        })
        .collect();
}

/// The select list of agent `name`, when it is a plain projection (no key, one instance).
pub(super) fn select_of(agents: &toml::Table, name: &str) -> Option<Projection> {
    let agent = agents.get(name)?.as_table()?;
    if agent.get("module")?.as_str()? != PROJECT
        || agent.contains_key("key")
        || agent.contains_key("parallelism")
    {
        return None;
    }
    let items: Vec<&str> = agent
        .get("config")?
        .get("select")?
        .as_array()?
        .iter()
        .map(toml::Value::as_str)
        .collect::<Option<_>>()?;
    Projection::parse_items(&items).ok()
}

/// `outer` applied after `inner` as one select list, when `outer` only selects or renames
/// columns `inner` outputs under exactly those names.
fn fused(inner: &Projection, outer: &Projection) -> Option<Vec<String>> {
    let outer = outer.renames()?;
    // Without `*`, `inner`'s output columns are exactly its named items.
    let inner = inner.named_items()?;
    let inner_text = |column: &str| -> Option<&str> {
        // The one item that outputs `column` (no other differing only in case).
        let mut named = inner
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(column));
        let (name, text) = named.next()?;
        (named.next().is_none() && *name == column).then_some(text.as_str())
    };
    outer
        .into_iter()
        .map(|(column, name)| {
            let expr = inner_text(column)?;
            let name = quote(name);
            // A column kept under its own name needs no `AS`.
            Some(if expr == name {
                name
            } else {
                format!("{expr} AS {name}")
            })
        })
        .collect()
}

/// The two agents of an edge `from -> to` (a source's output port, `source:1`, included).
fn ends(edge: &str) -> Option<(&str, &str)> {
    edge.split_once(" -> ")
        .map(|(from, to)| (from.trim(), to.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(select: &[&str]) -> toml::Value {
        toml::toml! { module = "builtin:project" }
            .into_iter()
            .chain([(
                "config".to_owned(),
                toml::Value::Table(toml::Table::from_iter([(
                    "select".to_owned(),
                    toml::Value::Array(select.iter().map(|s| (*s).into()).collect()),
                )])),
            )])
            .collect::<toml::Table>()
            .into()
    }

    fn select(agents: &toml::Table, name: &str) -> Vec<String> {
        agents[name]["config"]["select"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn edges(list: &[&str]) -> Vec<String> {
        list.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn a_projection_that_only_renames_another_becomes_one_projection() {
        let mut agents = toml::Table::new();
        agents.insert(
            "a".into(),
            project(&["price * 2 AS p", "auction", "bidder AS b"]),
        );
        agents.insert("b".into(), project(&["b AS who", "p", "auction"]));
        let mut e = edges(&["nexmark:2 -> a", "a -> b", "b -> out"]);
        fuse_projections(&mut agents, &mut e);
        assert!(!agents.contains_key("a"));
        assert_eq!(e, ["nexmark:2 -> b", "b -> out"]);
        assert_eq!(
            select(&agents, "b"),
            ["bidder AS who", "price * 2 AS p", "auction"]
        );
    }

    #[test]
    fn projections_that_compute_share_or_select_everything_are_left_alone() {
        for (inner, outer, more) in [
            // The outer one computes.
            (&["price AS p"][..], &["p + 1 AS q"][..], None),
            // The inner one selects everything.
            (&["*", "price AS p"][..], &["p"][..], None),
            // The outer one reads a column the inner one does not name exactly so.
            (&["Price"][..], &["price"][..], None),
            // The inner one also feeds another agent.
            (&["price"][..], &["price"][..], Some("a -> other")),
        ] {
            let mut agents = toml::Table::new();
            agents.insert("a".into(), project(inner));
            agents.insert("b".into(), project(outer));
            let mut e = edges(&["src -> a", "a -> b"]);
            e.extend(more.map(str::to_owned));
            let before = (agents.clone(), e.clone());
            fuse_projections(&mut agents, &mut e);
            assert_eq!((agents, e), before, "{inner:?} then {outer:?}");
        }
    }

    #[test]
    fn a_chain_of_three_projections_becomes_one_and_keeps_its_union_inputs() {
        let mut agents = toml::Table::new();
        agents.insert("a".into(), project(&["x AS y", "z"]));
        agents.insert("b".into(), project(&["y AS w", "z"]));
        agents.insert("c".into(), project(&["w"]));
        let mut e = edges(&["one -> a", "two -> a", "a -> b", "b -> c", "c -> out"]);
        fuse_projections(&mut agents, &mut e);
        assert_eq!(agents.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(e, ["one -> c", "two -> c", "c -> out"]);
        assert_eq!(select(&agents, "c"), ["x AS w"]);
    }
}
