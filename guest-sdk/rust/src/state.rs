//! Keyed state kept by the host: `wit/state.wit`.
//!
//! The primitives Flink users know, typed with serde: [`ValueState`], [`MapState`],
//! [`ListState`], [`ReducingState`] and [`AggregatingState`]. Each is named (its *store*) and
//! addressed by a key: the value of the agent's `key` column for the row at hand. The host keeps
//! the state, not the instance's memory: it survives a trapped instance being replaced, and each
//! instance sees the keys of the rows routed to it.
//!
//! Every primitive has batched forms (`get_many`, `set_many`, `add_many`): use them per batch, so
//! a batch crosses the sandbox boundary once, not once per row.
//!
//! ```no_run
//! use sabot_sdk::state::ValueState;
//! # fn handle(card_ids: &[i64]) -> Result<(), sabot_sdk::AgentError> {
//! let seen: ValueState<u64> = ValueState::new("seen");
//! let counts = seen.get_many(card_ids)?;
//! let updated: Vec<(i64, u64)> = card_ids
//!     .iter()
//!     .zip(counts)
//!     .map(|(card, n)| (*card, n.unwrap_or(0) + 1))
//!     .collect();
//! seen.set_many(&updated)?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AgentError;
use crate::imports;
use crate::wit::sabot::agent::state::{EntryKey, StateError};

/// A value of an agent's key column, usable as a state key. The encoding is the one the host
/// partitions by: integers as little-endian bytes of their width, strings as UTF-8.
pub trait StateKey {
    /// The key's bytes.
    fn state_key(&self) -> Vec<u8>;
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl StateKey for $t {
            fn state_key(&self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
        }
    )*};
}
int_keys!(i8, i16, i32, i64, u8, u16, u32, u64);

impl StateKey for str {
    fn state_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl StateKey for String {
    fn state_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl StateKey for [u8] {
    fn state_key(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl StateKey for Vec<u8> {
    fn state_key(&self) -> Vec<u8> {
        self.clone()
    }
}

impl<T: StateKey + ?Sized> StateKey for &T {
    fn state_key(&self) -> Vec<u8> {
        (**self).state_key()
    }
}

fn encode<T: Serialize + ?Sized>(store: &str, value: &T) -> Result<Vec<u8>, AgentError> {
    postcard::to_allocvec(value)
        .map_err(|e| AgentError::internal(format!("state `{store}`: cannot encode a value: {e}")))
}

fn decode<T: DeserializeOwned>(store: &str, bytes: &[u8]) -> Result<T, AgentError> {
    postcard::from_bytes(bytes).map_err(|e| {
        AgentError::internal(format!(
            "state `{store}`: a stored value does not decode as the type this agent expects ({e}); \
             was the state written by a version of the agent with another type?"
        ))
    })
}

fn refused(store: &str, e: StateError) -> AgentError {
    match e {
        StateError::NotOwned(m) => AgentError::internal(format!("state `{store}`: {m}")),
        StateError::TooLarge(m) => AgentError::invalid_input(format!("state `{store}`: {m}")),
        StateError::Backend(m) => AgentError::internal(format!("state `{store}`: {m}")),
    }
}

fn entry(key: &impl StateKey, sub: Vec<u8>) -> EntryKey {
    EntryKey {
        key: key.state_key(),
        sub,
    }
}

/// The state key of each row of a key column, as the host partitions by it: integers as the
/// little-endian bytes of their width, text as UTF-8, binary as it is; null as the empty key.
pub fn column_keys(column: &dyn arrow_array::Array) -> Result<Vec<Vec<u8>>, AgentError> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType;
    macro_rules! each {
        ($a:expr, $f:expr) => {{
            let a = $a;
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Vec::new()
                    } else {
                        $f(a.value(i))
                    }
                })
                .collect()
        }};
    }
    macro_rules! ints {
        ($t:ty) => {
            each!(
                column.as_primitive::<$t>(),
                |v: <$t as ArrowPrimitiveType>::Native| v.to_le_bytes().to_vec()
            )
        };
    }
    Ok(match column.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Date32 => ints!(Date32Type),
        DataType::Utf8 => each!(column.as_string::<i32>(), |v: &str| v.as_bytes().to_vec()),
        DataType::LargeUtf8 => each!(column.as_string::<i64>(), |v: &str| v.as_bytes().to_vec()),
        DataType::Binary => each!(column.as_binary::<i32>(), |v: &[u8]| v.to_vec()),
        other => {
            return Err(AgentError::invalid_input(format!(
                "a key column of type {other}: expected an integer, date, string or binary column"
            )));
        }
    })
}

/// `(sub-key, value)` pairs, as a scan returns them.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The raw calls, with errors mapped.
struct Store {
    name: String,
}

impl Store {
    fn get_many(&self, keys: &[EntryKey]) -> Result<Vec<Option<Vec<u8>>>, AgentError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        imports::get_many(&self.name, keys).map_err(|e| refused(&self.name, e))
    }

    fn put_many(&self, entries: &[(EntryKey, Vec<u8>)]) -> Result<(), AgentError> {
        if entries.is_empty() {
            return Ok(());
        }
        imports::put_many(&self.name, entries).map_err(|e| refused(&self.name, e))
    }

    fn delete_many(&self, keys: &[EntryKey]) -> Result<(), AgentError> {
        if keys.is_empty() {
            return Ok(());
        }
        imports::delete_many(&self.name, keys).map_err(|e| refused(&self.name, e))
    }

    /// Every entry under `key`, in sub-key order.
    fn scan_all(&self, key: &[u8]) -> Result<Entries, AgentError> {
        const PAGE: u32 = 1024;
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = imports::scan(&self.name, key, &[], after.as_deref(), PAGE)
                .map_err(|e| refused(&self.name, e))?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|(sub, _)| sub.clone());
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
}

/// One value per key.
pub struct ValueState<T> {
    store: Store,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The value state named `name`.
    pub fn new(name: &str) -> Self {
        ValueState {
            store: Store {
                name: name.to_owned(),
            },
            _value: PhantomData,
        }
    }

    /// The value for `key`.
    pub fn get(&self, key: &impl StateKey) -> Result<Option<T>, AgentError> {
        Ok(self.get_many(std::slice::from_ref(key))?.pop().flatten())
    }

    /// The values for `keys`, in order, in one crossing.
    pub fn get_many<K: StateKey>(&self, keys: &[K]) -> Result<Vec<Option<T>>, AgentError> {
        let keys: Vec<EntryKey> = keys.iter().map(|k| entry(k, Vec::new())).collect();
        self.store
            .get_many(&keys)?
            .into_iter()
            .map(|v| v.map(|b| decode(&self.store.name, &b)).transpose())
            .collect()
    }

    /// Sets the value for `key`.
    pub fn set(&self, key: &impl StateKey, value: &T) -> Result<(), AgentError> {
        self.store
            .put_many(&[(entry(key, Vec::new()), encode(&self.store.name, value)?)])
    }

    /// Sets many values in one crossing (a later entry for the same key wins).
    pub fn set_many<K: StateKey>(&self, entries: &[(K, T)]) -> Result<(), AgentError> {
        let entries = entries
            .iter()
            .map(|(k, v)| Ok((entry(k, Vec::new()), encode(&self.store.name, v)?)))
            .collect::<Result<Vec<_>, AgentError>>()?;
        self.store.put_many(&entries)
    }

    /// Removes the value for `key`.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        self.store.delete_many(&[entry(key, Vec::new())])
    }

    /// Removes the values of many keys in one crossing.
    pub fn clear_many<K: StateKey>(&self, keys: &[K]) -> Result<(), AgentError> {
        let keys: Vec<EntryKey> = keys.iter().map(|k| entry(k, Vec::new())).collect();
        self.store.delete_many(&keys)
    }
}

/// A map per key: `field → value`.
pub struct MapState<F, V> {
    store: Store,
    _types: PhantomData<fn() -> (F, V)>,
}

impl<F: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<F, V> {
    /// The map state named `name`.
    pub fn new(name: &str) -> Self {
        MapState {
            store: Store {
                name: name.to_owned(),
            },
            _types: PhantomData,
        }
    }

    /// The value of `field` in `key`'s map.
    pub fn get(&self, key: &impl StateKey, field: &F) -> Result<Option<V>, AgentError> {
        let sub = encode(&self.store.name, field)?;
        let mut values = self.store.get_many(&[entry(key, sub)])?;
        values
            .pop()
            .flatten()
            .map(|b| decode(&self.store.name, &b))
            .transpose()
    }

    /// Sets `field` in `key`'s map.
    pub fn put(&self, key: &impl StateKey, field: &F, value: &V) -> Result<(), AgentError> {
        let sub = encode(&self.store.name, field)?;
        self.store
            .put_many(&[(entry(key, sub), encode(&self.store.name, value)?)])
    }

    /// Removes `field` from `key`'s map.
    pub fn remove(&self, key: &impl StateKey, field: &F) -> Result<(), AgentError> {
        let sub = encode(&self.store.name, field)?;
        self.store.delete_many(&[entry(key, sub)])
    }

    /// The values of many `(key, field)` pairs, in order, in one crossing.
    pub fn get_many<K: StateKey>(&self, pairs: &[(K, F)]) -> Result<Vec<Option<V>>, AgentError> {
        let keys = pairs
            .iter()
            .map(|(k, f)| Ok(entry(k, encode(&self.store.name, f)?)))
            .collect::<Result<Vec<_>, AgentError>>()?;
        self.store
            .get_many(&keys)?
            .into_iter()
            .map(|v| v.map(|b| decode(&self.store.name, &b)).transpose())
            .collect()
    }

    /// Sets many `(key, field) → value` entries in one crossing (a later one for the same pair
    /// wins).
    pub fn put_many<K: StateKey>(&self, entries: &[(K, F, V)]) -> Result<(), AgentError> {
        let entries = entries
            .iter()
            .map(|(k, f, v)| {
                Ok((
                    entry(k, encode(&self.store.name, f)?),
                    encode(&self.store.name, v)?,
                ))
            })
            .collect::<Result<Vec<_>, AgentError>>()?;
        self.store.put_many(&entries)
    }

    /// Removes many `(key, field)` entries in one crossing.
    pub fn remove_many<K: StateKey>(&self, pairs: &[(K, F)]) -> Result<(), AgentError> {
        let keys = pairs
            .iter()
            .map(|(k, f)| Ok(entry(k, encode(&self.store.name, f)?)))
            .collect::<Result<Vec<_>, AgentError>>()?;
        self.store.delete_many(&keys)
    }

    /// Every `(field, value)` of `key`'s map.
    pub fn entries(&self, key: &impl StateKey) -> Result<Vec<(F, V)>, AgentError> {
        self.store
            .scan_all(&key.state_key())?
            .into_iter()
            .map(|(f, v)| Ok((decode(&self.store.name, &f)?, decode(&self.store.name, &v)?)))
            .collect()
    }

    /// Removes every field of `key`'s map.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        let k = key.state_key();
        let subs: Vec<EntryKey> = self
            .store
            .scan_all(&k)?
            .into_iter()
            .map(|(sub, _)| EntryKey {
                key: k.clone(),
                sub,
            })
            .collect();
        self.store.delete_many(&subs)
    }
}

/// A write of [`RawState::write_many`]: key, sub-key, and the value (`None`: delete).
pub type RawWrite<K> = (K, Vec<u8>, Option<Vec<u8>>);

/// Entries `(key, sub-key) → value` kept as the bytes given, with no encoding of Rust's: for
/// values that something other than this agent reads (the host's HTTP API, an agent in another
/// language). The built-in `view` operator keeps its rows this way, as JSON.
pub struct RawState {
    store: Store,
}

impl RawState {
    /// The raw state named `name`.
    pub fn new(name: &str) -> Self {
        RawState {
            store: Store {
                name: name.to_owned(),
            },
        }
    }

    /// The values of many `(key, sub-key)` entries, in order, in one crossing.
    pub fn get_many<K: StateKey>(
        &self,
        entries: &[(K, Vec<u8>)],
    ) -> Result<Vec<Option<Vec<u8>>>, AgentError> {
        let keys: Vec<EntryKey> = entries.iter().map(|(k, s)| entry(k, s.clone())).collect();
        self.store.get_many(&keys)
    }

    /// Applies many writes `(key, sub-key, value)` in one crossing each way: `Some` puts,
    /// `None` deletes. Puts go first, then deletes, so give each entry once.
    pub fn write_many<K: StateKey>(&self, writes: &[RawWrite<K>]) -> Result<(), AgentError> {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (k, sub, value) in writes {
            match value {
                Some(v) => puts.push((entry(k, sub.clone()), v.clone())),
                None => deletes.push(entry(k, sub.clone())),
            }
        }
        self.store.put_many(&puts)?;
        self.store.delete_many(&deletes)
    }
}

/// A list per key, kept as one value: suited to short lists.
pub struct ListState<T> {
    inner: ValueState<Vec<T>>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// The list state named `name`.
    pub fn new(name: &str) -> Self {
        ListState {
            inner: ValueState::new(name),
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
pub struct ReducingState<T> {
    inner: ValueState<T>,
    reduce: fn(T, T) -> T,
}

impl<T: Serialize + DeserializeOwned> ReducingState<T> {
    /// The reducing state named `name`, combining values with `reduce`.
    pub fn new(name: &str, reduce: fn(T, T) -> T) -> Self {
        ReducingState {
            inner: ValueState::new(name),
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
pub struct AggregatingState<In, Acc, Out, A: Aggregator<In, Acc, Out>> {
    inner: ValueState<Acc>,
    aggregator: A,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Acc, Out, A> AggregatingState<In, Acc, Out, A>
where
    Acc: Serialize + DeserializeOwned,
    A: Aggregator<In, Acc, Out>,
{
    /// The aggregating state named `name`.
    pub fn new(name: &str, aggregator: A) -> Self {
        AggregatingState {
            inner: ValueState::new(name),
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
