//! Record values to and from Arrow: JSON (`arrow-json`), MessagePack (`rmp-serde`), Avro
//! (`arrow-avro`), Arrow IPC (`arrow-ipc`), raw bytes.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::KafkaSourceSpec;

/// How record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaFormat {
    /// One JSON object per record (per row when writing).
    #[default]
    Json,
    /// One MessagePack map per record (per row when writing).
    Msgpack,
    /// An Arrow IPC stream per record (per batch when writing).
    Arrow,
    /// The record's key and value as bytes.
    Raw,
    /// One Avro datum per record (per row when writing), of the schema in `avro.schema_file`,
    /// framed as `avro.framing` says (`arrow-avro`).
    Avro,
}

/// How each Avro record value is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AvroFraming {
    /// A bare Avro datum (binary encoding).
    #[default]
    None,
    /// Confluent's wire format: byte 0x00, the schema's registry id (4 bytes, big-endian), the
    /// datum.
    Confluent,
    /// Avro's single-object encoding: 0xC3 0x01, the schema's CRC-64-AVRO fingerprint, the datum.
    SingleObject,
}

/// `avro = { … }` of a Kafka source or sink with `format = "avro"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvroSpec {
    /// The Avro schema of the records (`.avsc`, JSON), relative to the pipeline file.
    pub schema_file: std::path::PathBuf,
    /// `none` (default), `confluent` or `single-object`.
    #[serde(default)]
    pub framing: AvroFraming,
    /// `framing = "confluent"`: the schema's id in the registry.
    pub schema_id: Option<u32>,
    /// The schema's text, read from `schema_file` when the pipeline is loaded.
    #[serde(skip)]
    pub schema: String,
    /// The Arrow schema of its records, derived once when the pipeline is loaded.
    #[serde(skip)]
    arrow: Option<SchemaRef>,
}

impl AvroSpec {
    /// Reads and checks `schema_file` (already resolved); `Err((field, message))`.
    pub fn load(&mut self) -> Result<(), (String, String)> {
        self.schema = std::fs::read_to_string(&self.schema_file).map_err(|e| {
            (
                "avro.schema_file".to_owned(),
                format!("cannot read {}: {e}", self.schema_file.display()),
            )
        })?;
        if self.framing == AvroFraming::Confluent && self.schema_id.is_none() {
            return Err((
                "avro.schema_id".into(),
                "framing = \"confluent\" needs the schema's registry id, e.g. schema_id = 7".into(),
            ));
        }
        let arrow = self
            .decoder(1)
            .map_err(|m| ("avro.schema_file".to_owned(), m))?
            .schema();
        self.arrow = Some(arrow);
        Ok(())
    }

    /// A decoder of up to `rows` records of this schema and framing.
    fn decoder(&self, rows: usize) -> Result<arrow_avro::reader::Decoder, String> {
        use arrow_avro::reader::{DecoderMode, ReaderBuilder};
        use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
        let unusable = |e: arrow_schema::ArrowError| {
            format!(
                "{}: not a usable Avro schema: {e}",
                self.schema_file.display()
            )
        };
        let schema = AvroSchema::new(self.schema.clone());
        let (store, fingerprint) = match self.framing {
            AvroFraming::Confluent => {
                let id = self.schema_id.unwrap_or_default();
                let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
                let fp = store
                    .set(Fingerprint::Id(id), schema.clone())
                    .map_err(unusable)?;
                (store, fp)
            }
            _ => {
                let mut store = SchemaStore::new();
                let fp = store.register(schema.clone()).map_err(unusable)?;
                (store, fp)
            }
        };
        let mut builder = ReaderBuilder::new()
            .with_batch_size(rows.max(1))
            .with_writer_schema_store(store)
            .with_active_fingerprint(fingerprint);
        if self.framing == AvroFraming::None {
            builder = builder.with_decoder_mode(DecoderMode::UnframedDatum);
        }
        builder.build_decoder().map_err(|e| {
            format!(
                "{}: not a usable Avro schema: {e}",
                self.schema_file.display()
            )
        })
    }

    /// The Arrow schema of the decoded records.
    pub fn arrow_schema(&self) -> Result<SchemaRef, String> {
        match &self.arrow {
            Some(schema) => Ok(schema.clone()),
            None => Ok(self.decoder(1)?.schema()),
        }
    }

    /// `batch`'s rows as Avro values in this framing: the columns the schema's fields name, in
    /// the schema's order (others are left out).
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
        use arrow_avro::writer::WriterBuilder;
        use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
        let wanted = self.arrow_schema()?;
        let have_schema = batch.schema();
        let mut columns = Vec::with_capacity(wanted.fields().len());
        for field in wanted.fields() {
            let (i, _) = have_schema.column_with_name(field.name()).ok_or_else(|| {
                format!(
                    "the Avro schema's field `{}` is not a column of the batch (columns: {})",
                    field.name(),
                    column_names(batch)
                )
            })?;
            // The writer encodes what the Arrow types say: make them the schema's, or refuse.
            let strict = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            let column = arrow_cast::cast_with_options(batch.column(i), field.data_type(), &strict)
                .map_err(|e| {
                    format!(
                        "the batch does not fit the Avro schema: column `{}` ({}) is not {}: {e}",
                        field.name(),
                        batch.column(i).data_type(),
                        field.data_type()
                    )
                })?;
            columns.push(column);
        }
        let batch = RecordBatch::try_new(wanted.clone(), columns)
            .map_err(|e| format!("the batch does not fit the Avro schema: {e}"))?;
        let mut metadata = batch.schema().metadata().clone();
        metadata.insert(SCHEMA_METADATA_KEY.to_owned(), self.schema.clone());
        let schema = batch.schema().as_ref().clone().with_metadata(metadata);
        let batch = batch
            .clone()
            .with_schema(Arc::new(schema.clone()))
            .map_err(|e| e.to_string())?;
        let builder = WriterBuilder::new(schema);
        let mut encoder = match self.framing {
            AvroFraming::None => builder.build_encoder::<AvroBinaryFormat>(),
            AvroFraming::Confluent => builder
                .with_fingerprint_strategy(FingerprintStrategy::Id(
                    self.schema_id.unwrap_or_default(),
                ))
                .build_encoder::<AvroSoeFormat>(),
            AvroFraming::SingleObject => builder
                .with_fingerprint_strategy(FingerprintStrategy::Rabin)
                .build_encoder::<AvroSoeFormat>(),
        }
        .map_err(|e| format!("the batch does not fit the Avro schema: {e}"))?;
        encoder
            .encode(&batch)
            .map_err(|e| format!("the batch does not fit the Avro schema: {e}"))?;
        Ok(encoder.flush().iter().map(|row| row.to_vec()).collect())
    }
}

/// Where a record came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// One record read from Kafka.
pub struct Record {
    /// Its partition's index in the source's assignment.
    pub slot: usize,
    pub origin: Origin,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

fn metadata_fields(prefix: &str) -> Vec<Field> {
    vec![
        Field::new(format!("{prefix}topic"), DataType::Utf8, false),
        Field::new(format!("{prefix}partition"), DataType::Int32, false),
        Field::new(format!("{prefix}offset"), DataType::Int64, false),
        Field::new(
            format!("{prefix}timestamp"),
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]
}

/// The schema of the decoded values (without metadata columns): declared for JSON and
/// MessagePack, fixed for raw, none (taken from the records) for Arrow.
pub fn schema_of(spec: &KafkaSourceSpec) -> Result<Option<SchemaRef>, (String, String)> {
    match spec.format {
        KafkaFormat::Avro => {
            if spec.schema.is_some() {
                return Err((
                    "schema".into(),
                    "`avro` records take their columns from `avro.schema_file`: remove `schema`"
                        .into(),
                ));
            }
            let Some(avro) = &spec.avro else {
                return Err(("avro".into(), "format = \"avro\" needs the records' schema: avro = { schema_file = \"FILE.avsc\" }".into()));
            };
            let values = avro
                .arrow_schema()
                .map_err(|m| ("avro.schema_file".to_owned(), m))?;
            let mut fields: Vec<Field> =
                values.fields().iter().map(|f| f.as_ref().clone()).collect();
            if spec.metadata {
                fields.extend(metadata_fields("_"));
            }
            Ok(Some(Arc::new(Schema::new(fields))))
        }
        KafkaFormat::Raw => {
            if spec.schema.is_some() {
                return Err(("schema".into(), "`raw` records have the fixed columns key, value, topic, partition, offset, timestamp: remove `schema`".into()));
            }
            let mut fields = vec![
                Field::new("key", DataType::Binary, true),
                Field::new("value", DataType::Binary, true),
            ];
            fields.extend(metadata_fields(""));
            Ok(Some(Arc::new(Schema::new(fields))))
        }
        KafkaFormat::Arrow => {
            if spec.schema.is_some() {
                return Err((
                    "schema".into(),
                    "`arrow` records carry their schema: remove `schema`".into(),
                ));
            }
            Ok(None)
        }
        KafkaFormat::Json | KafkaFormat::Msgpack => {
            let Some(columns) = &spec.schema else {
                return Err((
                    "schema".into(),
                    "expected the columns of the records, e.g. schema = { card_id = \"int64\", amount = \"float64\" }".into(),
                ));
            };
            if columns.is_empty() {
                return Err(("schema".into(), "expected at least one column".into()));
            }
            let mut fields = columns
                .iter()
                .map(|(name, ty)| {
                    crate::connectors::file::parse_type(ty)
                        .map(|t| Field::new(name, t, true))
                        .ok_or_else(|| {
                            (
                                format!("schema.{name}"),
                                format!(
                                    "unknown type {ty:?} (expected one of: {})",
                                    crate::connectors::file::TYPE_NAMES
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if spec.metadata {
                fields.extend(metadata_fields("_"));
            }
            Ok(Some(Arc::new(Schema::new(fields))))
        }
    }
}

/// Why a record did not decode.
#[derive(Debug)]
pub struct Undecodable {
    pub index: usize,
    pub reason: String,
    /// Not a bad record: record `index` starts a new schema (Arrow). The records before it make
    /// a batch; the rest make the next.
    pub split: bool,
}

/// Decodes `records` into one batch, with how many rows each record became. A record that does
/// not decode is reported by index (the caller applies the policy and calls again without it).
pub fn decode(
    format: KafkaFormat,
    schema: Option<&SchemaRef>,
    metadata: bool,
    avro: Option<&AvroSpec>,
    records: &[Record],
) -> Result<(RecordBatch, Vec<usize>), Undecodable> {
    let one_each = || vec![1; records.len()];
    match format {
        KafkaFormat::Avro => {
            let schema = schema.expect("avro has a schema").clone();
            let avro = avro.expect("avro has its settings");
            let mut decoder = avro.decoder(records.len()).map_err(|reason| Undecodable {
                split: false,
                index: 0,
                reason,
            })?;
            for (index, r) in records.iter().enumerate() {
                let bytes = r.value.as_deref().unwrap_or_default();
                match decoder.decode(bytes) {
                    Ok(n) if n == bytes.len() && n > 0 => {}
                    Ok(n) => {
                        return Err(Undecodable {
                            split: false,
                            index,
                            reason: format!(
                                "not one Avro datum of the schema: {} of {} bytes make a datum",
                                n,
                                bytes.len()
                            ),
                        });
                    }
                    Err(e) => {
                        return Err(Undecodable {
                            split: false,
                            index,
                            reason: format!("not Avro of the schema: {e}"),
                        });
                    }
                }
            }
            let values = decoder
                .flush()
                .map_err(|e| Undecodable {
                    split: false,
                    index: 0,
                    reason: e.to_string(),
                })?
                .unwrap_or_else(|| RecordBatch::new_empty(decoder.schema()));
            let mut columns = values.columns().to_vec();
            if metadata {
                columns.extend(metadata_columns(records.iter().map(|r| (&r.origin, 1))));
            }
            assemble(schema, columns, one_each())
        }
        KafkaFormat::Raw => {
            let schema = schema.expect("raw has a schema").clone();
            let mut keys = BinaryBuilder::new();
            let mut values = BinaryBuilder::new();
            for r in records {
                keys.append_option(r.key.as_deref());
                values.append_option(r.value.as_deref());
            }
            let mut columns: Vec<ArrayRef> =
                vec![Arc::new(keys.finish()), Arc::new(values.finish())];
            columns.extend(metadata_columns(records.iter().map(|r| (&r.origin, 1))));
            assemble(schema, columns, one_each())
        }
        KafkaFormat::Json | KafkaFormat::Msgpack => {
            let schema = schema.expect("json and msgpack have a schema").clone();
            let value_fields: Vec<Field> = schema
                .fields()
                .iter()
                .filter(|f| !(metadata && f.name().starts_with('_') && is_metadata(f.name())))
                .map(|f| f.as_ref().clone())
                .collect();
            let values_schema = Arc::new(Schema::new(value_fields));
            let rows_batch = match format {
                KafkaFormat::Msgpack => {
                    let values: Vec<&[u8]> = records
                        .iter()
                        .map(|r| r.value.as_deref().unwrap_or_default())
                        .collect();
                    super::msgpack::decode(&values_schema, &values).map_err(|(index, reason)| {
                        Undecodable {
                            split: false,
                            index,
                            reason,
                        }
                    })?
                }
                _ => match json_fast(&values_schema, records) {
                    Some(batch) => batch,
                    None => decode_json_rows(&values_schema, records)?,
                },
            };
            let mut columns = rows_batch.columns().to_vec();
            if metadata {
                columns.extend(metadata_columns(records.iter().map(|r| (&r.origin, 1))));
            }
            assemble(schema, columns, one_each())
        }
        KafkaFormat::Arrow => {
            let mut batches = Vec::new();
            let mut origins = Vec::new();
            let mut rows = vec![0; records.len()];
            for (index, r) in records.iter().enumerate() {
                let bytes = r.value.as_deref().unwrap_or_default();
                let reader =
                    arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                        .map_err(|e| Undecodable {
                            split: false,
                            index,
                            reason: format!("not an Arrow IPC stream: {e}"),
                        })?;
                for batch in reader {
                    let batch = batch.map_err(|e| Undecodable {
                        split: false,
                        index,
                        reason: format!("not an Arrow IPC stream: {e}"),
                    })?;
                    if let Some(first) = batches.first().map(|b: &RecordBatch| b.schema())
                        && first != batch.schema()
                    {
                        return Err(Undecodable {
                            split: true,
                            index,
                            reason: format!(
                                "its schema {} differs from the records before it ({first})",
                                batch.schema()
                            ),
                        });
                    }
                    origins.push((&r.origin, batch.num_rows()));
                    rows[index] += batch.num_rows();
                    batches.push(batch);
                }
            }
            let Some(first) = batches.first() else {
                return Ok((RecordBatch::new_empty(Arc::new(Schema::empty())), rows));
            };
            let base = first.schema();
            let joined =
                arrow_select::concat::concat_batches(&base, &batches).map_err(|e| Undecodable {
                    split: false,
                    index: 0,
                    reason: e.to_string(),
                })?;
            if !metadata {
                return Ok((joined, rows));
            }
            let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.extend(metadata_fields("_"));
            let mut columns = joined.columns().to_vec();
            columns.extend(metadata_columns(origins.into_iter()));
            assemble(Arc::new(Schema::new(fields)), columns, rows)
        }
    }
}

/// Decodes JSON records one by one (through a value tree), naming the first that is not an
/// object of the schema's columns.
fn decode_json_rows(
    values_schema: &SchemaRef,
    records: &[Record],
) -> Result<RecordBatch, Undecodable> {
    let mut rows = Vec::with_capacity(records.len());
    for (index, r) in records.iter().enumerate() {
        let bytes = r.value.as_deref().unwrap_or_default();
        let row: Result<serde_json::Value, String> =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"));
        match row {
            Ok(v @ serde_json::Value::Object(_)) => rows.push(v),
            Ok(other) => {
                return Err(Undecodable {
                    split: false,
                    index,
                    reason: format!(
                        "expected an object of the schema's columns, got {}",
                        kind(&other)
                    ),
                });
            }
            Err(reason) => {
                return Err(Undecodable {
                    split: false,
                    index,
                    reason,
                });
            }
        }
    }
    serialize(values_schema, &rows).map_err(|whole| {
        // Find the row that does not fit, to name it.
        let index = rows
            .iter()
            .position(|row| serialize(values_schema, std::slice::from_ref(row)).is_err())
            .unwrap_or(0);
        Undecodable {
            split: false,
            index,
            reason: format!("does not fit the schema: {whole}"),
        }
    })
}

/// The decoded batch of `schema` and `columns`, with the rows each record became.
fn assemble(
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
    rows: Vec<usize>,
) -> Result<(RecordBatch, Vec<usize>), Undecodable> {
    RecordBatch::try_new(schema, columns)
        .map(|b| (b, rows))
        .map_err(|e| Undecodable {
            split: false,
            index: 0,
            reason: e.to_string(),
        })
}

/// JSON records decoded all at once by `arrow-json`, when every record is one object that fits:
/// no per-record value tree. `None` sends the caller to the record-by-record path, which names
/// the record that does not decode.
fn json_fast(schema: &SchemaRef, records: &[Record]) -> Option<RecordBatch> {
    // One row of room past the records: a full batch stops the decoder before the last separator.
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(records.len() + 1)
        .build_decoder()
        .ok()?;
    for r in records {
        let bytes = r.value.as_deref().unwrap_or_default();
        if decoder.decode(bytes).ok()? != bytes.len() || decoder.decode(b"\n").ok()? != 1 {
            return None;
        }
    }
    let batch = decoder.flush().ok()??;
    (batch.num_rows() == records.len()).then_some(batch)
}

fn is_metadata(name: &str) -> bool {
    matches!(name, "_topic" | "_partition" | "_offset" | "_timestamp")
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn serialize(schema: &SchemaRef, rows: &[serde_json::Value]) -> Result<RecordBatch, String> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(rows).map_err(|e| e.to_string())?;
    Ok(decoder
        .flush()
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// The metadata columns of rows from `origins` (each origin repeated for its rows).
fn metadata_columns<'a>(origins: impl Iterator<Item = (&'a Origin, usize)>) -> Vec<ArrayRef> {
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut timestamp = TimestampMillisecondBuilder::new();
    for (o, rows) in origins {
        for _ in 0..rows {
            topic.append_value(&o.topic);
            partition.append_value(o.partition);
            offset.append_value(o.offset);
            timestamp.append_option(o.timestamp);
        }
    }
    vec![
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(timestamp.finish()),
    ]
}

/// One record to write.
pub struct Outgoing {
    /// `None`: a tombstone (a changelog's delete).
    pub value: Option<Vec<u8>>,
    pub key: Option<String>,
    pub partition: Option<i32>,
    pub headers: Vec<(String, String)>,
}

/// Encodes `batch` as records. `key`, `partition` and `headers` name columns.
pub fn encode(
    format: KafkaFormat,
    avro: Option<&AvroSpec>,
    batch: &RecordBatch,
    key: Option<&str>,
    partition: Option<&str>,
    headers: &[String],
) -> Result<Vec<Outgoing>, String> {
    let text_of = |name: &str| -> Result<Vec<Option<String>>, String> {
        let column = column(batch, name)?;
        let formatter =
            arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &Default::default())
                .map_err(|e| e.to_string())?;
        Ok((0..column.len())
            .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
            .collect())
    };
    let keys = key.map(text_of).transpose()?;
    let partitions = partition
        .map(|name| -> Result<Vec<Option<i32>>, String> {
            let column = column(batch, name)?;
            let cast = arrow_cast::cast(column, &DataType::Int32)
                .map_err(|e| format!("column `{name}` is not a partition number: {e}"))?;
            let ints = cast
                .as_any()
                .downcast_ref::<arrow_array::Int32Array>()
                .expect("cast to int32");
            Ok(ints.iter().collect())
        })
        .transpose()?;
    let header_values = headers
        .iter()
        .map(|h| text_of(h).map(|v| (h.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    let values: Vec<Vec<u8>> = match format {
        KafkaFormat::Avro => avro
            .ok_or("format = \"avro\" needs avro = { schema_file = … }")?
            .encode(batch)?,
        KafkaFormat::Arrow => {
            let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())
                .map_err(|e| e.to_string())?;
            writer.write(batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            return Ok(vec![Outgoing {
                value: Some(writer.into_inner().map_err(|e| e.to_string())?),
                key: None,
                partition: None,
                headers: Vec::new(),
            }]);
        }
        KafkaFormat::Raw => {
            let column = batch.column_by_name("value").ok_or_else(|| {
                format!(
                    "`raw` writes the column `value`, which the batch lacks (columns: {})",
                    column_names(batch)
                )
            })?;
            let bytes = arrow_cast::cast(column, &DataType::Binary)
                .map_err(|e| format!("column `value` is not bytes or text: {e}"))?;
            let bytes = bytes
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .expect("cast to binary");
            bytes
                .iter()
                .map(|b| b.unwrap_or_default().to_vec())
                .collect()
        }
        // Column by column, when every column has a MessagePack form.
        KafkaFormat::Msgpack if super::msgpack::writes(&batch.schema()) => {
            super::msgpack::encode(batch)?
        }
        // Nested and other columns, through JSON values.
        KafkaFormat::Json | KafkaFormat::Msgpack => {
            let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
            writer.write(batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            let text = writer.into_inner();
            let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            if format == KafkaFormat::Json {
                lines.map(<[u8]>::to_vec).collect()
            } else {
                lines
                    .map(|l| {
                        let v: serde_json::Value =
                            serde_json::from_slice(l).map_err(|e| e.to_string())?;
                        rmp_serde::to_vec_named(&v).map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, String>>()?
            }
        }
    };
    let mut keys = keys.map(Vec::into_iter);
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Outgoing {
            value: Some(value),
            key: keys.as_mut().and_then(|k| k.next().flatten()),
            partition: partitions.as_ref().and_then(|p| p[i]),
            headers: header_values
                .iter()
                .filter_map(|(name, values)| values[i].clone().map(|v| (name.clone(), v)))
                .collect(),
        })
        .collect())
}

/// Column `name` of `batch`, or an error naming the columns it has.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch.column_by_name(name).ok_or_else(|| {
        format!(
            "the batch has no column `{name}` (columns: {})",
            column_names(batch)
        )
    })
}

fn column_names(batch: &RecordBatch) -> String {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(values: &[&str]) -> Vec<Record> {
        records_of(values.iter().map(|v| v.as_bytes().to_vec()))
    }

    /// Records of topic `t`, partition 0, at offsets 0, 1, …
    fn records_of(values: impl IntoIterator<Item = Vec<u8>>) -> Vec<Record> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| Record {
                slot: 0,
                origin: Origin {
                    topic: "t".into(),
                    partition: 0,
                    offset: i as i64,
                    timestamp: None,
                },
                key: None,
                value: Some(v),
            })
            .collect()
    }

    const TXN: &str = r#"{"type": "record", "name": "Txn", "fields": [
        {"name": "card_id", "type": "long"},
        {"name": "merchant", "type": "string"},
        {"name": "amount", "type": ["null", "double"], "default": null}]}"#;

    fn avro(framing: AvroFraming) -> AvroSpec {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("sabot-avro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("txn-{n}.avsc"));
        std::fs::write(&file, TXN).unwrap();
        let mut spec = AvroSpec {
            schema_file: file,
            framing,
            schema_id: Some(7),
            schema: String::new(),
            arrow: None,
        };
        spec.load().unwrap();
        spec
    }

    #[test]
    fn avro_rows_round_trip_in_every_framing_and_a_bad_record_is_named() {
        for framing in [
            AvroFraming::None,
            AvroFraming::Confluent,
            AvroFraming::SingleObject,
        ] {
            let spec = avro(framing);
            let schema = spec.arrow_schema().unwrap();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(arrow_array::Int64Array::from(vec![1, 2])),
                    Arc::new(arrow_array::StringArray::from(vec!["m1", "m2"])),
                    Arc::new(arrow_array::Float64Array::from(vec![Some(9.5), None])),
                ],
            )
            .unwrap();
            let values = spec.encode(&batch).unwrap();
            assert_eq!(values.len(), 2);
            match framing {
                AvroFraming::Confluent => assert_eq!(&values[0][..5], &[0, 0, 0, 0, 7]),
                AvroFraming::SingleObject => assert_eq!(&values[0][..2], &[0xC3, 0x01]),
                AvroFraming::None => assert_eq!(values[0][0], 2, "zig-zag 1 first"),
            }
            let mut incoming = records_of(values.iter().cloned());
            let (decoded, rows) = decode(
                KafkaFormat::Avro,
                Some(&schema),
                false,
                Some(&spec),
                &incoming,
            )
            .unwrap();
            assert_eq!(decoded, batch, "{framing:?}");
            assert_eq!(rows, vec![1, 1]);

            incoming[1].value = Some(values[1][..values[1].len() - 2].to_vec());
            let bad = decode(
                KafkaFormat::Avro,
                Some(&schema),
                false,
                Some(&spec),
                &incoming,
            )
            .unwrap_err();
            assert_eq!(bad.index, 1, "{framing:?}: {}", bad.reason);
        }
    }

    #[test]
    fn a_batch_that_does_not_fit_the_avro_schema_is_refused_naming_the_schema() {
        let spec = avro(AvroFraming::None);
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "card_id",
                DataType::Int64,
                false,
            )])),
            vec![Arc::new(arrow_array::Int64Array::from(vec![1]))],
        )
        .unwrap();
        let err = spec.encode(&wrong).unwrap_err();
        assert!(
            err.contains(
                "the Avro schema's field `merchant` is not a column of the batch (columns: card_id)"
            ),
            "{err}"
        );
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("card_id", DataType::Utf8, false),
                Field::new("merchant", DataType::Utf8, false),
                Field::new("amount", DataType::Float64, true),
            ])),
            vec![
                Arc::new(arrow_array::StringArray::from(vec!["x"])),
                Arc::new(arrow_array::StringArray::from(vec!["m"])),
                Arc::new(arrow_array::Float64Array::from(vec![Some(1.0)])),
            ],
        )
        .unwrap();
        let err = spec.encode(&wrong).unwrap_err();
        assert!(
            err.contains("column `card_id` (Utf8) is not Int64: Cast error"),
            "{err}"
        );
    }

    #[test]
    fn avro_takes_the_schemas_columns_by_name_in_its_order() {
        let spec = avro(AvroFraming::None);
        let shuffled = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("_partition", DataType::Int32, false),
                Field::new("amount", DataType::Float64, true),
                Field::new("merchant", DataType::Utf8, false),
                Field::new("card_id", DataType::Int64, false),
            ])),
            vec![
                Arc::new(arrow_array::Int32Array::from(vec![3])),
                Arc::new(arrow_array::Float64Array::from(vec![Some(2.5)])),
                Arc::new(arrow_array::StringArray::from(vec!["m9"])),
                Arc::new(arrow_array::Int64Array::from(vec![42])),
            ],
        )
        .unwrap();
        let values = spec.encode(&shuffled).unwrap();
        let schema = spec.arrow_schema().unwrap();
        let (decoded, _) = decode(
            KafkaFormat::Avro,
            Some(&schema),
            false,
            Some(&spec),
            &records_of(values),
        )
        .unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["card_id", "merchant", "amount"]);
        let card = decoded
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        assert_eq!(card.value(0), 42);
    }

    #[test]
    fn whole_json_batches_decode_at_once_and_odd_records_go_one_by_one() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let ok = json_fast(&schema, &records(&[r#"{"a":1}"#, r#"{"a":2}"#])).unwrap();
        assert_eq!(ok.num_rows(), 2);
        for bad in [&[r#"{"a":1"#, r#"{"a":2}"#][..], &["5"], &[r#"{"a":"x"}"#]] {
            assert!(json_fast(&schema, &records(bad)).is_none(), "{bad:?}");
        }
    }
}
