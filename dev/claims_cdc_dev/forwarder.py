"""Local stand-in for DynamoDB's Kinesis streaming destination, which moto does not have.

Reads the table's DynamoDB Stream and writes to Kinesis what AWS writes for "Kinesis Data Streams for
DynamoDB": a JSON object with awsRegion, eventID, eventName, userIdentity, recordFormat, tableName,
dynamodb {ApproximateCreationDateTime (microseconds), Keys, NewImage, OldImage, SizeBytes} and
eventSource, with the item's key as the partition key. Runs only on the local stack.
Never logs record content: counts and positions only.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("claims_cdc.forwarder")


def kinesis_record(stream_record: dict[str, Any], table_name: str) -> tuple[bytes, str]:
    """One DynamoDB Streams record -> (Kinesis data, partition key), in the AWS KDS-for-DynamoDB format."""
    change = stream_record["dynamodb"]
    created = change["ApproximateCreationDateTime"]
    micros = int(created.timestamp() * 1_000_000) if isinstance(created, datetime) else int(float(created) * 1e6)
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": micros, "Keys": change["Keys"]}
    for image in ("NewImage", "OldImage"):
        if image in change:
            dynamodb[image] = change[image]
    dynamodb["SizeBytes"] = change.get("SizeBytes", 0)
    doc = {
        "awsRegion": stream_record.get("awsRegion"),
        "eventID": stream_record["eventID"],
        "eventName": stream_record["eventName"],
        "userIdentity": stream_record.get("userIdentity"),
        "recordFormat": "application/json",
        "tableName": table_name,
        "dynamodb": dynamodb,
        "eventSource": "aws:dynamodb",
    }
    key = "|".join(str(next(iter(v.values()))) for _, v in sorted(change["Keys"].items()))
    return json.dumps(doc, separators=(",", ":")).encode(), key


class Chaos:
    """What Kinesis Data Streams for DynamoDB may do, on purpose: deliver a change twice, or out of order.

    Duplicates are re-deliveries with the same eventID or, half of the time, copies re-sent with a new
    eventID. A reordered record is held back and written after the next one (or on the next idle poll).
    """

    def __init__(self, duplicate_rate: float = 0.0, reorder_rate: float = 0.0, seed: int | None = None):
        for name, rate in (("duplicate rate", duplicate_rate), ("reorder rate", reorder_rate)):
            if not 0.0 <= rate <= 1.0:
                raise SystemExit(f"chaos {name} {rate} must be between 0 and 1")
        self.duplicate_rate = duplicate_rate
        self.reorder_rate = reorder_rate
        self.rng = random.Random(seed)
        self.held: list[tuple[bytes, str]] = []
        self.duplicated = 0
        self.reordered = 0

    def arrange(self, outgoing: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
        """The order to write ``outgoing`` in, with chaos applied; held records may come out later."""
        ordered: list[tuple[bytes, str]] = []
        for data, key in outgoing:
            if self.rng.random() < self.reorder_rate:
                self.held.append((data, key))
                self.reordered += 1
                continue
            ordered.append((data, key))
            if self.rng.random() < self.duplicate_rate:
                ordered.append((self._copy(data), key))
                self.duplicated += 1
            ordered.extend(self.held)
            self.held = []
        if not outgoing and self.held:  # an idle poll releases what was held back
            ordered.extend(self.held)
            self.held = []
        return ordered

    def _copy(self, data: bytes) -> bytes:
        if self.rng.random() < 0.5:
            return data  # a plain re-delivery
        doc = json.loads(data)
        doc["eventID"] = uuid.UUID(int=self.rng.getrandbits(128)).hex  # re-sent under a new id
        return json.dumps(doc, separators=(",", ":")).encode()


class Forwarder:
    def __init__(self, aws_conn_id: str, table_name: str, stream_name: str, state_file: Path,
                 chaos: Chaos | None = None):
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        self.table_name = table_name
        self.stream_name = stream_name
        self.state_file = state_file
        self.ddb = DynamoDBHook(aws_conn_id=aws_conn_id).conn.meta.client
        self.streams = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="dynamodbstreams").get_conn()
        self.kinesis = KinesisHook(aws_conn_id=aws_conn_id).get_conn()
        self.state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
        self.forwarded = 0
        self.chaos = chaos or Chaos()

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.state_file)

    def _stream_arn(self) -> str | None:
        try:
            return self.ddb.describe_table(TableName=self.table_name)["Table"].get("LatestStreamArn")
        except self.ddb.exceptions.ResourceNotFoundException:
            return None

    def poll_once(self) -> int:
        """Forward whatever is new on every shard of the table's stream; return how many records."""
        arn = self._stream_arn()
        if arn is None:
            return 0
        if self.state.get("stream_arn") != arn:  # table (re)created: start from its stream's beginning
            self.state = {"stream_arn": arn, "positions": {}}
        positions: dict[str, str] = self.state["positions"]
        outgoing: list[tuple[bytes, str]] = []
        shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard_id}
            if shard_id in positions:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=positions[shard_id])
            else:
                kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            iterator = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
            while iterator:
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records", [])
                if not records:
                    break
                outgoing.extend(kinesis_record(record, self.table_name) for record in records)
                positions[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                iterator = page.get("NextShardIterator")
        sent = 0
        for data, key in self.chaos.arrange(outgoing):
            self.kinesis.put_record(StreamName=self.stream_name, Data=data, PartitionKey=key)
            sent += 1
        if outgoing:
            self._save()
        self.forwarded += sent
        return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward a DynamoDB Stream to Kinesis as AWS does.")
    parser.add_argument("--aws-conn-id", default="aws_default")
    parser.add_argument("--table", default="InsuranceClaims")
    parser.add_argument("--stream", default="InsuranceClaimsStream")
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between polls")
    parser.add_argument("--duplicate-rate", type=float, default=0.0, help="chaos: share of records sent twice")
    parser.add_argument("--reorder-rate", type=float, default=0.0, help="chaos: share of records held back")
    parser.add_argument("--chaos-seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    running = True

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    chaos = Chaos(args.duplicate_rate, args.reorder_rate, args.chaos_seed)
    forwarder = Forwarder(args.aws_conn_id, args.table, args.stream, args.state_file, chaos)
    log.info("forwarding %s -> %s (chaos: duplicate rate %s, reorder rate %s)", args.table, args.stream,
             args.duplicate_rate, args.reorder_rate)
    while running:
        try:
            sent = forwarder.poll_once()
            if sent:
                log.info("forwarded %d record(s), %d in all (%d duplicated, %d reordered)", sent,
                         forwarder.forwarded, chaos.duplicated, chaos.reordered)
        except Exception as err:  # noqa: BLE001 - keep forwarding through transient errors (stream recreated...)
            log.warning("poll failed: %s", type(err).__name__)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
