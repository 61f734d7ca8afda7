//! What every Sabot Kafka client shares: the librdkafka context that keeps what the library
//! reported about its connections ([`Diagnosis`]), and the bounded first contact with the
//! cluster ([`connect`]) that turns a bad password, an unknown CA, a wrong mechanism or an
//! unreachable broker into one error naming the broker, the mechanism and what to check.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::connectors::ConnectorError;

/// How long a client may take to reach its cluster when a run starts; an authentication or TLS
/// failure ends the wait as soon as librdkafka reports it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a connection failed, as far as librdkafka's reports tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The broker refused the credentials or the mechanism: retrying cannot help.
    Authentication,
    /// The TLS handshake failed (most often: the broker's certificate is not trusted).
    Tls,
    /// The broker could not be reached (yet).
    Transport,
}

impl Cause {
    /// The cause of a librdkafka report, from its wording (the broker's name that prefixes a
    /// report, `sasl_ssl://host:port/1: …`, is not looked at).
    fn of(message: &str) -> Option<Cause> {
        let has = |phrases: &[&str]| phrases.iter().any(|p| message.contains(p));
        if has(&[
            "Broker transport failure",
            "Connection refused",
            "Connect to",
            "brokers are down",
            "Failed to resolve",
            "timed out",
        ]) {
            Some(Cause::Transport)
        } else if has(&[
            "SASL authentication error",
            "Authentication failure",
            "Authentication failed",
            "mechanism handshake failed",
        ]) {
            Some(Cause::Authentication)
        } else if has(&["SSL handshake failed", "certificate verify failed"]) {
            Some(Cause::Tls)
        } else {
            None
        }
    }

    /// Whether a start should stop at once rather than wait for the broker.
    fn is_final(self) -> bool {
        matches!(self, Cause::Authentication | Cause::Tls)
    }
}

/// The librdkafka context of Sabot's clients: forwards the library's log to `tracing` and keeps
/// the last connection failure it reported.
#[derive(Clone, Default)]
pub struct Diagnosis(Arc<Mutex<Option<(Cause, String)>>>);

impl Diagnosis {
    fn record(&self, message: &str) {
        // librdkafka prefixes its log lines with the thread: `[thrd:…]: `.
        let message = match message.strip_prefix("[thrd:") {
            Some(rest) => rest.split_once("]: ").map_or(message, |(_, m)| m),
            None => message,
        };
        if let Some(cause) = Cause::of(message) {
            let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
            // A final cause is not hidden by the transport failures that follow it.
            if !last.as_ref().is_some_and(|(c, _)| c.is_final()) || cause.is_final() {
                *last = Some((cause, message.to_owned()));
            }
        }
    }

    /// The last connection failure reported.
    pub(crate) fn last(&self) -> Option<(Cause, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last failure reported that retrying cannot mend (credentials, TLS), if any.
    pub(crate) fn final_failure(&self) -> Option<String> {
        self.last()
            .filter(|(cause, _)| cause.is_final())
            .map(|(_, message)| message)
    }
}

impl ClientContext for Diagnosis {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                self.record(message);
                tracing::warn!(target: "librdkafka", facility = fac, "{message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition, for readers that ask to be told: not a failure.
        if matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        self.record(&format!("{error}: {reason}"));
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for Diagnosis {}

impl ProducerContext for Diagnosis {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How a client reaches its cluster, for error messages: the bootstrap servers, the protocol
/// and, with SASL, the mechanism and user.
pub(crate) fn describe(bootstrap: &str, properties: &BTreeMap<String, String>) -> String {
    let get = |name: &str| {
        properties
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase().replace('_', ".") == name)
            .map(|(_, v)| v.as_str())
    };
    let protocol = get("security.protocol").unwrap_or("plaintext");
    let mut text = format!("{bootstrap} over {}", protocol.to_ascii_uppercase());
    if protocol.to_ascii_lowercase().starts_with("sasl") {
        let mechanism = get("sasl.mechanism")
            .or_else(|| get("sasl.mechanisms"))
            .unwrap_or("GSSAPI");
        text.push_str(&format!(" with SASL mechanism {mechanism}"));
        let named = mechanism.eq_ignore_ascii_case("plain")
            || mechanism.to_ascii_uppercase().starts_with("SCRAM");
        if let Some(user) = get("sasl.username").filter(|_| named) {
            text.push_str(&format!(" as user `{user}`"));
        }
    }
    text
}

/// What to check, for a failure of `cause`.
fn advice(cause: Option<Cause>, message: &str) -> &'static str {
    match cause {
        Some(Cause::Authentication)
            if message.contains("mechanism") && message.contains("supported") =>
        {
            "check `sasl.mechanism`: the broker does not offer it (its mechanisms are listed above)"
        }
        Some(Cause::Authentication) => {
            "check `sasl.username` and `sasl.password`, and that the user exists on the broker for this mechanism"
        }
        Some(Cause::Tls) => {
            "check `ssl.ca.location` (or `ssl.ca.pem`): it must hold the CA that signed the broker's certificate, and the certificate must name the host in `bootstrap`"
        }
        Some(Cause::Transport) | None => {
            "check that the broker runs and that `bootstrap` and `security.protocol` match one of its listeners"
        }
    }
}

/// Reaches a cluster within [`CONNECT_TIMEOUT`]: `fetch` reads the cluster's metadata (and
/// serves the client's event queue, so that librdkafka's reports reach `diagnosis`) until it
/// succeeds, or the error says why not. `who` names the node (`source \`txns\``).
pub(crate) fn connect(
    fetch: impl Fn(Duration) -> KafkaResult<()>,
    diagnosis: &Diagnosis,
    who: &str,
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
) -> Result<(), ConnectorError> {
    let started = Instant::now();
    loop {
        let step = Duration::from_millis(500);
        let result = fetch(step);
        if result.is_ok() {
            return Ok(());
        }
        let last = diagnosis.last();
        let give_up = last.as_ref().is_some_and(|(c, _)| c.is_final())
            || started.elapsed() >= CONNECT_TIMEOUT;
        if give_up {
            let (cause, reason) = match (last, result) {
                (Some((cause, reason)), _) => (Some(cause), reason),
                (None, Err(e)) => (None, e.to_string()),
                (None, Ok(())) => unreachable!("a successful read returned above"),
            };
            return Err(ConnectorError::Broker {
                node: who.to_owned(),
                message: format!(
                    "cannot connect to Kafka at {} (waited {:.1} s of at most {} s): {reason}; {}",
                    describe(bootstrap, properties),
                    started.elapsed().as_secs_f64(),
                    CONNECT_TIMEOUT.as_secs(),
                    advice(cause, &reason),
                ),
            });
        }
    }
}

/// Whether a client error stops the run: fatal errors, and refusals that retrying cannot
/// change (credentials, TLS, authorization). Anything else librdkafka recovers from by itself.
pub(crate) fn gives_up(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error {
        KafkaError::MessageConsumptionFatal(_) => true,
        KafkaError::MessageConsumption(code) => matches!(
            code,
            Code::Authentication
                | Code::SaslAuthenticationFailed
                | Code::SSL
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::Fatal
        ),
        _ => true,
    }
}

/// [`connect`]'s `fetch` for a client whose events a background thread serves (a producer).
pub(crate) fn metadata_of<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
) -> impl Fn(Duration) -> KafkaResult<()> + '_ {
    move |timeout| client.fetch_metadata(None, timeout).map(drop)
}

/// [`connect`]'s `fetch` for a consumer not yet reading: its queue is served here.
pub(crate) fn metadata_of_consumer<C: ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
) -> impl Fn(Duration) -> KafkaResult<()> + '_ {
    use rdkafka::consumer::Consumer;
    move |timeout| {
        let result = consumer.fetch_metadata(None, timeout).map(drop);
        // Nothing is assigned yet: a poll only delivers librdkafka's log and errors.
        let _ = consumer.poll(Duration::ZERO);
        result
    }
}

/// Waits until every record `producer` was given is acknowledged by the broker and its
/// delivery report served, or `timeout` passes (`false`).
///
/// rdkafka's own `flush` serves the producer's event queue between checks, 100 ms at a time,
/// while a `ThreadedProducer`'s polling thread already drains that queue: whenever a record
/// is in flight, it sleeps the whole 100 ms. Here the background thread serves the reports and
/// the count of records in flight is looked at every millisecond (after a flush that sends
/// what lingers at once).
pub(crate) fn acknowledged<C: ProducerContext>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    timeout: Duration,
) -> bool {
    use rdkafka::producer::Producer;
    let deadline = Instant::now() + timeout;
    // Returns at once; it only tells the broker threads to send what lingers.
    let _ = producer.flush(Duration::ZERO);
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_reports_are_sorted_into_causes() {
        assert_eq!(
            Cause::of(
                "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
            ),
            Some(Cause::Authentication)
        );
        assert_eq!(
            Cause::of(
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
            ),
            Some(Cause::Tls)
        );
        assert_eq!(
            Cause::of(
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
            ),
            Some(Cause::Transport)
        );
        let d = Diagnosis::default();
        d.record("sasl_ssl://b:9093/bootstrap: SASL authentication error: invalid credentials");
        d.record("1/1 brokers are down");
        assert_eq!(d.last().unwrap().0, Cause::Authentication);
        let d = Diagnosis::default();
        d.record("sasl_ssl://b:9093/bootstrap: Connect to ipv4#127.0.0.1:9093 failed: Connection refused");
        assert_eq!(d.last().unwrap().0, Cause::Transport);
        d.record("GroupCoordinator: SASL SCRAM-SHA-256 mechanism handshake failed: Local: Broker transport failure: broker's supported mechanisms: (n/a)");
        assert_eq!(d.last().unwrap().0, Cause::Transport);
        d.record("sasl_ssl://b:9093/bootstrap: SASL OAUTHBEARER mechanism handshake failed: Broker: Unsupported SASL mechanism: broker's supported mechanisms: PLAIN");
        assert_eq!(d.last().unwrap().0, Cause::Authentication);
    }

    #[test]
    fn the_description_names_protocol_mechanism_and_user_but_no_password() {
        let properties: BTreeMap<String, String> = [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let text = describe("b:9093", &properties);
        assert_eq!(
            text,
            "b:9093 over SASL_SSL with SASL mechanism SCRAM-SHA-512 as user `alice`"
        );
        assert!(!text.contains("hunter2"));
    }
}
