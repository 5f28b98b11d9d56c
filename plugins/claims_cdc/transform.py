"""Kinesis records of "Kinesis Data Streams for DynamoDB" -> rows of the seed's tables.

This is the seed's FlattenJson + JoltTransformJSON step: decode the record, pick the item image, turn
DynamoDB JSON into plain values, flatten nested maps with ``.``, and rename by the mapping file. Values
are checked against the column types here, so that one bad record is rejected with its reason instead of
failing a whole batch in Snowflake.

Never log or raise with record content: messages name positions (shard, sequence number) and reasons only.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from claims_cdc.mapping import Column, Mapping

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
#: Below this, ApproximateCreationDateTime is in milliseconds (the table's default precision); at or above
#: it, in microseconds. 1e14 ms is the year 5138; 1e14 us is 1973.
_MICROS_THRESHOLD = 10**14
#: Fields of the ordering key, zero-padded so that text order is numeric order.
_TIME_DIGITS = 20
_SEQUENCE_DIGITS = 64

#: The pipeline's own columns, after the mapped ones, on the staging, history and destination tables.
CDC_COLUMNS = (
    "cdc_event_id",
    "cdc_shard_id",
    "cdc_sequence_number",
    "cdc_change_order",
    "cdc_content_hash",
)


class RejectedRecord(ValueError):
    """A record that cannot become a row. ``reason`` is safe to log: it never quotes content."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SourceRecord:
    """One Kinesis record as read: its position and its raw bytes."""

    shard_id: str
    sequence_number: str
    data: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "data": base64.b64encode(self.data).decode("ascii"),
        }

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> SourceRecord:
        return cls(doc["shard_id"], doc["sequence_number"], base64.b64decode(doc["data"]))


def change_order(micros: int, sequence_number: str) -> str:
    """A text key that sorts changes by their own time, ties broken by the Kinesis sequence number."""
    return f"{micros:0{_TIME_DIGITS}d}.{int(sequence_number):0{_SEQUENCE_DIGITS}d}"


def normalise_micros(value: Any) -> int:
    """ApproximateCreationDateTime in milliseconds or microseconds -> microseconds since the epoch."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise RejectedRecord("dynamodb.ApproximateCreationDateTime is not a number") from None
    if not number.is_finite() or number <= 0:
        raise RejectedRecord("dynamodb.ApproximateCreationDateTime is not a positive number")
    return int(number * 1000) if number < _MICROS_THRESHOLD else int(number)


def from_dynamodb_json(value: Any) -> Any:
    """One DynamoDB-JSON attribute value (``{"S": ...}``, ``{"M": ...}``, ...) -> a plain value."""
    if not isinstance(value, dict) or len(value) != 1:
        raise RejectedRecord("an attribute is not DynamoDB JSON")
    (tag, inner), = value.items()
    if tag == "S":
        return str(inner)
    if tag == "N":
        try:
            return Decimal(inner)
        except (InvalidOperation, TypeError):
            raise RejectedRecord("an N attribute is not a number") from None
    if tag == "BOOL":
        return bool(inner)
    if tag == "NULL":
        return None
    if tag == "M":
        return {k: from_dynamodb_json(v) for k, v in inner.items()}
    if tag == "L":
        return [from_dynamodb_json(v) for v in inner]
    if tag in ("SS", "NS", "BS"):
        return [from_dynamodb_json({tag[0]: v}) for v in inner]
    if tag == "B":
        return str(inner)
    raise RejectedRecord(f"unknown DynamoDB type tag {tag!r}")


def flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested maps -> one level with ``.``-joined keys; lists stay whole (they become JSON text)."""
    flat: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value).__name__)


def _typed(column: Column, value: Any) -> Any:
    """Check ``value`` against the column's type and return its JSON-ready form."""
    if value is None:
        return None
    kind = column.type
    if kind == "FLOAT":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RejectedRecord(f"column {column.column} is not a number") from None
    if kind == "INTEGER":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise RejectedRecord(f"column {column.column} is not a whole number") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise RejectedRecord(f"column {column.column} is not a whole number")
        return int(number)
    if kind.startswith("TIMESTAMP"):
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise RejectedRecord(f"column {column.column} is not an ISO-8601 timestamp") from None
        return parsed.replace(tzinfo=None).isoformat(timespec="microseconds")
    # STRING and VARCHAR(n): lists and maps become JSON text, numbers their decimal text.
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=_json_default, separators=(",", ":"))
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if column.max_length is not None and len(text) > column.max_length:
        raise RejectedRecord(f"column {column.column} is longer than {column.max_length}")
    return text


def to_row(record: SourceRecord, mapping: Mapping) -> dict[str, Any]:
    """One Kinesis record -> one row (column name -> JSON-ready value). Raises :class:`RejectedRecord`."""
    try:
        doc = json.loads(record.data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RejectedRecord("record data is not JSON") from None
    if not isinstance(doc, dict):
        raise RejectedRecord("record data is not a JSON object")
    event_name = doc.get("eventName")
    if event_name not in EVENT_NAMES:
        raise RejectedRecord("eventName is missing or not INSERT, MODIFY or REMOVE")
    change = doc.get("dynamodb")
    if not isinstance(change, dict):
        raise RejectedRecord("the dynamodb object is missing")
    micros = normalise_micros(change.get("ApproximateCreationDateTime"))
    keys = change.get("Keys")
    if not isinstance(keys, dict) or mapping.key_attribute not in keys:
        raise RejectedRecord(f"dynamodb.Keys lacks {mapping.key_attribute}")
    image_name = "OldImage" if event_name == "REMOVE" else "NewImage"
    image = change.get(image_name)
    if image is None:
        if event_name != "REMOVE":
            raise RejectedRecord(f"{event_name} without NewImage: the stream must carry new images")
        image = {}
    if not isinstance(image, dict):
        raise RejectedRecord(f"dynamodb.{image_name} is not an object")
    item = {name: from_dynamodb_json(value) for name, value in {**image, **keys}.items()}
    flat = flatten(item)
    envelope = {"@eventName": event_name, "@eventCreationUnixTime": str(micros)}
    row: dict[str, Any] = {}
    for column in mapping.columns:
        value = envelope[column.source] if column.source.startswith("@") else flat.get(column.source)
        row[column.column] = _typed(column, value)
    if not row[mapping.key_column]:
        raise RejectedRecord(f"{mapping.key_attribute} is empty")
    event_id = doc.get("eventID")
    row["cdc_event_id"] = str(event_id) if event_id else None
    row["cdc_shard_id"] = record.shard_id
    row["cdc_sequence_number"] = record.sequence_number
    row["cdc_change_order"] = change_order(micros, record.sequence_number)
    row["cdc_content_hash"] = content_hash(row, mapping)
    return row


def content_hash(row: dict[str, Any], mapping: Mapping) -> str:
    """Identity of a change by what it says: claim, time, event name and every mapped value.

    A copy of a change re-sent with a new eventID has the same hash, so the history keeps it once.
    """
    canonical = json.dumps([row[name] for name in mapping.names], separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class TransformResult:
    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]


def transform_records(records: list[SourceRecord], mapping: Mapping) -> TransformResult:
    """Transform a batch; bad records are kept, with their reason and raw payload, never dropped."""
    result = TransformResult(rows=[], rejected=[])
    for record in records:
        try:
            result.rows.append(to_row(record, mapping))
        except RejectedRecord as err:
            result.rejected.append(
                {
                    "shard_id": record.shard_id,
                    "sequence_number": record.sequence_number,
                    "reason": err.reason,
                    "payload": record.data.decode("utf-8", errors="replace"),
                }
            )
    return result
