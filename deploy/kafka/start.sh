#!/bin/sh
# Starts one KRaft node: formats its log directory the first time, then runs the broker.
set -eu
data=/var/lib/kafka
advertised="${KAFKA_ADVERTISED:-kafka:9092}"
external="${KAFKA_EXTERNAL:-localhost:9094}"
mkdir -p "$data"
cat > /tmp/server.properties <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=INTERNAL://:9092,CONTROLLER://127.0.0.1:9093,EXTERNAL://:9094
advertised.listeners=INTERNAL://$advertised,EXTERNAL://$external
listener.security.protocol.map=INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
log.dirs=$data/logs
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.partitions=${KAFKA_PARTITIONS:-1}
PROPERTIES
if [ ! -f "$data/logs/meta.properties" ]; then
    java -cp '/opt/kafka/lib/*' kafka.tools.StorageTool format \
        -t "$(java -cp '/opt/kafka/lib/*' kafka.tools.StorageTool random-uuid)" \
        -c /tmp/server.properties
fi
exec java -Xms256m -Xmx${KAFKA_HEAP_MB:-512}m -cp '/opt/kafka/lib/*' kafka.Kafka /tmp/server.properties
