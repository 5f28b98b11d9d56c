"""The local alert inbox: the SQS queue ``claims-cdc-alerts-inbox`` subscribed to the SNS topic
``claims-cdc-alerts`` (made by ``claims_cdc_dev.stack``).

    set -a; . .local/stack.env; set +a
    PYTHONPATH=plugins:dev python -m claims_cdc_dev.alerts_inbox           # print the alerts, oldest first
    PYTHONPATH=plugins:dev python -m claims_cdc_dev.alerts_inbox --drain   # ... and delete them
    PYTHONPATH=plugins:dev python -m claims_cdc_dev.alerts_inbox --json    # one JSON object per alert

Reading does not delete: each message received is made visible again at once (``ChangeMessageVisibility``
to 0). Only ``--drain`` deletes what it printed. (``make alerts`` / ``make alerts DRAIN=1``.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from claims_cdc_dev.stack import ALERT_INBOX


def inbox_client() -> tuple[Any, str]:
    """A plain boto3 SQS client (the environment's AWS_* variables: ``stack.env`` points them at moto) and the
    inbox's URL. Plain boto3, not the provider's hook: a dev tool reading a queue need not start Airflow."""
    import boto3

    sqs = boto3.client("sqs")
    return sqs, sqs.get_queue_url(QueueName=ALERT_INBOX)["QueueUrl"]


def read(sqs: Any, queue_url: str, drain: bool = False) -> list[dict[str, Any]]:
    """Every message in the inbox, oldest first: ``subject``, ``message``, ``timestamp``, ``id``.

    Messages are received ten at a time and kept invisible until all are read (so none is read twice),
    then made visible again, unless ``drain``, which deletes them.
    """
    seen: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    while True:
        page = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not page:
            break
        for message in page:
            handles.append(message["ReceiptHandle"])
            envelope = json.loads(message["Body"])
            seen[message["MessageId"]] = {"id": envelope.get("MessageId", message["MessageId"]),
                                          "timestamp": envelope.get("Timestamp", ""),
                                          "subject": envelope.get("Subject") or "",
                                          "message": envelope.get("Message", message["Body"])}
    for start in range(0, len(handles), 10):
        chunk = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[start:start + 10])]
        if drain:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=chunk)
        else:
            sqs.change_message_visibility_batch(QueueUrl=queue_url,
                                                Entries=[{**e, "VisibilityTimeout": 0} for e in chunk])
    return sorted(seen.values(), key=lambda m: m["timestamp"])


def wait_for(sqs: Any, queue_url: str, count: int, seconds: float, where: Any = None) -> list[dict[str, Any]]:
    """Read the inbox until it holds at least ``count`` messages (of those ``where`` accepts) or time is up."""
    deadline = time.monotonic() + seconds
    while True:
        messages = [m for m in read(sqs, queue_url) if where is None or where(m)]
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="print the local alert inbox (claims-cdc-alerts-inbox)")
    parser.add_argument("--drain", action="store_true", help="delete the messages printed")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    args = parser.parse_args(argv)
    sqs, url = inbox_client()
    messages = read(sqs, url, drain=args.drain)
    if args.json:
        for message in messages:
            print(json.dumps(message))
        return 0
    if not messages:
        print(f"{ALERT_INBOX}: empty")
        return 0
    print(f"{ALERT_INBOX}: {len(messages)} message(s), oldest first" + (" (deleted)" if args.drain else ""))
    for message in messages:
        print(f"\n== {message['timestamp']}  {message['subject']}")
        print(message["message"].rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
