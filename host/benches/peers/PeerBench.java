// The Kafka Streams side of the peers bench (host/benches/peers.rs): the same two workloads as
// the Sabot pipelines it is measured beside, written as a Kafka Streams user would write them.
//
//   java -cp CLASSES:LIB/* PeerBench WORKLOAD BOOTSTRAP INPUT OUTPUT EVENTS STATE_DIR THREADS
//
// WORKLOAD: `filter` (JSON in; rows with amount > 500; JSON out of txn_id, card_id, amount) or
// `window` (per card_id, count and sum of amount over 10-second tumbling windows of the record
// timestamps, in a RocksDB window store; JSON out of card_id, window_end, n, total). Exactly-once
// (exactly_once_v2), commits every second as the Sabot pipelines checkpoint. Exits once EVENTS
// input records were processed and the last transaction committed (`close`).
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

public final class PeerBench {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static JsonNode read(String value) {
        try {
            return JSON.readTree(value);
        } catch (Exception e) {
            throw new IllegalArgumentException("not JSON: " + value, e);
        }
    }

    private static String write(JsonNode node) {
        try {
            return JSON.writeValueAsString(node);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** count (8 bytes) and sum (8 bytes) of a window. */
    private static byte[] add(byte[] acc, double amount) {
        ByteBuffer b = ByteBuffer.wrap(acc);
        return ByteBuffer.allocate(16).putLong(b.getLong(0) + 1).putDouble(b.getDouble(8) + amount).array();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println("usage: PeerBench filter|window BOOTSTRAP INPUT OUTPUT EVENTS STATE_DIR THREADS");
            System.exit(2);
        }
        String workload = args[0];
        String output = args[3];
        long events = Long.parseLong(args[4]);
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, "peer-" + output);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[5]);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[6]));
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        AtomicLong seen = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> input = builder.<String, String>stream(args[2]).peek((k, v) -> seen.incrementAndGet());
        switch (workload) {
            case "filter" -> input
                    .mapValues(PeerBench::read)
                    .filter((k, t) -> t.get("amount").asDouble() > 500)
                    .mapValues(t -> {
                        ObjectNode o = JSON.createObjectNode();
                        o.set("txn_id", t.get("txn_id"));
                        o.set("card_id", t.get("card_id"));
                        o.set("amount", t.get("amount"));
                        return write(o);
                    })
                    .to(output);
            case "window" -> input
                    .mapValues(v -> read(v).get("amount").asDouble())
                    .groupByKey(Grouped.with(Serdes.String(), Serdes.Double()))
                    .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(10)))
                    .aggregate(() -> new byte[16], (k, amount, acc) -> add(acc, amount),
                            Materialized.with(Serdes.String(), Serdes.ByteArray()))
                    .toStream()
                    .map((w, acc) -> {
                        ByteBuffer b = ByteBuffer.wrap(acc);
                        ObjectNode o = JSON.createObjectNode();
                        o.put("card_id", Long.parseLong(w.key()));
                        o.put("window_end", w.window().end());
                        o.put("n", b.getLong(0));
                        o.put("total", b.getDouble(8));
                        return new org.apache.kafka.streams.KeyValue<>(w.key(), write(o));
                    })
                    .to(output, Produced.with(Serdes.String(), Serdes.String()));
            default -> {
                System.err.println("unknown workload `" + workload + "`: expected filter or window");
                System.exit(2);
            }
        }
        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            System.exit(1);
            return null;
        });
        streams.start();
        while (seen.get() < events) {
            Thread.sleep(5);
        }
        streams.close(Duration.ofSeconds(60));
        System.out.println("processed " + seen.get());
    }
}
