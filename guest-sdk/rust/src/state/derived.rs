//! The primitives built on [`ValueState`]: a list, a reduced value and an aggregate per key,
//! each kept as one value and encoded by its codec ([`Json`] unless given).

use std::collections::HashMap;
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
        let mut by_key: HashMap<Vec<u8>, (K, Vec<T>)> = HashMap::new();
        for (k, v) in entries {
            by_key
                .entry(k.state_key())
                .or_insert_with(|| (k, Vec::new()))
                .1
                .push(v);
        }
        let keys: Vec<&K> = by_key.values().map(|(k, _)| k).collect();
        let current = self.inner.get_many(&keys)?;
        let updated: Vec<(Vec<u8>, Vec<T>)> = by_key
            .into_iter()
            .zip(current)
            .map(|((bytes, (_, added)), old)| {
                let mut list = old.unwrap_or_default();
                list.extend(added);
                (bytes, list)
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
    pub fn add_many<K: StateKey>(&self, entries: Vec<(K, T)>) -> Result<Vec<(K, T)>, AgentError>
    where
        T: Clone,
    {
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut folded: HashMap<Vec<u8>, (K, T)> = HashMap::new();
        for (k, v) in entries {
            let bytes = k.state_key();
            match folded.remove(&bytes) {
                Some((k0, acc)) => {
                    folded.insert(bytes, (k0, (self.reduce)(acc, v)));
                }
                None => {
                    order.push(bytes.clone());
                    folded.insert(bytes, (k, v));
                }
            }
        }
        let keys: Vec<&K> = order.iter().map(|b| &folded[b].0).collect();
        let current = self.inner.get_many(&keys)?;
        let mut out = Vec::with_capacity(order.len());
        for (bytes, old) in order.into_iter().zip(current) {
            let (k, added) = folded.remove(&bytes).expect("every ordered key was folded");
            let value = match old {
                Some(old) => (self.reduce)(old, added),
                None => added,
            };
            out.push((k, value));
        }
        let writes: Vec<(Vec<u8>, T)> = out
            .iter()
            .map(|(k, v)| (k.state_key(), v.clone()))
            .collect();
        self.inner.set_many(&writes)?;
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
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut grouped: HashMap<Vec<u8>, (K, Vec<In>)> = HashMap::new();
        for (k, v) in inputs {
            let bytes = k.state_key();
            match grouped.get_mut(&bytes) {
                Some((_, list)) => list.push(v),
                None => {
                    order.push(bytes.clone());
                    grouped.insert(bytes, (k, vec![v]));
                }
            }
        }
        let keys: Vec<&K> = order.iter().map(|b| &grouped[b].0).collect();
        let current = self.inner.get_many(&keys)?;
        let mut writes = Vec::with_capacity(order.len());
        let mut out = Vec::with_capacity(order.len());
        for (bytes, acc) in order.into_iter().zip(current) {
            let (k, values) = grouped
                .remove(&bytes)
                .expect("every ordered key was grouped");
            let mut acc = acc.unwrap_or_else(|| self.aggregator.create());
            for v in values {
                self.aggregator.add(&mut acc, v);
            }
            out.push((k, self.aggregator.result(&acc)));
            writes.push((bytes, acc));
        }
        self.inner.set_many(&writes)?;
        Ok(out)
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
