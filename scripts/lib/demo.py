"""JSON helpers for scripts/demo: read a service's JSON answer on stdin and print what the demo
shows. Usage: demo.py available | stock | field NAME | timeline TITLE"""

import json
import sys
from datetime import datetime


def read():
    text = sys.stdin.read().strip()
    return json.loads(text) if text else None


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def timeline(title, view):
    order = view["order"]
    ending = order["status"]
    if order["cancel_reason"]:
        ending += f" ({order['cancel_reason']})"
    amount = order["total_minor"] / 100
    print(f"\n{title}\n  order {order['order_id']}  {amount:.2f} {order['currency']}  -> {ending}")
    start = None
    for step in order["timeline"]:
        at = when(step["at"])
        start = start or at
        offset = (at - start).total_seconds()
        print(f"  +{offset:7.3f}s  {step['event_type']:<18} {step['producer']:<10} {step['detail']}")
    for p in view.get("payments") or []:
        print(
            f"  payment {p['status']}: {p['amount_minor'] / 100:.2f} {p['currency']}, "
            f"refunded {p['refunded_minor'] / 100:.2f}, {p['attempts']} provider call(s)"
        )
    for s in view.get("shipments") or []:
        print(f"  shipment {s['status']} with {s['carrier']}")


def main():
    command = sys.argv[1]
    value = read()
    if command == "available":
        print(value.get("available", 0) if isinstance(value, dict) else 0)
    elif command == "stock":
        for s in value or []:
            if s["sku"].startswith(("E2E-", "LOAD-")):
                continue
            print(
                f"  {s['sku']:<8} available {s['available']:>4}  reserved {s['reserved']:>3}"
                f"  sold {s['sold']:>4}"
            )
    elif command == "field":
        if not isinstance(value, dict) or sys.argv[2] not in value:
            sys.exit(f"demo: unexpected answer: {value}")
        print(value[sys.argv[2]])
    elif command == "timeline":
        timeline(sys.argv[2], value)
    else:
        sys.exit(f"demo.py: unknown command {command}")


if __name__ == "__main__":
    main()
