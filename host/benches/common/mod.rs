//! What the Kafka benches share (`kafka`, `latency`, `peers`): the bench's producer, sending
//! through a full queue, and topics of several partitions.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

/// An idempotent producer with librdkafka's usual `linger.ms = 5`.
pub fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    producer_lingering(bootstrap, 5)
}

/// An idempotent producer that waits up to `linger_ms` to fill a request.
pub fn producer_lingering(
    bootstrap: &str,
    linger_ms: u64,
) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// Sends `record`, waiting while the producer's queue is full.
pub fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    p: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, P>,
) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

/// Creates `topic` with `partitions` partitions.
#[allow(
    dead_code,
    reason = "each bench compiles this module; only `peers` makes topics of several partitions"
)]
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
}
