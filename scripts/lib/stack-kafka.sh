# shellcheck shell=bash
# A single-node Apache Kafka (KRaft, combined broker + controller) on loopback, run from the jars
# in cache/kafka/lib. Sourced by scripts/stack.

# Any fixed, valid 22-character id (base64url of 16 bytes) will do: the data dir is formatted once.
KAFKA_CLUSTER_ID=c2hvcC1jaG9yZW8ta2Fmaw
KAFKA_MAIN=kafka.Kafka

KAFKA_HOME="" # set by kafka_paths
KAFKA_DATA=""
KAFKA_LOG=""
kafka_paths() {
  KAFKA_HOME=$STACK_DIR/kafka
  KAFKA_DATA=$KAFKA_HOME/data
  KAFKA_LOG=$LOG_DIR/kafka.log
}

kafka_write_config() {
  mkdir -p "$KAFKA_DATA"
  cat >"$KAFKA_HOME/server.properties" <<EOF
# written by scripts/stack on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$STACK_KAFKA_PORT,CONTROLLER://127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$STACK_KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
auto.create.topics.enable=false
num.partitions=1
log.retention.hours=168
EOF
  cat >"$KAFKA_HOME/log4j2.properties" <<'EOF'
# written by scripts/stack: everything to stdout (the stack's logs/kafka.log)
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

# Short-lived Kafka tools: small heap, quick JIT.
kafka_tool() {
  "$(java_bin)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties" -cp "$KAFKA_CACHE/lib/*" "$@"
}

kafka_format() {
  [[ -f $KAFKA_DATA/meta.properties ]] && return 0
  say "kafka: formatting $(show_path "$KAFKA_DATA") (cluster id $KAFKA_CLUSTER_ID)"
  kafka_tool kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" \
    -c "$KAFKA_HOME/server.properties" >>"$KAFKA_LOG" 2>&1 || {
    show_log_tail "$KAFKA_LOG"
    die "kafka storage format failed"
  }
}

kafka_ready() {
  port_open "$STACK_KAFKA_PORT" &&
    kcat -b "127.0.0.1:$STACK_KAFKA_PORT" -L -t __probe -m 2 -q >/dev/null 2>&1
}

kafka_start() {
  resolve_kafka
  kafka_write_config
  kafka_format
  ensure_port_free "$STACK_KAFKA_PORT" "the kafka client listener" STACK_KAFKA_PORT
  ensure_port_free "$STACK_KAFKA_CONTROLLER_PORT" "the kafka controller listener" STACK_KAFKA_CONTROLLER_PORT
  spawn kafka "$KAFKA_LOG" "$(java_bin)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties" \
    -cp "$KAFKA_CACHE/lib/*" "$KAFKA_MAIN" "$KAFKA_HOME/server.properties"
}
