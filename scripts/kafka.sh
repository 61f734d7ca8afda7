# Sourced by scripts/test: a real Apache Kafka broker for the Kafka tests — a single KRaft node
# (broker and controller) on 127.0.0.1, fetched once from Maven Central with Maven (Java 17), its
# data in a temporary directory, stopped when the tests end. Exports SABOT_KAFKA_BOOTSTRAP.
# SABOT_KAFKA_BOOTSTRAP set beforehand: that broker is used and nothing is started.
sabot_kafka_start() {
    [ -n "${SABOT_KAFKA_BOOTSTRAP:-}" ] && return 0
    local version home dir broker controller
    version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' tests/kafka/pom.xml)"
    home="$HOME/.cache/sabot/kafka/$version"
    if [ ! -f "$home/lib/.complete" ]; then
        echo "==> fetching Apache Kafka $version from Maven Central (once)" >&2
        mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$home/lib" >&2
        touch "$home/lib/.complete"
    fi
    dir="$(mktemp -d -t sabot-kafka.XXXXXX)"
    read -r broker controller < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
    cat > "$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$broker,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$broker
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
        -c "$dir/server.properties" >"$dir/format.log" 2>&1
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
    export SABOT_KAFKA_BOOTSTRAP
    echo "==> Kafka $version on $SABOT_KAFKA_BOOTSTRAP (data in $dir)" >&2
}

sabot_kafka_stop() {
    [ -n "${SABOT_KAFKA_DIR:-}" ] || return 0
    if [ -f "$SABOT_KAFKA_DIR/pid" ]; then
        kill "$(cat "$SABOT_KAFKA_DIR/pid")" 2>/dev/null || true
        wait "$(cat "$SABOT_KAFKA_DIR/pid")" 2>/dev/null || true
    fi
    rm -rf "$SABOT_KAFKA_DIR"
}
