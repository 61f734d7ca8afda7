//! Keyed state kept by the host: `wit/state.wit` and `wit/packed-state.wit`.
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

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AgentError;
use crate::imports;
use crate::wit::sabot::agent::state::StateError;

mod codec;
mod derived;
mod packed;

pub(crate) use packed::{Packed, Values};

pub use codec::{Codec, Json, Postcard};
pub use derived::{AggregatingState, Aggregator, ListState, ReducingState};

/// A value of an agent's key column, usable as a state key. The encoding is the one the host
/// partitions by: integers as little-endian bytes of their width, strings as UTF-8.
pub trait StateKey {
    /// The key's bytes.
    fn state_key(&self) -> Vec<u8>;

    /// Appends the key's bytes to `out` (what a batch of state calls does for every key: the
    /// provided form allocates the key first; the SDK's own keys write in place).
    fn write_state_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.state_key());
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl StateKey for $t {
            fn state_key(&self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }

            fn write_state_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
int_keys!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! byte_keys {
    ($($t:ty),*) => {$(
        impl StateKey for $t {
            fn state_key(&self) -> Vec<u8> {
                AsRef::<[u8]>::as_ref(self).to_vec()
            }

            fn write_state_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(AsRef::<[u8]>::as_ref(self));
            }
        }
    )*};
}
byte_keys!(str, String, [u8], Vec<u8>);

impl<T: StateKey + ?Sized> StateKey for &T {
    fn state_key(&self) -> Vec<u8> {
        (**self).state_key()
    }

    fn write_state_key(&self, out: &mut Vec<u8>) {
        (**self).write_state_key(out);
    }
}

/// A store's codec, with errors that name the store.
#[derive(Clone, Copy)]
struct Coded<'a, C> {
    store: &'a str,
    codec: C,
}

impl<C: Codec> Coded<'_, C> {
    /// Appends `value`'s encoding to `packed` as its next string.
    fn value_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        packed: &mut Packed,
    ) -> Result<(), AgentError> {
        self.codec
            .encode_into(value, &mut packed.bytes)
            .map_err(|e| {
                AgentError::internal(format!(
                    "state `{}`: cannot encode a value as {}: {e}",
                    self.store,
                    C::NAME
                ))
            })?;
        packed.end();
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&self, field: &T) -> Result<Vec<u8>, AgentError> {
        self.codec.encode_field(field).map_err(|e| {
            AgentError::internal(format!(
                "state `{}`: cannot encode a map field as {}: {e}",
                self.store,
                C::NAME
            ))
        })
    }

    fn read<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, AgentError> {
        self.codec
            .decode(bytes)
            .map_err(|e| self.unreadable("value", e))
    }

    fn read_field<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, AgentError> {
        self.codec
            .decode_field(bytes)
            .map_err(|e| self.unreadable("map field", e))
    }

    fn unreadable(&self, what: &str, e: String) -> AgentError {
        AgentError::internal(format!(
            "state `{}`: a stored {what} does not decode as {} into the type this agent expects \
             ({e}); was the state written with another type or another codec?",
            self.store,
            C::NAME
        ))
    }
}

fn refused(store: &str, e: StateError) -> AgentError {
    match e {
        StateError::NotOwned(m) => AgentError::internal(format!("state `{store}`: {m}")),
        StateError::TooLarge(m) => AgentError::invalid_input(format!("state `{store}`: {m}")),
        StateError::Backend(m) => AgentError::internal(format!("state `{store}`: {m}")),
    }
}

/// Single-value entries (no sub-key) of `keys`, packed.
fn single_entries<K: StateKey>(keys: &[K]) -> Packed {
    let mut packed = Packed::with_capacity(2 * keys.len(), 8 * keys.len());
    for k in keys {
        packed.push_entry(k);
    }
    packed
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

/// The raw calls, with errors mapped: `packed-state` for batches, `state` for scans.
struct Store {
    name: String,
}

impl Store {
    /// The values of `keys` (key, sub-key: two strings per entry).
    fn get_many(&self, keys: &Packed) -> Result<Values, AgentError> {
        if keys.is_empty() {
            return Ok(Values {
                values: Packed::with_capacity(0, 0),
                found: Vec::new(),
            });
        }
        imports::packed_get_many(&self.name, keys).map_err(|e| refused(&self.name, e))
    }

    /// Writes `entries` (key, sub-key, value: three strings per entry).
    fn put_many(&self, entries: &Packed) -> Result<(), AgentError> {
        if entries.is_empty() {
            return Ok(());
        }
        imports::packed_put_many(&self.name, entries).map_err(|e| refused(&self.name, e))
    }

    /// Deletes `keys` (key, sub-key: two strings per entry).
    fn delete_many(&self, keys: &Packed) -> Result<(), AgentError> {
        if keys.is_empty() {
            return Ok(());
        }
        imports::packed_delete_many(&self.name, keys).map_err(|e| refused(&self.name, e))
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

/// One value per key, encoded by `C` ([`Json`] unless given: what every SDK reads).
pub struct ValueState<T, C = Json> {
    store: Store,
    codec: C,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The value state named `name`, its values JSON.
    pub fn new(name: &str) -> Self {
        Self::with_codec(name, Json)
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> ValueState<T, C> {
    /// The value state named `name`, its values encoded by `codec`.
    pub fn with_codec(name: &str, codec: C) -> Self {
        ValueState {
            store: Store {
                name: name.to_owned(),
            },
            codec,
            _value: PhantomData,
        }
    }

    fn coded(&self) -> Coded<'_, C> {
        Coded {
            store: &self.store.name,
            codec: self.codec,
        }
    }

    /// The value for `key`.
    pub fn get(&self, key: &impl StateKey) -> Result<Option<T>, AgentError> {
        Ok(self.get_many(std::slice::from_ref(key))?.pop().flatten())
    }

    /// The values for `keys`, in order, in one crossing.
    pub fn get_many<K: StateKey>(&self, keys: &[K]) -> Result<Vec<Option<T>>, AgentError> {
        let coded = self.coded();
        self.store
            .get_many(&single_entries(keys))?
            .iter()
            .map(|v| v.map(|b| coded.read(b)).transpose())
            .collect()
    }

    /// Sets the value for `key`.
    pub fn set(&self, key: &impl StateKey, value: &T) -> Result<(), AgentError> {
        let mut packed = Packed::with_capacity(3, 32);
        packed.push_entry(key);
        self.coded().value_into(value, &mut packed)?;
        self.store.put_many(&packed)
    }

    /// Sets many values in one crossing (a later entry for the same key wins).
    pub fn set_many<K: StateKey>(&self, entries: &[(K, T)]) -> Result<(), AgentError> {
        let coded = self.coded();
        let mut packed = Packed::with_capacity(3 * entries.len(), 24 * entries.len());
        for (k, v) in entries {
            packed.push_entry(k);
            coded.value_into(v, &mut packed)?;
        }
        self.store.put_many(&packed)
    }

    /// Removes the value for `key`.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        self.clear_many(std::slice::from_ref(key))
    }

    /// Removes the values of many keys in one crossing.
    pub fn clear_many<K: StateKey>(&self, keys: &[K]) -> Result<(), AgentError> {
        self.store.delete_many(&single_entries(keys))
    }
}

/// A map per key: `field → value`, encoded by `C` ([`Json`] unless given: a string field as its
/// UTF-8 text, as the other SDKs keep theirs).
pub struct MapState<F, V, C = Json> {
    store: Store,
    codec: C,
    _types: PhantomData<fn() -> (F, V)>,
}

impl<F: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<F, V> {
    /// The map state named `name`, its fields and values JSON.
    pub fn new(name: &str) -> Self {
        Self::with_codec(name, Json)
    }
}

impl<F, V, C> MapState<F, V, C>
where
    F: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
    C: Codec,
{
    /// The map state named `name`, its fields and values encoded by `codec`.
    pub fn with_codec(name: &str, codec: C) -> Self {
        MapState {
            store: Store {
                name: name.to_owned(),
            },
            codec,
            _types: PhantomData,
        }
    }

    fn coded(&self) -> Coded<'_, C> {
        Coded {
            store: &self.store.name,
            codec: self.codec,
        }
    }

    /// The value of `field` in `key`'s map.
    pub fn get(&self, key: &impl StateKey, field: &F) -> Result<Option<V>, AgentError> {
        let coded = self.coded();
        let mut packed = Packed::with_capacity(2, 16);
        packed.push_key(key);
        packed.push(&coded.field(field)?);
        let values = self.store.get_many(&packed)?;
        values
            .iter()
            .next()
            .flatten()
            .map(|b| coded.read(b))
            .transpose()
    }

    /// Sets `field` in `key`'s map.
    pub fn put(&self, key: &impl StateKey, field: &F, value: &V) -> Result<(), AgentError> {
        let coded = self.coded();
        let mut packed = Packed::with_capacity(3, 32);
        packed.push_key(key);
        packed.push(&coded.field(field)?);
        coded.value_into(value, &mut packed)?;
        self.store.put_many(&packed)
    }

    /// Removes `field` from `key`'s map.
    pub fn remove(&self, key: &impl StateKey, field: &F) -> Result<(), AgentError> {
        let mut packed = Packed::with_capacity(2, 16);
        packed.push_key(key);
        packed.push(&self.coded().field(field)?);
        self.store.delete_many(&packed)
    }

    /// The `(key, field)` entries of `pairs`, packed.
    fn pairs<K: StateKey>(&self, pairs: &[(K, F)]) -> Result<Packed, AgentError> {
        let coded = self.coded();
        let mut packed = Packed::with_capacity(2 * pairs.len(), 24 * pairs.len());
        for (k, f) in pairs {
            packed.push_key(k);
            packed.push(&coded.field(f)?);
        }
        Ok(packed)
    }

    /// The values of many `(key, field)` pairs, in order, in one crossing.
    pub fn get_many<K: StateKey>(&self, pairs: &[(K, F)]) -> Result<Vec<Option<V>>, AgentError> {
        let coded = self.coded();
        self.store
            .get_many(&self.pairs(pairs)?)?
            .iter()
            .map(|v| v.map(|b| coded.read(b)).transpose())
            .collect()
    }

    /// Sets many `(key, field) → value` entries in one crossing (a later one for the same pair
    /// wins).
    pub fn put_many<K: StateKey>(&self, entries: &[(K, F, V)]) -> Result<(), AgentError> {
        let coded = self.coded();
        let mut packed = Packed::with_capacity(3 * entries.len(), 32 * entries.len());
        for (k, f, v) in entries {
            packed.push_key(k);
            packed.push(&coded.field(f)?);
            coded.value_into(v, &mut packed)?;
        }
        self.store.put_many(&packed)
    }

    /// Removes many `(key, field)` entries in one crossing.
    pub fn remove_many<K: StateKey>(&self, pairs: &[(K, F)]) -> Result<(), AgentError> {
        self.store.delete_many(&self.pairs(pairs)?)
    }

    /// Every `(field, value)` of `key`'s map, in the order of the fields' bytes.
    pub fn entries(&self, key: &impl StateKey) -> Result<Vec<(F, V)>, AgentError> {
        let coded = self.coded();
        self.store
            .scan_all(&key.state_key())?
            .into_iter()
            .map(|(f, v)| Ok((coded.read_field(&f)?, coded.read(&v)?)))
            .collect()
    }

    /// Removes every field of `key`'s map.
    pub fn clear(&self, key: &impl StateKey) -> Result<(), AgentError> {
        let k = key.state_key();
        let fields = self.store.scan_all(&k)?;
        let mut packed = Packed::with_capacity(2 * fields.len(), 0);
        for (sub, _) in &fields {
            packed.push(&k);
            packed.push(sub);
        }
        self.store.delete_many(&packed)
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
        let mut packed = Packed::with_capacity(2 * entries.len(), 0);
        for (k, sub) in entries {
            packed.push_key(k);
            packed.push(sub);
        }
        let values = self.store.get_many(&packed)?;
        Ok(values.iter().map(|v| v.map(<[u8]>::to_vec)).collect())
    }

    /// Applies many writes `(key, sub-key, value)` in one crossing each way: `Some` puts,
    /// `None` deletes. Puts go first, then deletes, so give each entry once.
    pub fn write_many<K: StateKey>(&self, writes: &[RawWrite<K>]) -> Result<(), AgentError> {
        let mut puts = Packed::with_capacity(0, 0);
        let mut deletes = Packed::with_capacity(0, 0);
        for (k, sub, value) in writes {
            let packed = if value.is_some() {
                &mut puts
            } else {
                &mut deletes
            };
            packed.push_key(k);
            packed.push(sub);
            if let Some(v) = value {
                packed.push(v);
            }
        }
        self.store.put_many(&puts)?;
        self.store.delete_many(&deletes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_does_not_decode_names_the_store_the_codec_and_the_cause() {
        let json = Coded {
            store: "seen",
            codec: Json,
        };
        // Postcard's bytes of the string "card-7", read as JSON.
        let e = json.read::<String>(b"\x06card-7").unwrap_err().to_string();
        assert!(
            e.contains("state `seen`") && e.contains("as JSON") && e.contains("another codec"),
            "{e}"
        );
        let postcard = Coded {
            store: "merchants",
            codec: Postcard,
        };
        let e = postcard.read_field::<u64>(b"").unwrap_err().to_string();
        assert!(
            e.contains("state `merchants`") && e.contains("map field") && e.contains("postcard"),
            "{e}"
        );
    }
}
