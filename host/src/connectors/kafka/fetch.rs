//! Reading a consumer's records many at a time.
//!
//! rdkafka's `BaseConsumer::poll` hands out one record per call, and each call takes the
//! queue's lock, reads the clock four times (rdkafka's deadline, librdkafka's poll bookkeeping)
//! and wraps the record in an event: about a fifth of a Kafka → filter → Kafka pipeline's CPU.
//! [`FetchQueue::fetch`] takes up to a whole batch's records in one call of librdkafka's
//! `rd_kafka_consume_batch_queue` on the consumer's queue, which is what `poll` reads from.
//!
//! Other reports on that queue (librdkafka's log, global errors) are served by librdkafka
//! during the call: a global error reaches the client's log, and so its
//! [`super::client::Diagnosis`]; a record's own error comes back with the record.

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

/// A handle on a consumer's queue. It holds a reference on the queue, not on the consumer:
/// drop it before the consumer (declare it first in a struct that holds both).
pub(super) struct FetchQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queues may be used from any thread; the handle is only a reference.
unsafe impl Send for FetchQueue {}

impl FetchQueue {
    /// The queue `consumer`'s records arrive on (`None`: a consumer without a group, whose
    /// records arrive on its main queue, which Sabot does not use).
    pub(super) fn of<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<FetchQueue> {
        // SAFETY: the client pointer is valid while `consumer` lives; the queue returned holds
        // its own reference, released in `drop`.
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        (!queue.is_null()).then_some(FetchQueue(queue))
    }

    /// Appends up to `max` records to `into`, waiting at most `wait` for them: it returns as soon
    /// as `max` have arrived, or when `wait` has passed with fewer (none when nothing came).
    /// Returns how many were appended.
    pub(super) fn fetch(&self, wait: Duration, max: usize, into: &mut Fetched) -> usize {
        if max == 0 {
            return 0;
        }
        into.messages.reserve(max);
        let spare = into.messages.spare_capacity_mut();
        let timeout = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `spare` has room for `max` pointers; librdkafka writes that many at most and
        // returns how many it wrote (or -1, with none written).
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.0,
                timeout,
                spare.as_mut_ptr().cast::<*mut rdsys::rd_kafka_message_t>(),
                max,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: the first `n` slots were written with messages that `into` now owns.
        unsafe { into.messages.set_len(into.messages.len() + n) };
        n
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `of`, released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) };
    }
}

/// Records fetched and not yet released: each is librdkafka's, freed by [`Fetched::clear`] or
/// on drop. Keep it no longer than the consumer it came from.
#[derive(Default)]
pub(super) struct Fetched {
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
}

impl Fetched {
    /// The records in the order they were fetched.
    pub(super) fn iter(&self) -> impl Iterator<Item = Result<Fetch<'_>, KafkaError>> {
        self.messages.iter().map(|&m| {
            // SAFETY: a message returned by librdkafka, not yet destroyed: valid while `self`
            // is borrowed.
            let m = unsafe { &*m };
            if m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(match m.err {
                    rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                        KafkaError::PartitionEOF(m.partition)
                    }
                    e => KafkaError::MessageConsumption(e.into()),
                });
            }
            Ok(Fetch(m))
        })
    }

    /// Releases every record.
    pub(super) fn clear(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is destroyed once, here.
            unsafe { rdsys::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One fetched record (without an error).
pub(super) struct Fetch<'a>(&'a rdsys::rd_kafka_message_t);

impl<'a> Fetch<'a> {
    pub(super) fn topic(&self) -> &'a str {
        // SAFETY: a fetched record's topic handle lives as long as the record, and its name is
        // a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(self.0.rkt)) };
        name.to_str().unwrap_or_default()
    }

    pub(super) fn partition(&self) -> i32 {
        self.0.partition
    }

    pub(super) fn offset(&self) -> i64 {
        self.0.offset
    }

    /// The record's timestamp in ms, when it has one.
    pub(super) fn timestamp(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message, and a place for the timestamp's type.
        let ms = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE).then_some(ms)
    }

    pub(super) fn key(&self) -> Option<&'a [u8]> {
        bytes(self.0.key, self.0.key_len)
    }

    pub(super) fn payload(&self) -> Option<&'a [u8]> {
        bytes(self.0.payload, self.0.len)
    }
}

fn bytes<'a>(at: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: librdkafka's key or payload of a live message: `len` bytes at `at`, or null.
    (!at.is_null()).then(|| unsafe { std::slice::from_raw_parts(at.cast::<u8>(), len) })
}
