"""Avro events through the real broker and registry with a client we did not write.

Confluent's Python client (confluent-kafka, its AvroSerializer and AvroDeserializer over fastavro)
writes and reads the shop's events in the Confluent wire format, so that the Rust integration
tests (crates/events/tests/it/interop.rs) can prove that what our codec writes, another
implementation reads, and the other way round.

    produce --topic T --event shop.order.OrderPlaced --count N
        Writes N deterministic events, keyed by order id, with values derived from the index
        (see the builders below; the Rust tests rebuild the same values). The producer registers
        its writer schema itself, under TopicRecordNameStrategy (`<topic>-<record full name>`),
        as every producer of ours does; the schema is read from schemas/ and registered in the
        same normalized form as choreo's codec (compact JSON, sorted keys), so both clients
        register identical text.

    consume --topic T --count N
        Reads N records from the beginning of T (a group of its own) with AvroDeserializer and
        prints one JSON object per line: {"key", "record", "schema_id", "value"}, where record is
        the writer schema's full name and timestamps (timestamp-millis, which fastavro turns into
        datetime) are epoch milliseconds again. Exits 1 when fewer than N arrive in --timeout s.

Run it with the venv `scripts/stack up` installs, which .stack/env names as INTEROP_PYTHON:

    set -a; . .stack/env; set +a
    "$INTEROP_PYTHON" scripts/interop/avro_interop.py consume --topic T --count 3

Addresses come from --brokers/--registry, else KAFKA_BROKERS/SCHEMA_REGISTRY_URL, else .stack/env;
so do the logins (KAFKA_SASL_*, SCHEMA_REGISTRY_USERNAME with SCHEMA_REGISTRY_PASSWORD(_FILE)).
Exit status: 0 done, 1 failed (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaException, SerializingProducer
from confluent_kafka.error import KafkaError
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import (
    MessageField,
    SerializationContext,
    SerializationError,
    StringSerializer,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# --- deterministic events (the Rust tests build the same values from the same index) -----------

# 2025-11-24T16:00:00.123Z: a time with milliseconds, so a conversion that drops them shows.
BASE_MILLIS = 1_764_000_000_123


def at(millis: int) -> dt.datetime:
    """A timestamp-millis value as fastavro takes it: an aware UTC datetime."""
    return EPOCH + dt.timedelta(milliseconds=millis)


def order_lines(i: int) -> list[dict[str, Any]]:
    return [
        {"sku": f"SKU-{i}-{j}", "quantity": j + 1, "unit_price_minor": 1_999 + 100 * i + j}
        for j in range(1 + i % 3)
    ]


def order_placed(i: int) -> dict[str, Any]:
    lines = order_lines(i)
    placed = BASE_MILLIS + 1_000 * i
    return {
        "order_id": f"py-order-{i}",
        "customer_id": f"kunde-{i}-Zoë",
        "lines": lines,
        "currency": "EUR",
        "total_minor": sum(line["quantity"] * line["unit_price_minor"] for line in lines),
        "placed_at": at(placed),
        "deadline_at": at(placed + 15 * 60 * 1_000),
    }


def payment_captured(i: int) -> dict[str, Any]:
    return {
        "order_id": f"py-order-{i}",
        "payment_id": f"py-payment-{i}",
        "currency": "EUR",
        "amount_minor": order_placed(i)["total_minor"],
        "provider_reference": f"psp-{i}-€",
        "captured_at": at(BASE_MILLIS + 1_000 * i + 2_500),
    }


EVENTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "shop.order.OrderPlaced": order_placed,
    "shop.payment.PaymentCaptured": payment_captured,
}

# --- schemas and addresses ------------------------------------------------------------------


def full_name(schema: dict[str, Any]) -> str:
    name = schema["name"]
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def schema_text(record: str) -> str:
    """The .avsc under schemas/ that defines `record`, normalized as choreo's codec does it
    (serde_json of the parsed file: compact, keys sorted, non-ASCII kept)."""
    for path in sorted(SCHEMAS.rglob("*.avsc")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        if full_name(schema) == record:
            return json.dumps(schema, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    raise SystemExit(f"error: no schemas/**/*.avsc defines {record}")


def stack_env() -> dict[str, str]:
    """KEY=value lines of .stack/env (values may be single-quoted, as scripts/stack writes them)."""
    path = Path(os.environ.get("CHOREO_ENV_FILE", ROOT / ".stack" / "env"))
    found: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                if len(value) >= 2 and value[0] == value[-1] == "'":
                    value = value[1:-1].replace("'\\''", "'")
                found[key.strip()] = value
    return found


def address(given: str | None, var: str) -> str:
    value = given or os.environ.get(var) or stack_env().get(var)
    if not value:
        raise SystemExit(f"error: {var} is not set (run scripts/stack up, or pass it as an option)")
    return value


def setting(var: str) -> str | None:
    """A variable from the environment, else from .stack/env; None when neither has it."""
    return os.environ.get(var) or stack_env().get(var) or None


def secret(var: str) -> str | None:
    """A secret from the file named by VAR_FILE, else from VAR (the services' convention)."""
    path = setting(f"{var}_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    return setting(var)


def kafka_security() -> dict[str, str]:
    """librdkafka's security settings from KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and
    KAFKA_SSL_CA_LOCATION, as choreo's clients read them (the stack's operator login by default)."""
    protocol = (setting("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    conf = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        user, password = setting("KAFKA_SASL_USERNAME"), secret("KAFKA_SASL_PASSWORD")
        if not user or not password:
            raise SystemExit(
                f"error: {protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)"
            )
        conf |= {
            "sasl.mechanisms": setting("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
        }
    ca = setting("KAFKA_SSL_CA_LOCATION")
    if ca and protocol in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = ca
    return conf


def registry_conf(given: str | None) -> dict[str, str]:
    """SchemaRegistryClient's settings: the URL and, from SCHEMA_REGISTRY_USERNAME and
    SCHEMA_REGISTRY_PASSWORD(_FILE), basic auth (the stack's operator by default; the registry
    refuses anonymous calls)."""
    conf = {"url": address(given, "SCHEMA_REGISTRY_URL")}
    user, password = setting("SCHEMA_REGISTRY_USERNAME"), secret("SCHEMA_REGISTRY_PASSWORD")
    if bool(user) != bool(password):
        raise SystemExit(
            "error: set both SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD(_FILE), or neither"
        )
    if user and password:
        conf["basic.auth.user.info"] = f"{user}:{password}"
    return conf


# --- JSON for the other side ---------------------------------------------------------------------


def plain(value: Any) -> Any:
    """fastavro's value as JSON: datetimes (timestamp-millis) back to epoch milliseconds."""
    if isinstance(value, dt.datetime):
        delta = value - EPOCH
        millis, rest = divmod(delta, dt.timedelta(milliseconds=1))
        if rest:
            raise ValueError(f"{value} has sub-millisecond precision; only timestamp-millis expected")
        return millis
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# --- commands ------------------------------------------------------------------------------------


def produce(args: argparse.Namespace) -> int:
    build = EVENTS[args.event]
    registry = SchemaRegistryClient(registry_conf(args.registry))
    serializer = AvroSerializer(
        registry,
        schema_text(args.event),
        conf={
            "auto.register.schemas": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
        },
    )
    producer = SerializingProducer(
        {
            "bootstrap.servers": address(args.brokers, "KAFKA_BROKERS"),
            **kafka_security(),
            "client.id": "avro-interop",
            "enable.idempotence": True,
            "acks": "all",
            # The Java client's partitioner, as choreo's producers use.
            "partitioner": "murmur2_random",
            # A record that cannot be delivered in time fails with its reason (an unknown topic,
            # say) instead of waiting out librdkafka's default of five minutes.
            "message.timeout.ms": int(args.timeout * 1_000),
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": serializer,
        }
    )
    failures: list[str] = []

    def delivered(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.key().decode('utf-8')}: {err.str()}")

    for i in range(args.count):
        event = build(i)
        producer.produce(args.topic, key=event["order_id"], value=event, on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(args.timeout + 5)
    for failure in failures:
        print(f"error: not delivered to {args.topic}: {failure}", file=sys.stderr)
    if left:
        print(f"error: {left} record(s) still queued after {args.timeout} s", file=sys.stderr)
    if failures or left:
        return 1
    print(f"produced {args.count} {args.event} to {args.topic}", file=sys.stderr)
    return 0


def consume(args: argparse.Namespace) -> int:
    registry = SchemaRegistryClient(registry_conf(args.registry))
    # The subject strategy only decides which subject the deserializer names when it fetches the
    # writer's schema by id; TopicRecordNameStrategy asks for the id alone (the default, ASSOCIATED,
    # first asks an associations endpoint Apicurio does not have, then falls back to <topic>-value).
    deserializer = AvroDeserializer(
        registry, conf={"subject.name.strategy": topic_record_subject_name_strategy}
    )
    consumer = Consumer(
        {
            "bootstrap.servers": address(args.brokers, "KAFKA_BROKERS"),
            **kafka_security(),
            "client.id": "avro-interop",
            "group.id": f"avro-interop-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + args.timeout
    seen = 0
    try:
        consumer.subscribe([args.topic])
        while seen < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                print(
                    f"error: {seen} of {args.count} record(s) from {args.topic} "
                    f"within {args.timeout} s",
                    file=sys.stderr,
                )
                return 1
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                print(f"warning: {msg.error()}", file=sys.stderr)
                continue
            raw, key = msg.value(), msg.key()
            line: dict[str, Any] = {"key": None if key is None else key.decode("utf-8")}
            if raw is None:  # a tombstone: no value, no schema
                line.update(record=None, schema_id=None, value=None)
            else:
                ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
                value = deserializer(raw, ctx)
                schema_id = int.from_bytes(raw[1:5], "big")
                writer = json.loads(registry.get_schema(schema_id).schema_str)
                line.update(record=full_name(writer), schema_id=schema_id, value=plain(value))
            print(json.dumps(line, ensure_ascii=False), flush=True)
            seen += 1
    finally:
        consumer.close()
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--topic", required=True)
    common.add_argument("--count", type=int, required=True, help="how many records")
    common.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to deliver or receive them all [30]"
    )
    common.add_argument("--brokers", help="bootstrap servers [KAFKA_BROKERS, else .stack/env]")
    common.add_argument(
        "--registry", help="Confluent API base URL [SCHEMA_REGISTRY_URL, else .stack/env]"
    )
    top = argparse.ArgumentParser(
        prog="avro_interop.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "produce", parents=[common], help="write N deterministic events to a topic"
    )
    p.add_argument("--event", required=True, choices=sorted(EVENTS), help="record full name")
    p.set_defaults(run=produce)
    c = commands.add_parser(
        "consume", parents=[common], help="read N records from the beginning, print JSON lines"
    )
    c.set_defaults(run=consume)
    return top


def main() -> int:
    cli = parser()
    args = cli.parse_args()
    if args.count < 0:
        cli.error("--count must be 0 or more")
    try:
        return args.run(args)
    except (KafkaException, SchemaRegistryError, SerializationError, ValueError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
