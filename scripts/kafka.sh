# Sourced by scripts/test: a real Apache Kafka broker for the Kafka tests — a single KRaft node
# (broker and controller) on 127.0.0.1, fetched once from Maven Central with Maven (Java 17), its
# data in a temporary directory, stopped when the tests end. Exports SABOT_KAFKA_BOOTSTRAP.
# A second listener speaks SASL_SSL the way production clusters do: a certificate signed by a CA
# made here with openssl (SABOT_KAFKA_TLS_DIR/ca.pem; other-ca.pem is a CA the broker does not
# use), SASL PLAIN and SCRAM-SHA-256/512 users created with Kafka's own StorageTool
# (alice / alice-secret for each). Exports SABOT_KAFKA_SASL_SSL_BOOTSTRAP and SABOT_KAFKA_TLS_DIR.
# SABOT_KAFKA_BOOTSTRAP set beforehand: that broker is used and nothing is started.
. "$(dirname "${BASH_SOURCE[0]}")/maven.sh"

sabot_kafka_start() {
    [ -n "${SABOT_KAFKA_BOOTSTRAP:-}" ] && return 0
    local home dir broker controller secure
    home="$(sabot_maven_fetch kafka tests/kafka/pom.xml kafka.version "Apache Kafka")" || return 1
    dir="$(mktemp -d -t sabot-kafka.XXXXXX)"
    read -r broker controller secure < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
    sabot_kafka_certificates "$dir/tls" || return 1
    cat > "$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$broker,CONTROLLER://127.0.0.1:$controller,SASL_SSL://127.0.0.1:$secure
advertised.listeners=PLAINTEXT://127.0.0.1:$broker,SASL_SSL://127.0.0.1:$secure
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=sabot-test
ssl.key.password=sabot-test
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPERTIES
    java -cp "$home/lib/*" kafka.tools.StorageTool format -t "$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')" \
        -c "$dir/server.properties" \
        --add-scram 'SCRAM-SHA-256=[name="alice",password="alice-secret"]' \
        --add-scram 'SCRAM-SHA-512=[name="alice",password="alice-secret"]' >"$dir/format.log" 2>&1
    java -Xms256m -Xmx512m -cp "$home/lib/*" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 &
    echo $! >"$dir/pid"
    SABOT_KAFKA_DIR="$dir"
    export SABOT_KAFKA_DIR
    trap sabot_kafka_stop EXIT
    local waited=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$broker") 2>/dev/null; do
        sleep 0.5
        waited=$((waited + 1))
        if [ "$waited" -gt 120 ]; then
            echo "scripts/kafka.sh: the broker did not start within 60 s; its log:" >&2
            tail -50 "$dir/broker.log" >&2
            return 1
        fi
    done
    SABOT_KAFKA_BOOTSTRAP="127.0.0.1:$broker"
    SABOT_KAFKA_SASL_SSL_BOOTSTRAP="127.0.0.1:$secure"
    SABOT_KAFKA_TLS_DIR="$dir/tls"
    export SABOT_KAFKA_BOOTSTRAP SABOT_KAFKA_SASL_SSL_BOOTSTRAP SABOT_KAFKA_TLS_DIR
    echo "==> Kafka $(basename "$home") on $SABOT_KAFKA_BOOTSTRAP (data in $dir)" >&2
}

# A test CA and the broker's certificate for 127.0.0.1 signed by it (PKCS#12 for the broker), and
# a second CA that signed nothing here, for the tests of a client that trusts the wrong CA.
sabot_kafka_certificates() {
    local tls="$1"
    mkdir -p "$tls"
    (
        cd "$tls" || exit 1
        for ca in ca other-ca; do
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Sabot test $ca" \
                -keyout "$ca.key" -out "$ca.pem" 2>/dev/null || exit 1
        done
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr 2>/dev/null &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext &&
            openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile broker.ext -out broker.pem 2>/dev/null &&
            openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem \
                -passout pass:sabot-test -out broker.p12
    ) || { echo "scripts/kafka.sh: openssl could not make the test certificates" >&2; return 1; }
}

sabot_kafka_stop() {
    [ -n "${SABOT_KAFKA_DIR:-}" ] || return 0
    if [ -f "$SABOT_KAFKA_DIR/pid" ]; then
        kill "$(cat "$SABOT_KAFKA_DIR/pid")" 2>/dev/null || true
        wait "$(cat "$SABOT_KAFKA_DIR/pid")" 2>/dev/null || true
    fi
    rm -rf "$SABOT_KAFKA_DIR"
}
