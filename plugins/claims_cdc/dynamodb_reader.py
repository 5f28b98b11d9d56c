"""Reading DynamoDB items directly (not through the stream): a point-in-time export, a parallel Scan
segment, or BatchGetItem, each item made into a change record of the stream's own format.

A snapshot, an audit's repair or a tombstone is then the same kind of input as a stream change: the same
transform, load and ordered merge handle it. Each such change is stamped with the time its item was read
(the export's time, or the moment before a Scan or BatchGetItem began), so a stream change made after it
wins and one made before it loses. Knows DynamoDB, S3 and the record format, nothing of Snowflake.
Never logs an item's content: table names, export ids, S3 keys, segments and counts only.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from claims_cdc.aws import TableNotFound, error_code
from claims_cdc.transform import SourceRecord

log = logging.getLogger(__name__)

#: The sequence number of every change made from a read item: below any Kinesis sequence number, so a
#: stream change of the very same microsecond wins over it.
READ_SEQUENCE = "0"
#: BatchGetItem takes at most 100 keys a call.
BATCH_GET_KEYS = 100
MAX_UNPROCESSED_RETRIES = 8


class ExportFailed(RuntimeError):
    """DynamoDB reports the export FAILED; the message carries its failure code only."""


def micros_of(moment: datetime) -> int:
    """An aware datetime in microseconds since the epoch (the stream's ApproximateCreationDateTime unit)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def item_record(item: dict[str, Any], key_attribute: str, micros: int, source: str, table_name: str,
                event: str = "INSERT") -> SourceRecord:
    """One item (DynamoDB JSON) as the change record Kinesis Data Streams for DynamoDB would carry for it,
    stamped ``micros``; ``event`` "REMOVE" makes the tombstone of a key absent from the table (``item`` then
    holds the key alone). ``source`` names where it comes from (cdc_shard_id), e.g. ``snapshot``."""
    keys = {key_attribute: item[key_attribute]}
    change: dict[str, Any] = {"ApproximateCreationDateTime": micros, "Keys": keys}
    change["OldImage" if event == "REMOVE" else "NewImage"] = item
    key = next(iter(item[key_attribute].values()))
    doc = {"eventID": f"{source}:{micros}:{key}", "eventName": event, "recordFormat": "application/json",
           "tableName": table_name, "dynamodb": change, "eventSource": "claims_cdc:" + source}
    return SourceRecord(source, READ_SEQUENCE, json.dumps(doc, separators=(",", ":")).encode(), micros)


# --- Export to S3 --------------------------------------------------------------------------------------

def table_arn(client: Any, table_name: str) -> str:
    try:
        return client.describe_table(TableName=table_name)["Table"]["TableArn"]
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            raise TableNotFound(table_name) from error
        raise


def start_export(client: Any, table_name: str, bucket: str, prefix: str, export_time: datetime,
                 client_token: str) -> dict[str, Any]:
    """ExportTableToPointInTime (DYNAMODB_JSON, full) as of ``export_time``; ``client_token`` makes a
    retried request return the same export instead of starting another (AWS keeps it 8 hours)."""
    return client.export_table_to_point_in_time(
        TableArn=table_arn(client, table_name), ExportTime=export_time, S3Bucket=bucket, S3Prefix=prefix,
        ExportFormat="DYNAMODB_JSON", ExportType="FULL_EXPORT", ClientToken=client_token,
    )["ExportDescription"]


def wait_for_export(client: Any, export_arn: str, timeout_seconds: float, poll_seconds: float = 5.0) -> dict[str, Any]:
    """DescribeExport until COMPLETED (returned) or FAILED (:class:`ExportFailed`); TimeoutError after
    ``timeout_seconds`` (a retry asks again with the same client token, so it waits for the same export)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        description = client.describe_export(ExportArn=export_arn)["ExportDescription"]
        status = description.get("ExportStatus")
        if status == "COMPLETED":
            return description
        if status == "FAILED":
            raise ExportFailed(f"export {export_arn} failed: {description.get('FailureCode')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"export {export_arn} still {status} after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def export_data_files(s3: Any, description: dict[str, Any], prefix: str) -> list[str]:
    """The S3 keys of an export's data files.

    AWS writes ``manifest-files.json`` beside the ``ExportManifest`` (manifest-summary.json), one JSON line per
    data file (``dataFileS3Key``). Platform quirk (moto 5.2.5, tests/platform): no manifest is written and
    ExportManifest is absent, only one ``AWSDynamoDB/<uuid>/data/<uuid>.gz``; the data files are then listed
    under the prefix, which the snapshot makes unique per run, so only this export's files are there.
    """
    bucket = description["S3Bucket"]
    summary = description.get("ExportManifest")
    if summary:
        manifest = summary.rsplit("/", 1)[0] + "/manifest-files.json"
        body = s3.get_object(Bucket=bucket, Key=manifest)["Body"].read().decode()
        return [json.loads(line)["dataFileS3Key"] for line in body.splitlines() if line.strip()]
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/AWSDynamoDB/"):
        keys += [o["Key"] for o in page.get("Contents", []) if "/data/" in o["Key"] and o["Key"].endswith(".gz")]
    return sorted(keys)


def export_time(description: dict[str, Any], requested: datetime) -> datetime:
    """The export's point in time: DescribeExport's ExportTime, or (moto does not echo it) the one asked for."""
    value = description.get("ExportTime")
    return value if isinstance(value, datetime) else requested


def export_items(s3: Any, bucket: str, key: str) -> Iterator[list[dict[str, Any]]]:
    """The items of one export data file (gzip, one ``{"Item": {...}}`` per line), a page of up to 1,000 at a time."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    page: list[dict[str, Any]] = []
    with gzip.GzipFile(fileobj=body) as lines:
        for line in lines:
            if line.strip():
                page.append(json.loads(line)["Item"])
                if len(page) == 1_000:
                    yield page
                    page = []
    if page:
        yield page


# --- Parallel Scan and BatchGetItem --------------------------------------------------------------------

def scan_segment(client: Any, table_name: str, segment: int, total_segments: int) -> Iterator[list[dict[str, Any]]]:
    """One segment of a parallel Scan (strongly consistent), page by page."""
    kwargs: dict[str, Any] = {"TableName": table_name, "Segment": segment, "TotalSegments": total_segments,
                              "ConsistentRead": True}
    while True:
        try:
            page = client.scan(**kwargs)
        except Exception as error:
            if error_code(error) == "ResourceNotFoundException":
                raise TableNotFound(table_name) from error
            raise
        yield page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def batch_get(client: Any, table_name: str, key_attribute: str, key_values: list[str]) -> dict[str, dict[str, Any]]:
    """The current items of these keys (strongly consistent BatchGetItem, 100 a call, unprocessed keys
    retried with back-off): key value -> item; a key absent from the table is absent from the result."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(key_values), BATCH_GET_KEYS):
        request = {table_name: {"Keys": [{key_attribute: {"S": k}} for k in key_values[start:start + BATCH_GET_KEYS]],
                                "ConsistentRead": True}}
        for attempt in range(MAX_UNPROCESSED_RETRIES + 1):
            answer = client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table_name, []):
                found[item[key_attribute]["S"]] = item
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            if attempt == MAX_UNPROCESSED_RETRIES:
                raise RuntimeError(f"BatchGetItem on {table_name}: keys still unprocessed after "
                                   f"{MAX_UNPROCESSED_RETRIES} retries")
            time.sleep(min(0.1 * 2 ** attempt, 5.0))
    return found
