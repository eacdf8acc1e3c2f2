# shellcheck shell=bash
# A single-node Apache Kafka (KRaft, combined broker + controller) on loopback, run from the jars
# in cache/kafka/lib. Sourced by scripts/stack.
#
# Secure by default (STACK_KAFKA_SECURITY=sasl_ssl): the client listener speaks SASL_SSL with
# SCRAM-SHA-512 and a certificate signed by the stack's CA (stack-tls.sh); one SCRAM principal per
# service plus `admin` for operators (a super user), created when the storage is formatted, their
# passwords in secrets/kafka-<name>; the StandardAuthorizer refuses whatever no ACL allows
# (`choreo topics apply` writes the ACLs from topics/*.yaml). STACK_KAFKA_SECURITY=plaintext
# keeps the old open listener, for comparisons.

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

# The principals: one per service that talks to Kafka, and the operators' `admin`.
KAFKA_PRINCIPALS=(admin order inventory payment shipping)

kafka_secured() { [[ $STACK_KAFKA_SECURITY == sasl_ssl ]]; }

kafka_check_security_setting() {
  case $STACK_KAFKA_SECURITY in
    sasl_ssl | plaintext) ;;
    *) die "STACK_KAFKA_SECURITY=$STACK_KAFKA_SECURITY: use sasl_ssl (the default) or plaintext" ;;
  esac
}

# What the storage was formatted for: the security mode and its principals. A data folder made
# for another one is formatted again (SCRAM users exist only from format time).
kafka_storage_kind() {
  if kafka_secured; then echo "sasl_ssl ${KAFKA_PRINCIPALS[*]}"; else echo plaintext; fi
}

# The broker's key store (PKCS12: its certificate, key and the CA), remade when the cert changes.
kafka_keystore() {
  tls_server_cert kafka
  local store=$KAFKA_HOME/broker.p12 pw
  pw=$(cat "$(secret_file kafka-keystore)")
  if [[ ! -s $store || $TLS_DIR/kafka.crt -nt $store ]]; then
    (umask 077 && openssl pkcs12 -export -in "$TLS_DIR/kafka.crt" -inkey "$TLS_DIR/kafka.key" \
      -certfile "$TLS_DIR/ca.crt" -name kafka -out "$store" -passout "pass:$pw") ||
      die "openssl could not pack the broker's key store"
  fi
}

kafka_listener_config() {
  if ! kafka_secured; then
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$STACK_KAFKA_PORT,CONTROLLER://127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$STACK_KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    return 0
  fi
  local admin_pw store_pw
  admin_pw=$(cat "$(secret_file kafka-admin)")
  store_pw=$(cat "$(secret_file kafka-keystore)")
  # The controller listener cannot use SCRAM in KRaft: PLAIN on loopback, for the broker alone.
  cat <<EOF
listeners=SASL_SSL://127.0.0.1:$STACK_KAFKA_PORT,CONTROLLER://127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$STACK_KAFKA_PORT
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin_pw" user_admin="$admin_pw";
ssl.keystore.type=PKCS12
ssl.keystore.location=$KAFKA_HOME/broker.p12
ssl.keystore.password=$store_pw
ssl.key.password=$store_pw
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
EOF
}

kafka_write_config() {
  mkdir -p "$KAFKA_DATA"
  chmod 700 "$KAFKA_HOME"
  if kafka_secured; then kafka_keystore; fi
  (umask 077 && cat >"$KAFKA_HOME/server.properties" <<EOF
# written by scripts/stack on every start (mode 600: it holds the admin's password)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$STACK_KAFKA_CONTROLLER_PORT
$(kafka_listener_config)
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
  )
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
  local kind_file=$KAFKA_HOME/storage-kind kind
  kind=$(kafka_storage_kind)
  if [[ -f $KAFKA_DATA/meta.properties ]]; then
    [[ -f $kind_file && $(cat "$kind_file") == "$kind" ]] && return 0
    say "kafka: the data in $(show_path "$KAFKA_DATA") was formatted for $(cat "$kind_file" 2>/dev/null || echo 'plaintext, before security'); formatting it again for ${kind%% *} (its topics and events are dropped)"
    rm -rf "$KAFKA_DATA"
    mkdir -p "$KAFKA_DATA"
  fi
  local -a users=()
  if kafka_secured; then
    local name
    for name in "${KAFKA_PRINCIPALS[@]}"; do
      users+=(--add-scram "SCRAM-SHA-512=[name=$name,password=\"$(cat "$(secret_file "kafka-$name")")\"]")
    done
  fi
  say "kafka: formatting $(show_path "$KAFKA_DATA") (cluster id $KAFKA_CLUSTER_ID${users:+; SCRAM users ${KAFKA_PRINCIPALS[*]}})"
  kafka_tool kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" \
    -c "$KAFKA_HOME/server.properties" "${users[@]}" >>"$KAFKA_LOG" 2>&1 || {
    show_log_tail "$KAFKA_LOG"
    die "kafka storage format failed"
  }
  echo "$kind" >"$kind_file"
}

# The broker answers a metadata request from the operator (through TLS and SCRAM when secured).
kafka_ready() {
  [[ -x $STACK_DIR/bin/kcat ]] || { ensure_librdkafka && kafka_write_client_config; }
  port_open "$STACK_KAFKA_PORT" &&
    "$STACK_DIR/bin/kcat" -L -t __probe -m 2 -q >/dev/null 2>&1
}

# librdkafka's client settings for the operator, in a file kcat reads with -F (mode 600: it
# holds the password; librdkafka has no password-file setting), and a kcat that uses them.
kafka_write_client_config() {
  local conf=$STACK_DIR/kcat.conf
  (
    umask 077
    {
      echo "# written by scripts/stack: the operator's client settings (kcat -F $conf)"
      echo "bootstrap.servers=127.0.0.1:$STACK_KAFKA_PORT"
      if kafka_secured; then
        echo "security.protocol=SASL_SSL"
        echo "sasl.mechanisms=SCRAM-SHA-512"
        echo "sasl.username=admin"
        echo "sasl.password=$(cat "$(secret_file kafka-admin)")"
        echo "ssl.ca.location=$TLS_DIR/ca.crt"
      else
        echo "security.protocol=PLAINTEXT"
      fi
    } >"$conf.tmp"
    mv -f "$conf.tmp" "$conf"
  )
  mkdir -p "$STACK_DIR/bin"
  cat >"$STACK_DIR/bin/kcat" <<EOF
#!/bin/sh
# written by scripts/stack: Debian's kcat with the librdkafka that rdkafka-sys vendors (Debian's
# own 2.0 cannot log in with SCRAM to Kafka 4) and the operator's settings from kcat.conf.
LD_LIBRARY_PATH="$(librdkafka_dir)\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec kcat -F "$conf" "\$@"
EOF
  chmod 755 "$STACK_DIR/bin/kcat"
}

kafka_start() {
  kafka_check_security_setting
  resolve_kafka
  ensure_librdkafka
  kafka_write_config
  kafka_write_client_config
  kafka_format
  ensure_port_free "$STACK_KAFKA_PORT" "the kafka client listener" STACK_KAFKA_PORT
  ensure_port_free "$STACK_KAFKA_CONTROLLER_PORT" "the kafka controller listener" STACK_KAFKA_CONTROLLER_PORT
  spawn kafka "$KAFKA_LOG" "$(java_bin)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties" \
    -cp "$KAFKA_CACHE/lib/*" "$KAFKA_MAIN" "$KAFKA_HOME/server.properties"
}
