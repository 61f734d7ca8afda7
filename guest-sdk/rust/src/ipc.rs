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

use std::collections::HashMap;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_data::UnsafeFlag;
use arrow_ipc::MessageHeader;
use arrow_ipc::reader::{RecordBatchDecoder, read_dictionary_impl};
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

    /// Encodes `batch` as the next message(s) of this port's stream, as the parts they are
    /// made of: the metadata Arrow writes, then the batch's own buffers (shared, not copied) and
    /// their padding. Written end to end, the parts are what [`BatchEncoder::encode_into`]
    /// appends.
    pub fn encode_parts(&mut self, batch: &RecordBatch) -> Result<Vec<Buffer>, ArrowError> {
        let schema = batch.schema();
        let same = match &self.current {
            Some((sent, _)) => Arc::ptr_eq(sent, &schema) || **sent == *schema,
            None => false,
        };
        if !same {
            self.current = Some((schema.clone(), StreamEncoder::try_new(&schema)?));
        }
        let (_, encoder) = self.current.as_mut().expect("encoder set above");
        encoder.encode(batch)
    }

    /// Encodes `batch` as the next message(s) of this port's stream, appending to `out`.
    pub fn encode_into(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<u8>,
    ) -> Result<(), ArrowError> {
        let buffers = self.encode_parts(batch)?;
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

/// Decodes the batches received on one port, remembering the schema (and dictionaries) between
/// batches.
///
/// By default every decoded array is fully validated (offsets, UTF-8, lengths): the host decodes
/// what an untrusted agent returns this way. [`BatchDecoder::new_trusted`] skips validation, for
/// an agent decoding what the host sends it.
#[derive(Debug, Default)]
pub struct BatchDecoder {
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, ArrayRef>,
    trusted: bool,
}

impl BatchDecoder {
    /// A validating decoder: the first message it sees must be a schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that does not validate the arrays it decodes.
    ///
    /// # Safety
    ///
    /// Every byte string given to [`BatchDecoder::decode`] must come from a [`BatchEncoder`]
    /// encoding valid record batches: invalid arrays that skip validation cause undefined
    /// behaviour when read.
    pub unsafe fn new_trusted() -> Self {
        BatchDecoder {
            trusted: true,
            ..Self::default()
        }
    }

    /// Forgets the schema received so far.
    pub fn reset(&mut self) {
        self.schema = None;
        self.dictionaries.clear();
    }

    /// The schema of the stream, once one has been received.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.schema.clone()
    }

    fn skip_validation(&self) -> UnsafeFlag {
        let mut flag = UnsafeFlag::new();
        if self.trusted {
            // SAFETY: `trusted` is only set by `new_trusted`, whose caller vouches for the data.
            unsafe { flag.set(true) };
        }
        flag
    }

    /// Decodes exactly one record batch from `bytes`, which must hold an optional schema message,
    /// any dictionary batches, and one record-batch message, with nothing after it.
    ///
    /// The batch's buffers point into `bytes` without a copy where they are suitably aligned.
    pub fn decode(&mut self, bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
        let result = self.decode_messages(Buffer::from(bytes));
        if result.is_err() {
            // After a bad message the stream state is unknown: the next batch must start afresh.
            self.reset();
        }
        result
    }

    fn decode_messages(&mut self, buf: Buffer) -> Result<RecordBatch, ArrowError> {
        if buf.is_empty() {
            return Err(ArrowError::IpcError(
                "an IPC batch was empty (0 bytes)".into(),
            ));
        }
        let mut at = 0;
        while at < buf.len() {
            let (meta_start, meta_len) = message_header(&buf, at)?;
            let message = arrow_ipc::root_as_message(&buf[meta_start..meta_start + meta_len])
                .map_err(|e| {
                    ArrowError::IpcError(format!("not an Arrow IPC message at byte {at}: {e}"))
                })?;
            let body_start = meta_start + meta_len;
            let body_len = usize::try_from(message.bodyLength())
                .ok()
                .filter(|len| {
                    body_start
                        .checked_add(*len)
                        .is_some_and(|end| end <= buf.len())
                })
                .ok_or_else(|| {
                    ArrowError::IpcError(format!(
                        "a message body of {} bytes runs past the end of the {} bytes given",
                        message.bodyLength(),
                        buf.len()
                    ))
                })?;
            let body = buf.slice_with_length(body_start, body_len);
            at = body_start + body_len;
            let version = message.version();
            match message.header_type() {
                MessageHeader::Schema => {
                    let schema = message.header_as_schema().ok_or_else(|| {
                        ArrowError::IpcError("a schema message without a schema".into())
                    })?;
                    self.schema = Some(Arc::new(arrow_ipc::convert::try_fb_to_schema(schema)?));
                    self.dictionaries.clear();
                }
                MessageHeader::DictionaryBatch => {
                    let schema = self.schema.clone().ok_or_else(missing_schema)?;
                    let dictionary = message.header_as_dictionary_batch().ok_or_else(|| {
                        ArrowError::IpcError("a dictionary message without a dictionary".into())
                    })?;
                    let skip_validation = self.skip_validation();
                    read_dictionary_impl(
                        &body,
                        dictionary,
                        &schema,
                        &mut self.dictionaries,
                        &version,
                        false,
                        skip_validation,
                    )?;
                }
                MessageHeader::RecordBatch => {
                    let schema = self.schema.clone().ok_or_else(missing_schema)?;
                    let header = message.header_as_record_batch().ok_or_else(|| {
                        ArrowError::IpcError("a record batch message without a batch".into())
                    })?;
                    let batch = RecordBatchDecoder::try_new(
                        &body,
                        header,
                        schema,
                        &self.dictionaries,
                        &version,
                    )?
                    .with_skip_validation(self.skip_validation())
                    .read_record_batch()?;
                    if at != buf.len() {
                        return Err(ArrowError::IpcError(format!(
                            "{} unexpected bytes after the record batch (expected exactly one batch)",
                            buf.len() - at
                        )));
                    }
                    return Ok(batch);
                }
                other => {
                    return Err(ArrowError::IpcError(format!(
                        "unexpected IPC message type {other:?} (expected schema, dictionary or record batch)"
                    )));
                }
            }
        }
        Err(ArrowError::IpcError(format!(
            "IPC bytes ended before a complete record batch ({} bytes given)",
            buf.len()
        )))
    }
}

fn missing_schema() -> ArrowError {
    ArrowError::IpcError(
        "a batch arrived before its schema (expected the schema message first)".into(),
    )
}

/// The start and length of the flatbuffer metadata of the message at `at`.
fn message_header(buf: &[u8], at: usize) -> Result<(usize, usize), ArrowError> {
    let word = |i: usize| {
        buf.get(i..i + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| truncated(buf.len()))
    };
    let (len, meta_start) = match word(at)? {
        0xffff_ffff => (word(at + 4)? as usize, at + 8),
        len => (len as usize, at + 4),
    };
    if len == 0 {
        return Err(ArrowError::IpcError(
            "an end-of-stream marker where a message was expected".into(),
        ));
    }
    if meta_start
        .checked_add(len)
        .is_none_or(|end| end > buf.len())
    {
        return Err(truncated(buf.len()));
    }
    Ok((meta_start, len))
}

/// Whether the first IPC message in `bytes` is a schema message.
#[cfg(test)]
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
    Ok(message.header_type() == MessageHeader::Schema)
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
    fn dictionary_columns_round_trip() {
        use arrow_array::types::Int32Type;
        use arrow_array::{Array, DictionaryArray};
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            dict.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(dict)]).unwrap();
        let mut enc = BatchEncoder::new();
        let mut dec = BatchDecoder::new();
        assert_eq!(dec.decode(enc.encode(&batch).unwrap()).unwrap(), batch);
        assert_eq!(dec.decode(enc.encode(&batch).unwrap()).unwrap(), batch);
    }

    #[test]
    fn a_trusted_decoder_reads_what_the_encoder_wrote() {
        let mut enc = BatchEncoder::new();
        // SAFETY: the bytes come from a BatchEncoder of valid batches.
        let mut dec = unsafe { BatchDecoder::new_trusted() };
        assert_eq!(
            dec.decode(enc.encode(&batch(&[1, 2])).unwrap()).unwrap(),
            batch(&[1, 2])
        );
        assert_eq!(
            dec.decode(enc.encode(&batch(&[3])).unwrap()).unwrap(),
            batch(&[3])
        );
    }

    #[test]
    fn invalid_utf8_is_refused_by_the_validating_decoder() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let strings =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["héllo"]))]).unwrap();
        let mut bytes = BatchEncoder::new().encode(&strings).unwrap();
        // Corrupt the first byte of the 'é' in the body: no longer UTF-8.
        let at = bytes.windows(2).rposition(|w| w == "é".as_bytes()).unwrap();
        bytes[at] = 0xff;
        let err = BatchDecoder::new().decode(bytes).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("utf"), "{err}");
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
