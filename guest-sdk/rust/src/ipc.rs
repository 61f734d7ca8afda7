//! The wire format of the `ipc` type in `wit/types.wit`, shared by the guest SDK and the host.
//!
//! Each port and direction is one logical Arrow IPC stream. The first batch sent on a port carries
//! the schema message before its record batch; later batches carry only their dictionary and
//! record-batch messages, so a schema crosses the sandbox boundary once, not with every batch. A batch
//! whose schema differs from the previous one on its port starts with the new schema.
//!
//! [`BatchEncoder`] and [`BatchDecoder`] keep that per-port state. Both sides of the boundary use
//! these two types, so the framing cannot drift between host and guest.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use arrow_schema::{ArrowError, SchemaRef};

/// Encodes the batches sent on one port: the schema once, then only record batches.
#[derive(Default)]
pub struct BatchEncoder {
    current: Option<(SchemaRef, StreamEncoder)>,
}

impl std::fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("schema", &self.current.as_ref().map(|(s, _)| s))
            .finish()
    }
}

impl BatchEncoder {
    /// A new encoder: the first batch it encodes will carry its schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the schema sent so far, so the next batch carries its schema again. Used when the
    /// receiving side was replaced (a new agent instance).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Encodes `batch` as the next message(s) of this port's stream, appending to `out`.
    pub fn encode_into(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<u8>,
    ) -> Result<(), ArrowError> {
        let schema = batch.schema();
        let same = match &self.current {
            Some((sent, _)) => Arc::ptr_eq(sent, &schema) || **sent == *schema,
            None => false,
        };
        if !same {
            self.current = Some((schema.clone(), StreamEncoder::try_new(&schema)?));
        }
        let (_, encoder) = self.current.as_mut().expect("encoder set above");
        let buffers = encoder.encode(batch)?;
        out.reserve(buffers.iter().map(Buffer::len).sum());
        for buffer in &buffers {
            out.extend_from_slice(buffer.as_slice());
        }
        Ok(())
    }

    /// Encodes `batch` into a new byte vector. See [`BatchEncoder::encode_into`].
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        let mut out = Vec::new();
        self.encode_into(batch, &mut out)?;
        Ok(out)
    }
}

/// Decodes the batches received on one port, remembering the schema between batches.
#[derive(Debug, Default)]
pub struct BatchDecoder {
    decoder: Option<StreamDecoder>,
}

impl BatchDecoder {
    /// A new decoder: the first message it sees must be a schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the schema received so far.
    pub fn reset(&mut self) {
        self.decoder = None;
    }

    /// The schema of the stream, once one has been received.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.decoder.as_ref().and_then(StreamDecoder::schema)
    }

    /// Decodes exactly one record batch from `bytes`, which must hold an optional schema message,
    /// any dictionary batches, and one record-batch message, with nothing after it.
    ///
    /// The batch's buffers point into `bytes` without a copy where they are suitably aligned.
    pub fn decode(&mut self, bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
        if bytes.is_empty() {
            return Err(ArrowError::IpcError(
                "an IPC batch was empty (0 bytes)".into(),
            ));
        }
        if starts_with_schema(&bytes)? || self.decoder.is_none() {
            self.decoder = Some(StreamDecoder::new());
        }
        let decoder = self.decoder.as_mut().expect("decoder set above");
        let mut buffer = Buffer::from(bytes);
        let total = buffer.len();
        let batch = decoder.decode(&mut buffer);
        let batch = match batch {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                // The decoder saw a partial message; the next call must start from a clean state.
                self.decoder = None;
                return Err(ArrowError::IpcError(format!(
                    "IPC bytes ended before a complete record batch ({total} bytes given)"
                )));
            }
            Err(e) => {
                self.decoder = None;
                return Err(e);
            }
        };
        if !buffer.is_empty() {
            let trailing = buffer.len();
            self.decoder = None;
            return Err(ArrowError::IpcError(format!(
                "{trailing} unexpected bytes after the record batch (expected exactly one batch)"
            )));
        }
        Ok(batch)
    }
}

/// Whether the first IPC message in `bytes` is a schema message.
fn starts_with_schema(bytes: &[u8]) -> Result<bool, ArrowError> {
    let (len_at, meta_at) = match bytes.get(0..4) {
        Some([0xff, 0xff, 0xff, 0xff]) => (4, 8),
        Some(_) => (0, 4),
        None => return Err(truncated(bytes.len())),
    };
    let len = bytes
        .get(len_at..len_at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| truncated(bytes.len()))?;
    let meta = bytes
        .get(meta_at..meta_at + len)
        .ok_or_else(|| truncated(bytes.len()))?;
    let message = arrow_ipc::root_as_message(meta)
        .map_err(|e| ArrowError::IpcError(format!("not an Arrow IPC message: {e}")))?;
    Ok(message.header_type() == arrow_ipc::MessageHeader::Schema)
}

fn truncated(len: usize) -> ArrowError {
    ArrowError::IpcError(format!(
        "IPC bytes too short for a message header ({len} bytes)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[test]
    fn schema_is_sent_once_per_port() {
        let mut enc = BatchEncoder::new();
        let first = enc.encode(&batch(&[1, 2, 3])).unwrap();
        let second = enc.encode(&batch(&[4, 5, 6])).unwrap();
        assert!(starts_with_schema(&first).unwrap());
        assert!(!starts_with_schema(&second).unwrap());
        assert!(second.len() < first.len());

        let mut dec = BatchDecoder::new();
        assert_eq!(dec.decode(first).unwrap(), batch(&[1, 2, 3]));
        assert_eq!(dec.decode(second).unwrap(), batch(&[4, 5, 6]));
    }

    #[test]
    fn a_new_schema_replaces_the_old_one() {
        let mut enc = BatchEncoder::new();
        let mut dec = BatchDecoder::new();
        dec.decode(enc.encode(&batch(&[1])).unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let strings =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"]))]).unwrap();
        let bytes = enc.encode(&strings).unwrap();
        assert!(starts_with_schema(&bytes).unwrap());
        assert_eq!(dec.decode(bytes).unwrap(), strings);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let mut enc = BatchEncoder::new();
        let good = enc.encode(&batch(&[1, 2, 3])).unwrap();
        let mut dec = BatchDecoder::new();
        assert!(dec.decode(vec![]).is_err());
        assert!(dec.decode(vec![1, 2, 3]).is_err());
        assert!(dec.decode(good[..good.len() - 3].to_vec()).is_err());
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0, 0, 0, 9]);
        let err = dec.decode(trailing).unwrap_err().to_string();
        assert!(err.contains("unexpected bytes"), "{err}");
        // The decoder recovers once a schema arrives again.
        assert_eq!(dec.decode(good).unwrap(), batch(&[1, 2, 3]));
    }

    #[test]
    fn a_batch_without_a_known_schema_is_refused() {
        let mut enc = BatchEncoder::new();
        enc.encode(&batch(&[1])).unwrap();
        let body_only = enc.encode(&batch(&[2])).unwrap();
        let err = BatchDecoder::new()
            .decode(body_only)
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains("schema"), "{err}");
    }
}
