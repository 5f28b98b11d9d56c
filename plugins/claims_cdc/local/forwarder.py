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
import signal
import time
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


class Forwarder:
    def __init__(self, aws_conn_id: str, table_name: str, stream_name: str, state_file: Path):
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
        sent = 0
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
                for record in records:
                    data, key = kinesis_record(record, self.table_name)
                    self.kinesis.put_record(StreamName=self.stream_name, Data=data, PartitionKey=key)
                    positions[shard_id] = record["dynamodb"]["SequenceNumber"]
                    sent += 1
                if records:
                    self._save()
                if not records:
                    break
                iterator = page.get("NextShardIterator")
        self.forwarded += sent
        return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward a DynamoDB Stream to Kinesis as AWS does.")
    parser.add_argument("--aws-conn-id", default="aws_default")
    parser.add_argument("--table", default="InsuranceClaims")
    parser.add_argument("--stream", default="InsuranceClaimsStream")
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between polls")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    running = True

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    forwarder = Forwarder(args.aws_conn_id, args.table, args.stream, args.state_file)
    log.info("forwarding %s -> %s", args.table, args.stream)
    while running:
        try:
            sent = forwarder.poll_once()
            if sent:
                log.info("forwarded %d record(s), %d in all", sent, forwarder.forwarded)
        except Exception as err:  # noqa: BLE001 - keep forwarding through transient errors (stream recreated...)
            log.warning("poll failed: %s", type(err).__name__)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
