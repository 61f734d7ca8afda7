//! How state values, and a map's fields, become the bytes the host keeps.
//!
//! The host keeps bytes; what they mean is the SDKs' agreement. Every SDK — Rust, JavaScript,
//! Python, Go — writes **JSON** by default, and a map's field that is a string as its UTF-8 text,
//! so an agent reads the state another language's agent wrote: a hot swap from a Rust version
//! of an agent to a JavaScript one (or back) keeps its state. [`Json`] is that encoding.
//!
//! [`Postcard`] is compact and several times faster, but only Rust reads it: for state that no
//! agent in another language will take over (the built-in operators keep theirs so). Choose it
//! per store with `with_codec`; a store must keep the codec it was written with.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An encoding of state values and map fields. Implemented by [`Json`] and [`Postcard`].
pub trait Codec: Copy {
    /// The encoding's name, for error messages.
    const NAME: &'static str;

    /// The bytes of a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, String>;

    /// Appends `value`'s encoding to `out` (a batch of values encodes into one buffer).
    fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(&self.encode(value)?);
        Ok(())
    }

    /// A value from its bytes.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String>;

    /// The bytes of a map's field (its sub-key): by default, as a value.
    fn encode_field<T: Serialize + ?Sized>(&self, field: &T) -> Result<Vec<u8>, String> {
        self.encode(field)
    }

    /// A map's field from its bytes: by default, as a value.
    fn decode_field<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        self.decode(bytes)
    }
}

/// JSON text (RFC 8259), the encoding every SDK shares. A map's field that serializes as a string
/// is kept as its bare UTF-8 text, as the other SDKs keep their (string) fields; any other field
/// as its JSON text.
///
/// JSON's limits apply: a non-finite float is written as `null` (and does not read back as a
/// float), and JavaScript reads integers beyond 2^53 approximately.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "JSON";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    fn encode_field<T: Serialize + ?Sized>(&self, field: &T) -> Result<Vec<u8>, String> {
        match serde_json::to_value(field).map_err(|e| e.to_string())? {
            serde_json::Value::String(text) => Ok(text.into_bytes()),
            other => serde_json::to_vec(&other).map_err(|e| e.to_string()),
        }
    }

    fn decode_field<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        // A field type that reads from a string was written as its bare text; any other as JSON.
        if let Ok(text) = std::str::from_utf8(bytes)
            && let Ok(field) = serde_json::from_value(serde_json::Value::String(text.to_owned()))
        {
            return Ok(field);
        }
        self.decode(bytes)
    }
}

/// [postcard](https://docs.rs/postcard): compact and fast, read by Rust only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(value).map_err(|e| e.to_string())
    }

    fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        *out = postcard::to_extend(value, std::mem::take(out)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_the_text_other_languages_write() {
        assert_eq!(Json.encode(&5u64).unwrap(), b"5");
        assert_eq!(Json.encode(&(2.5f64, 3u64)).unwrap(), b"[2.5,3]");
        assert_eq!(Json.encode(&vec![1.0f64]).unwrap(), b"[1.0]");
        // What JavaScript's JSON.stringify writes for the same values reads back.
        assert_eq!(Json.decode::<f64>(b"12").unwrap(), 12.0);
        assert_eq!(Json.decode::<(f64, u64)>(b"[12,3]").unwrap(), (12.0, 3));
        assert_eq!(Json.decode::<Vec<f64>>(b"[1,2.5]").unwrap(), vec![1.0, 2.5]);
    }

    #[test]
    fn json_string_fields_are_bare_text_and_others_json() {
        assert_eq!(Json.encode_field("m-7").unwrap(), b"m-7");
        assert_eq!(Json.encode_field(&42i64).unwrap(), b"42");
        assert_eq!(Json.decode_field::<String>(b"m-7").unwrap(), "m-7");
        // A string field that looks like a number or holds quotes stays that string.
        assert_eq!(Json.decode_field::<String>(b"42").unwrap(), "42");
        assert_eq!(Json.decode_field::<String>(b"\"q\"").unwrap(), "\"q\"");
        assert_eq!(Json.decode_field::<i64>(b"42").unwrap(), 42);
        assert!(Json.decode_field::<i64>(b"m-7").is_err());
    }

    #[test]
    fn postcard_round_trips_what_json_cannot() {
        let v = f64::NAN;
        assert!(
            Postcard
                .decode::<f64>(&Postcard.encode(&v).unwrap())
                .unwrap()
                .is_nan()
        );
        assert_eq!(Json.encode(&v).unwrap(), b"null");
        assert!(Json.decode::<f64>(b"null").is_err());
    }
}
