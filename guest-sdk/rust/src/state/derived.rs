//! The primitives built on [`ValueState`]: a list, a reduced value and an aggregate per key,
//! each kept as one value and encoded by its codec ([`Json`] unless given).

use std::hash::BuildHasher;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, Json, StateKey, ValueState};
use crate::AgentError;

/// A list per key, kept as one value: suited to short lists.
pub struct ListState<T, C = Json> {
    inner: ValueState<Vec<T>, C>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// The list state named `name`, its lists JSON arrays.
    pub fn new(name: &str) -> Self {
        Self::with_codec(name, Json)
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> ListState<T, C> {
    /// The list state named `name`, its lists encoded by `codec`.
    pub fn with_codec(name: &str, codec: C) -> Self {
        ListState {
            inner: ValueState::with_codec(name, codec),
        }
    }

    /// `key`'s list (empty when there is none).
    pub fn get(&self, key: &impl StateKey) -> Result<Vec<T>, AgentError> {
        Ok(self.inner.get(key)?.unwrap_or_default())
    }

    /// Appends `value` to `key`'s list.
    pub fn add(&self, key: &impl StateKey, value: T) -> Result<(), AgentError> {
        let mut list = self.get(key)?;
        list.push(value);
        self.inner.set(key, &list)
    }

    /// Appends values to many lists in one read and one write crossing.
    pub fn add_many<K: StateKey>(&self, entries: Vec<(K, T)>) -> Result<(), AgentError> {
        let (keys, added): (Vec<K>, Vec<Vec<T>>) = fold_by_key(
            entries,
            |v| vec![v],
            |mut list, v| {
                list.push(v);
                list
            },
        )
        .into_iter()
        .unzip();
        let current = self.inner.get_many(&keys)?;
        let updated: Vec<(&K, Vec<T>)> = keys
            .iter()
            .zip(current.into_iter().zip(added))
            .map(|(k, (old, added))| {
                let mut list = old.unwrap_or_default();
                list.extend(added);
                (k, list)
            })
            .collect();
        self.inner.set_many(&updated)
    }

    /// Replaces `key`'s list.
    pub fn update(&self, key: &impl StateKey, values: &Vec<T>) -> Result<(), AgentError> {
        self.inner.set(key, values)
    }

    /// Removes `key`'s list.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        self.inner.clear(key)
    }
}

/// One value per key, folded with a reduce function as values are added.
pub struct ReducingState<T, C = Json> {
    inner: ValueState<T, C>,
    reduce: fn(T, T) -> T,
}

impl<T: Serialize + DeserializeOwned> ReducingState<T> {
    /// The reducing state named `name`, combining values with `reduce`, its values JSON.
    pub fn new(name: &str, reduce: fn(T, T) -> T) -> Self {
        Self::with_codec(name, reduce, Json)
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> ReducingState<T, C> {
    /// The reducing state named `name`, combining values with `reduce`, its values encoded by
    /// `codec`.
    pub fn with_codec(name: &str, reduce: fn(T, T) -> T, codec: C) -> Self {
        ReducingState {
            inner: ValueState::with_codec(name, codec),
            reduce,
        }
    }

    /// The reduced value for `key`.
    pub fn get(&self, key: &impl StateKey) -> Result<Option<T>, AgentError> {
        self.inner.get(key)
    }

    /// Folds `value` into `key`'s value.
    pub fn add(&self, key: &impl StateKey, value: T) -> Result<(), AgentError> {
        let next = match self.inner.get(key)? {
            Some(old) => (self.reduce)(old, value),
            None => value,
        };
        self.inner.set(key, &next)
    }

    /// Folds many values in one read and one write crossing; returns each touched key's new value.
    pub fn add_many<K: StateKey>(&self, entries: Vec<(K, T)>) -> Result<Vec<(K, T)>, AgentError> {
        let folded = fold_by_key(entries, |v| v, self.reduce);
        let keys: Vec<&K> = folded.iter().map(|(k, _)| k).collect();
        let current = self.inner.get_many(&keys)?;
        let out: Vec<(K, T)> = folded
            .into_iter()
            .zip(current)
            .map(|((k, added), old)| match old {
                Some(old) => (k, (self.reduce)(old, added)),
                None => (k, added),
            })
            .collect();
        self.inner.set_many(&out)?;
        Ok(out)
    }

    /// Removes `key`'s value.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        self.inner.clear(key)
    }
}

/// How an [`AggregatingState`] folds inputs into an accumulator and reads a result from it.
pub trait Aggregator<In, Acc, Out> {
    /// The accumulator of a key with no input yet.
    fn create(&self) -> Acc;
    /// Folds one input into the accumulator.
    fn add(&self, acc: &mut Acc, input: In);
    /// The result the accumulator stands for.
    fn result(&self, acc: &Acc) -> Out;
    /// Folds `other` (the accumulator of inputs that came after `acc`'s) into `acc`: what
    /// session windows need when two sessions merge. Aggregators that cannot merge leave the
    /// default, which refuses.
    fn merge(&self, acc: &mut Acc, other: Acc) -> Result<(), AgentError> {
        let _ = (acc, other);
        Err(AgentError::invalid_config(
            "this aggregator cannot merge accumulators (implement Aggregator::merge), so it cannot run in session windows",
        ))
    }
}

/// An accumulator per key, fed inputs, read as results (a running mean, say).
pub struct AggregatingState<In, Acc, Out, A: Aggregator<In, Acc, Out>, C = Json> {
    inner: ValueState<Acc, C>,
    aggregator: A,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Acc, Out, A> AggregatingState<In, Acc, Out, A>
where
    Acc: Serialize + DeserializeOwned,
    A: Aggregator<In, Acc, Out>,
{
    /// The aggregating state named `name`, its accumulators JSON.
    pub fn new(name: &str, aggregator: A) -> Self {
        Self::with_codec(name, aggregator, Json)
    }
}

impl<In, Acc, Out, A, C> AggregatingState<In, Acc, Out, A, C>
where
    Acc: Serialize + DeserializeOwned,
    A: Aggregator<In, Acc, Out>,
    C: Codec,
{
    /// The aggregating state named `name`, its accumulators encoded by `codec`.
    pub fn with_codec(name: &str, aggregator: A, codec: C) -> Self {
        AggregatingState {
            inner: ValueState::with_codec(name, codec),
            aggregator,
            _types: PhantomData,
        }
    }

    /// The result for `key`, if it has had any input.
    pub fn get(&self, key: &impl StateKey) -> Result<Option<Out>, AgentError> {
        Ok(self.inner.get(key)?.map(|acc| self.aggregator.result(&acc)))
    }

    /// Feeds inputs to many keys in one read and one write crossing; returns each touched key's
    /// result after its inputs.
    pub fn add_many<K: StateKey>(&self, inputs: Vec<(K, In)>) -> Result<Vec<(K, Out)>, AgentError> {
        let grouped = fold_by_key(
            inputs,
            |v| vec![v],
            |mut list, v| {
                list.push(v);
                list
            },
        );
        let keys: Vec<&K> = grouped.iter().map(|(k, _)| k).collect();
        let current = self.inner.get_many(&keys)?;
        let writes: Vec<(K, Acc)> = grouped
            .into_iter()
            .zip(current)
            .map(|((k, values), acc)| {
                let mut acc = acc.unwrap_or_else(|| self.aggregator.create());
                for v in values {
                    self.aggregator.add(&mut acc, v);
                }
                (k, acc)
            })
            .collect();
        self.inner.set_many(&writes)?;
        Ok(writes
            .into_iter()
            .map(|(k, acc)| {
                let result = self.aggregator.result(&acc);
                (k, result)
            })
            .collect())
    }

    /// Feeds one input to `key`.
    pub fn add(&self, key: &impl StateKey, input: In) -> Result<(), AgentError> {
        let mut acc = self
            .inner
            .get(key)?
            .unwrap_or_else(|| self.aggregator.create());
        self.aggregator.add(&mut acc, input);
        self.inner.set(key, &acc)
    }

    /// Removes `key`'s accumulator.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        self.inner.clear(key)
    }
}

/// `entries` folded per key, the keys in the order they first came: `first` starts a key's
/// accumulator from its first value and `fold` adds each later one. One hash lookup per entry and
/// no allocation per key: each key's bytes are written once, into one buffer, and looked up there.
fn fold_by_key<K: StateKey, V, A>(
    entries: Vec<(K, V)>,
    first: impl Fn(V) -> A,
    fold: impl Fn(A, V) -> A,
) -> Vec<(K, A)> {
    // The table lives for one call, over keys the agent's own input chose.
    let hasher = foldhash::fast::RandomState::default();
    let mut table: hashbrown::HashTable<usize> = hashbrown::HashTable::with_capacity(entries.len());
    let mut groups: Vec<(K, Option<A>)> = Vec::with_capacity(entries.len());
    // Every distinct key's bytes, one after the other: key `i` is `bytes[ends[i]..ends[i + 1]]`.
    let mut bytes: Vec<u8> = Vec::with_capacity(8 * entries.len());
    let mut ends: Vec<usize> = Vec::with_capacity(entries.len() + 1);
    ends.push(0);
    for (k, v) in entries {
        let start = bytes.len();
        k.write_state_key(&mut bytes);
        let hash = hasher.hash_one(&bytes[start..]);
        match table.find(hash, |&i| bytes[ends[i]..ends[i + 1]] == bytes[start..]) {
            Some(&i) => {
                bytes.truncate(start);
                let acc = &mut groups[i].1;
                *acc = Some(fold(acc.take().expect("every group holds its value"), v));
            }
            None => {
                ends.push(bytes.len());
                table.insert_unique(hash, groups.len(), |&j| {
                    hasher.hash_one(&bytes[ends[j]..ends[j + 1]])
                });
                groups.push((k, Some(first(v))));
            }
        }
    }
    groups
        .into_iter()
        .map(|(k, acc)| (k, acc.expect("every group holds its value")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fold_per_key_in_arrival_order_keys_in_order_of_first_arrival() {
        // Keys whose bytes are prefixes of each other, and empty: each its own group.
        let entries: Vec<(Vec<u8>, char)> = [
            (&b"ab"[..], 'x'),
            (b"a", 'y'),
            (b"", 'z'),
            (b"ab", 'w'),
            (b"abc", 'v'),
            (b"a", 'u'),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v))
        .collect();
        let folded = fold_by_key(entries, String::from, |mut s, c| {
            s.push(c);
            s
        });
        let folded: Vec<(&[u8], &str)> = folded.iter().map(|(k, s)| (&k[..], &s[..])).collect();
        assert_eq!(
            folded,
            vec![(&b"ab"[..], "xw"), (b"a", "yu"), (b"", "z"), (b"abc", "v")]
        );
    }

    #[test]
    fn many_long_keys_fold_like_a_map() {
        // Keys of 30 bytes: past the room the key bytes start with, so that buffer grows.
        let key = |i: u64| format!("card-{:025}", (i * 7919) % 3_001).into_bytes();
        let entries: Vec<(Vec<u8>, u64)> = (0..20_000).map(|i| (key(i), i)).collect();
        let mut expected = std::collections::BTreeMap::new();
        for (k, v) in &entries {
            *expected.entry(k.clone()).or_insert(0) += v;
        }
        let folded = fold_by_key(entries, |v| v, |a, b| a + b);
        assert_eq!(folded.len(), expected.len());
        let got: std::collections::BTreeMap<Vec<u8>, u64> = folded.into_iter().collect();
        assert_eq!(got, expected);
    }
}
