"""Kinesis records of "Kinesis Data Streams for DynamoDB" -> rows of the seed's tables.

This is the seed's FlattenJson + JoltTransformJSON step: decode the record, pick the item image, turn
DynamoDB JSON into plain values, flatten nested maps with ``.``, and rename by the mapping file.

Every value is checked here against its column's Snowflake type (NUMBER range, finite FLOAT, parseable
TIMESTAMP_NTZ, VARCHAR length), so the warehouse never receives a value its cast would reject. A record
that cannot become an exact row, for any reason, including errors nobody foresaw, is rejected with a
reason and kept whole (dead-lettered); it never stops the batch, and nothing is coerced: a BOOL or a
non-finite number for a numeric column, or a key that is not of the table's key type, is rejected.
Attributes the mapping does not know are kept too: each row carries the change's complete new and old
images for the history table, and the names (never the values) of the unmapped attributes.

Never log or raise with record content: reasons name attributes, columns and rules, never a value, a
type tag or a database message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from claims_cdc.mapping import Column, Mapping

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
#: Without an arrival time to compare with: below this, ApproximateCreationDateTime is in milliseconds
#: (the table's default precision); at or above it, in microseconds. 1e14 ms is the year 5138; 1e14 us 1973.
_MICROS_THRESHOLD = 10**14
#: Fields of the ordering key, zero-padded so that text order is numeric order.
_TIME_DIGITS = 20
_SEQUENCE_DIGITS = 64
#: DynamoDB nests documents at most 32 levels deep.
MAX_DEPTH = 32
#: NUMBER(38,0), Snowflake's INTEGER: at most 38 digits.
_INTEGER_LIMIT = 10**38
#: Snowflake's largest VARCHAR (STRING), in bytes.
_VARCHAR_MAX_BYTES = 16 * 1024 * 1024
#: DynamoDB's number type: at most 38 significant digits, finite (no NaN, no Infinity).
_DYNAMODB_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
#: Attribute names that reasons and reports may show; any other name is shown by its position only.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

#: The pipeline's own columns, after the mapped ones, on the staging, history and destination tables.
CDC_COLUMNS = (
    "cdc_event_id",
    "cdc_shard_id",
    "cdc_sequence_number",
    "cdc_change_order",
    "cdc_content_hash",
)
#: Columns of the history table alone: the change's complete images and the attributes the mapping misses.
HISTORY_COLUMNS = ("cdc_new_image", "cdc_old_image", "cdc_unmapped_attributes")


class RejectedRecord(ValueError):
    """A record that cannot become a row. ``reason`` is safe to log: it never quotes content."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SourceRecord:
    """One Kinesis record as read: its position, its raw bytes and when Kinesis received it."""

    shard_id: str
    sequence_number: str
    data: bytes
    #: ApproximateArrivalTimestamp in microseconds since the epoch (None: unknown, e.g. an old batch file).
    arrival_micros: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "data": base64.b64encode(self.data).decode("ascii"),
            "arrival_micros": self.arrival_micros,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SourceRecord:
        return cls(doc["shard_id"], doc["sequence_number"], base64.b64decode(doc["data"]),
                   doc.get("arrival_micros"))


@dataclass(frozen=True)
class TimeRules:
    """What makes a change's own time plausible next to the record's Kinesis arrival time.

    A change cannot be created after Kinesis received it (beyond ``max_skew_seconds`` of clock skew), nor
    before the oldest record the stream can hold (arrival minus ``retention_hours``).
    """

    retention_hours: int = 24
    max_skew_seconds: int = 60


def change_order(micros: int, sequence_number: str) -> str:
    """A text key that sorts changes by their own time, ties broken by the Kinesis sequence number."""
    return f"{micros:0{_TIME_DIGITS}d}.{int(sequence_number):0{_SEQUENCE_DIGITS}d}"


def normalise_micros(value: Any, arrival_micros: int | None = None, rules: TimeRules = TimeRules()) -> int:
    """ApproximateCreationDateTime (milliseconds or microseconds, by the table's
    ``ApproximateCreationDateTimePrecision``) -> microseconds since the epoch.

    With the record's arrival time, the unit is the one that puts the change within the plausible window
    (see :class:`TimeRules`); a value plausible in neither is rejected, never used for ordering.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise RejectedRecord("dynamodb.ApproximateCreationDateTime is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise RejectedRecord("dynamodb.ApproximateCreationDateTime is not a number") from None
    if not number.is_finite() or number <= 0:
        raise RejectedRecord("dynamodb.ApproximateCreationDateTime is not a positive number")
    if arrival_micros is None:
        return int(number * 1000) if number < _MICROS_THRESHOLD else int(number)
    earliest = arrival_micros - rules.retention_hours * 3_600_000_000
    latest = arrival_micros + rules.max_skew_seconds * 1_000_000
    for micros in (int(number * 1000), int(number)):  # milliseconds, then microseconds
        if earliest <= micros <= latest:
            return micros
    raise RejectedRecord(
        "dynamodb.ApproximateCreationDateTime is not plausible next to the record's "
        f"ApproximateArrivalTimestamp (in milliseconds or microseconds, it must lie between arrival minus the "
        f"stream's retention of {rules.retention_hours} h and arrival plus {rules.max_skew_seconds} s)"
    )


def safe_name(name: str) -> str:
    """An attribute name as reasons and reports may show it: names only, and only plain ones."""
    return name if _PLAIN_NAME.match(name) else "(a name that is not plain text)"


def _number(text: Any, where: str) -> Decimal:
    if not isinstance(text, str) or not _DYNAMODB_NUMBER.match(text):
        raise RejectedRecord(f"attribute {where}: N value is not a finite decimal number")
    number = Decimal(text)
    significant = "".join(map(str, number.as_tuple().digits)).lstrip("0").rstrip("0")
    if len(significant) > 38:
        raise RejectedRecord(f"attribute {where}: N value has more than DynamoDB's 38 significant digits")
    if number and not -130 <= number.adjusted() <= 125:
        raise RejectedRecord(f"attribute {where}: N value is outside DynamoDB's range (1E-130 to 1E+126)")
    return number


def from_dynamodb_json(value: Any, where: str = "(value)", depth: int = 0) -> Any:
    """One DynamoDB-JSON attribute value (``{"S": ...}``, ``{"M": ...}``, ...) -> a plain value.

    Strict: a descriptor whose content does not match its type tag is rejected, naming the attribute.
    """
    if depth > MAX_DEPTH:
        raise RejectedRecord(f"attribute {where}: nests deeper than DynamoDB's {MAX_DEPTH} levels")
    if not isinstance(value, dict) or len(value) != 1:
        raise RejectedRecord(f"attribute {where}: not a DynamoDB JSON value (one type tag and its content)")
    (tag, inner), = value.items()
    if tag == "S" and isinstance(inner, str):
        return inner
    if tag == "N":
        return _number(inner, where)
    if tag == "BOOL" and isinstance(inner, bool):
        return inner
    if tag == "NULL" and inner is True:
        return None
    if tag == "M" and isinstance(inner, dict):
        return {k: from_dynamodb_json(v, f"{where}.{safe_name(k)}", depth + 1) for k, v in inner.items()}
    if tag == "L" and isinstance(inner, list):
        return [from_dynamodb_json(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(inner)]
    if tag in ("SS", "BS") and isinstance(inner, list) and all(isinstance(v, str) for v in inner):
        return list(inner)
    if tag == "NS" and isinstance(inner, list):
        return [_number(v, f"{where}[{i}]") for i, v in enumerate(inner)]
    if tag == "B" and isinstance(inner, str):
        return inner
    if tag in ("S", "N", "BOOL", "NULL", "M", "L", "SS", "NS", "BS", "B"):
        raise RejectedRecord(f"attribute {where}: content does not match its DynamoDB type tag")
    raise RejectedRecord(f"attribute {where}: unknown DynamoDB type tag")


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


def json_text(value: Any) -> str:
    """A list or map as JSON text, numbers written exactly as DynamoDB holds them (never through float)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def _typed(column: Column, value: Any) -> Any:
    """Check ``value`` against the column's Snowflake type and return its JSON-ready form (or reject)."""
    if value is None:
        return None
    kind = column.type
    if kind in ("FLOAT", "INTEGER"):
        if isinstance(value, (bool, list, dict)):
            raise RejectedRecord(f"column {column.column}: a {_kind(value)} is not a number")
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except (InvalidOperation, TypeError, ValueError):
            raise RejectedRecord(f"column {column.column}: not a number") from None
        if not number.is_finite():
            raise RejectedRecord(f"column {column.column}: not a finite number")
        if kind == "FLOAT":
            as_float = float(number)
            if not math.isfinite(as_float):
                raise RejectedRecord(f"column {column.column}: outside FLOAT's range")
            return as_float
        if number != number.to_integral_value():
            raise RejectedRecord(f"column {column.column}: not a whole number")
        if abs(number) >= _INTEGER_LIMIT:
            raise RejectedRecord(f"column {column.column}: outside INTEGER's range (38 digits)")
        return int(number)
    if kind.startswith("TIMESTAMP"):
        if not isinstance(value, str):
            raise RejectedRecord(f"column {column.column}: a {_kind(value)} is not an ISO-8601 timestamp")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RejectedRecord(f"column {column.column}: not an ISO-8601 timestamp") from None
        if parsed.tzinfo is not None:  # TIMESTAMP_NTZ holds UTC: an offset is applied, never cut off
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:
                raise RejectedRecord(f"column {column.column}: outside the timestamp range in UTC") from None
        return parsed.replace(tzinfo=None).isoformat(timespec="microseconds")
    # STRING and VARCHAR(n): lists and maps become JSON text, numbers their exact decimal text.
    if isinstance(value, (list, dict)):
        text = json_text(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if column.max_length is not None and len(text) > column.max_length:
        raise RejectedRecord(f"column {column.column}: longer than {column.max_length} characters")
    if len(text) * 4 > _VARCHAR_MAX_BYTES and len(text.encode("utf-8")) > _VARCHAR_MAX_BYTES:
        raise RejectedRecord(f"column {column.column}: longer than Snowflake's 16 MB VARCHAR limit")
    return text


def _kind(value: Any) -> str:
    return {bool: "BOOL", list: "list", dict: "map"}.get(type(value), type(value).__name__)


def _key(keys: Any, mapping: Mapping) -> dict[str, Any]:
    """The change's key: ``dynamodb.Keys`` with the key attribute of the table's key type (S)."""
    if not isinstance(keys, dict) or mapping.key_attribute not in keys:
        raise RejectedRecord(f"dynamodb.Keys lacks {mapping.key_attribute}")
    key = keys[mapping.key_attribute]
    if not isinstance(key, dict) or list(key) != ["S"] or not isinstance(key["S"], str):
        raise RejectedRecord(f"dynamodb.Keys.{mapping.key_attribute} is not of type S, the table's key type")
    if not key["S"].strip():
        raise RejectedRecord(f"{mapping.key_attribute} is empty")
    return keys


def to_row(record: SourceRecord, mapping: Mapping, rules: TimeRules = TimeRules()) -> dict[str, Any]:
    """One Kinesis record -> one row (column name -> JSON-ready value). Raises :class:`RejectedRecord`."""
    try:
        doc = json.loads(record.data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RejectedRecord("record data is not JSON") from None
    except RecursionError:
        raise RejectedRecord("record data nests too deeply to decode") from None
    if not isinstance(doc, dict):
        raise RejectedRecord("record data is not a JSON object")
    event_name = doc.get("eventName")
    if event_name not in EVENT_NAMES:
        raise RejectedRecord("eventName is missing or not INSERT, MODIFY or REMOVE")
    change = doc.get("dynamodb")
    if not isinstance(change, dict):
        raise RejectedRecord("the dynamodb object is missing")
    micros = normalise_micros(change.get("ApproximateCreationDateTime"), record.arrival_micros, rules)
    keys = _key(change.get("Keys"), mapping)
    images = {}
    for name in ("NewImage", "OldImage"):
        image = change.get(name)
        if image is not None and not isinstance(image, dict):
            raise RejectedRecord(f"dynamodb.{name} is not an object")
        images[name] = image
    image_name = "OldImage" if event_name == "REMOVE" else "NewImage"
    image = images[image_name]
    if image is None:
        if event_name != "REMOVE":
            raise RejectedRecord(f"{event_name} without NewImage: the stream must carry new images")
        image = {}
    if mapping.key_attribute in image and image[mapping.key_attribute] != keys[mapping.key_attribute]:
        raise RejectedRecord(f"dynamodb.{image_name}.{mapping.key_attribute} differs from dynamodb.Keys")
    item = {name: from_dynamodb_json(value, safe_name(name)) for name, value in {**image, **keys}.items()}
    flat = flatten(item)
    sources = mapping.sources
    for name in flat:
        head = name
        while "." in head:
            head = head.rsplit(".", 1)[0]
            if head in sources:
                raise RejectedRecord(f"attribute {head}: a map where its column expects a value")
    envelope = {"@eventName": event_name, "@eventCreationUnixTime": str(micros)}
    row: dict[str, Any] = {}
    for column in mapping.columns:
        value = envelope[column.source] if column.source.startswith("@") else flat.get(column.source)
        row[column.column] = _typed(column, value)
    event_id = doc.get("eventID")
    row["cdc_event_id"] = str(event_id) if isinstance(event_id, (str, int)) and event_id != "" else None
    row["cdc_shard_id"] = record.shard_id
    row["cdc_sequence_number"] = record.sequence_number
    row["cdc_change_order"] = change_order(micros, record.sequence_number)
    for name, column in (("NewImage", "cdc_new_image"), ("OldImage", "cdc_old_image")):
        if images[name] is not None:  # absent, not JSON null: the history column is then SQL NULL
            row[column] = images[name]
    unmapped = sorted({safe_name(name) for name in flat if name not in sources})
    row["cdc_unmapped_attributes"] = json.dumps(unmapped) if unmapped else None
    row["cdc_content_hash"] = content_hash(row, mapping)
    return row


def content_hash(row: dict[str, Any], mapping: Mapping) -> str:
    """Identity of a change by what it says: claim, time, event name, every mapped value and its images.

    A copy of a change re-sent (the same eventID re-delivered, or a new eventID) has the same hash, so the
    history keeps it once; two different changes never share one, whatever their eventIDs.
    """
    canonical = json.dumps(
        [[row[name] for name in mapping.names], row.get("cdc_new_image"), row.get("cdc_old_image")],
        separators=(",", ":"), sort_keys=True, default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class TransformResult:
    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]


def dead_letter(record: SourceRecord, reason: str) -> dict[str, Any]:
    """A rejected record as the dead-letter table keeps it: position, reason, and the payload whole."""
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "reason": reason,
        "payload": record.data.decode("utf-8", errors="replace"),
        "payload_base64": base64.b64encode(record.data).decode("ascii"),
        "arrival_micros": record.arrival_micros,
    }


def transform_records(records: list[SourceRecord], mapping: Mapping,
                      rules: TimeRules = TimeRules()) -> TransformResult:
    """Transform a batch; every record becomes a row or a dead letter with its reason, none is dropped."""
    result = TransformResult(rows=[], rejected=[])
    for record in records:
        try:
            result.rows.append(to_row(record, mapping, rules))
        except RejectedRecord as err:
            result.rejected.append(dead_letter(record, err.reason))
        except Exception as err:  # noqa: BLE001 - no record may stop a shard, whatever goes wrong with it
            # The class only: an exception's message may quote the record.
            result.rejected.append(dead_letter(
                record, f"unexpected {type(err).__name__} while transforming; the record is kept whole"))
    if len(result.rows) + len(result.rejected) != len(records):
        raise AssertionError(f"transform lost records: {len(records)} in, {len(result.rows)} rows, "
                             f"{len(result.rejected)} rejected")
    return result
