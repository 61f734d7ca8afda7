//! Handing a batch's records to a producer.
//!
//! rdkafka's `send` hands librdkafka one record per call and names its topic as a string: each
//! call allocates a C copy of the name, and librdkafka looks the topic up by name under the
//! client's lock, reads the clock twice and takes the partition queue's lock. [`send_all`]
//! hands over a batch's records in one call of librdkafka's `rd_kafka_produce_batch` on a
//! [`TopicHandle`] held for the sink's life: one lookup, one clock read per batch. Records
//! with headers, which that call cannot carry, go one by one through `send` as before.

use std::ffi::{CString, c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::format::Outgoing;

/// How long a send waits, when librdkafka's local queue is full, before it tries again: the
/// producer's own thread delivers records and so drains the queue meanwhile.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// librdkafka's `RD_KAFKA_PARTITION_UA` (a C macro bindgen does not carry): no partition
/// chosen, so the producer's partitioner picks one from the key.
const PARTITION_UA: i32 = -1;

/// A producer's handle on one topic. It holds a reference on the topic, which must be released
/// before the producer is destroyed: declare it before the producer in a struct that holds both.
pub(super) struct TopicHandle {
    topic: NonNull<rdsys::rd_kafka_topic_t>,
    name: String,
}

// SAFETY: librdkafka's topic handles are reference counted and may be used from any thread.
unsafe impl Send for TopicHandle {}

impl TopicHandle {
    /// A handle on `name` for `producer`, with the producer's topic configuration.
    pub(super) fn new<C: ProducerContext>(
        producer: &ThreadedProducer<C>,
        name: &str,
    ) -> Result<TopicHandle, String> {
        let c_name =
            CString::new(name).map_err(|_| format!("topic name `{name}` contains a NUL byte"))?;
        // SAFETY: the client pointer is valid while `producer` lives; a null configuration
        // means the producer's default topic configuration; the name is copied by librdkafka.
        let topic = unsafe {
            rdsys::rd_kafka_topic_new(
                producer.client().native_ptr(),
                c_name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(topic) {
            Some(topic) => Ok(TopicHandle {
                topic,
                name: name.to_owned(),
            }),
            None => {
                // SAFETY: reads this thread's last librdkafka error; no pointer is involved.
                let code = unsafe { rdsys::rd_kafka_last_error() };
                Err(format!(
                    "librdkafka refused topic `{name}`: {}",
                    RDKafkaErrorCode::from(code)
                ))
            }
        }
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `new`, released once.
        unsafe { rdsys::rd_kafka_topic_destroy(self.topic.as_ptr()) };
    }
}

/// Sends `records` to `topic`: value, key, partition and headers as encoded. Records are handed
/// over in order; when librdkafka's local queue is full it waits for deliveries to drain it.
pub(super) fn send_all<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    topic: &TopicHandle,
    records: &[Outgoing],
) -> Result<(), KafkaError>
where
    C::DeliveryOpaque: Default,
{
    if records.iter().any(|r| !r.headers.is_empty()) {
        return records
            .iter()
            .try_for_each(|r| send_one(producer, &topic.name, r));
    }
    let mut messages: Vec<rdsys::rd_kafka_message_t> = records.iter().map(message).collect();
    let mut pending = &mut messages[..];
    while !pending.is_empty() {
        let count = c_int::try_from(pending.len()).unwrap_or(c_int::MAX);
        let pending_now = usize::try_from(count).unwrap_or(usize::MAX);
        // SAFETY: `topic` is a live handle of this producer; the first `count` messages are
        // initialised, their payloads and keys borrow `records`, which outlive the call, and
        // RD_KAFKA_MSG_F_COPY makes librdkafka copy them. librdkafka writes only the messages'
        // `err` fields. `_private` is null: the delivery opaque of `C` carries nothing.
        let handed = unsafe {
            rdsys::rd_kafka_produce_batch(
                topic.topic.as_ptr(),
                PARTITION_UA,
                rdsys::RD_KAFKA_MSG_F_COPY | rdsys::RD_KAFKA_MSG_F_PARTITION,
                pending.as_mut_ptr(),
                count,
            )
        };
        if usize::try_from(handed).is_ok_and(|n| n == pending_now) {
            pending = &mut pending[pending_now..];
            continue;
        }
        // Once the queue is full, librdkafka refuses that record and every one after it; any
        // other error is the record's own.
        let failed = pending[..pending_now]
            .iter()
            .position(|m| m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .unwrap_or(pending_now);
        match pending.get(failed).map(|m| RDKafkaErrorCode::from(m.err)) {
            Some(RDKafkaErrorCode::QueueFull) => {
                pending = &mut pending[failed..];
                for m in pending.iter_mut() {
                    m.err = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
                }
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
            Some(code) => return Err(KafkaError::MessageProduction(code)),
            None => pending = &mut pending[pending_now..],
        }
    }
    Ok(())
}

/// `record` as librdkafka's message, borrowing its value and key.
fn message(record: &Outgoing) -> rdsys::rd_kafka_message_t {
    let (payload, len) = match &record.value {
        Some(v) => (v.as_ptr().cast_mut().cast::<c_void>(), v.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let (key, key_len) = match &record.key {
        Some(k) => (k.as_ptr().cast_mut().cast::<c_void>(), k.len()),
        None => (std::ptr::null_mut(), 0),
    };
    rdsys::rd_kafka_message_t {
        err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
        rkt: std::ptr::null_mut(),
        partition: record.partition.unwrap_or(PARTITION_UA),
        payload,
        len,
        key,
        key_len,
        offset: 0,
        _private: std::ptr::null_mut(),
    }
}

/// Sends one record, its headers with it.
fn send_one<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    topic: &str,
    r: &Outgoing,
) -> Result<(), KafkaError>
where
    C::DeliveryOpaque: Default,
{
    let mut record = BaseRecord::with_opaque_to(topic, Default::default());
    // A header list is librdkafka's allocation, freed with the record: only when needed.
    if !r.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        record = record.headers(headers);
    }
    if let Some(value) = &r.value {
        record = record.payload(value.as_slice());
    }
    if let Some(k) = &r.key {
        record = record.key(k.as_str());
    }
    if let Some(p) = r.partition {
        record = record.partition(p);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
            Err((e, _)) => return Err(e),
        }
    }
}
