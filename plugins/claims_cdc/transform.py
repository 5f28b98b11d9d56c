"""Kinesis records of "Kinesis Data Streams for DynamoDB" -> rows of the seed's tables.

This is the seed's FlattenJson + JoltTransformJSON step: decode the record, pick the item image, turn
DynamoDB JSON into plain values, flatten nested maps with ``.``, and rename by the mapping file.

Every value is checked here against its column's Snowflake type (NUMBER range, finite FLOAT, parseable
TIMESTAMP_NTZ, VARCHAR length), so the warehouse never receives a value its cast would reject. A record
that cannot become an exact row, for any reason, including errors nobody foresaw, is rejected with a
reason and kept whole (dead-lettered); it never stops the batch, and nothing is coerced: a BOOL or a
non-finite number for a numeric column, or a key that is not of the table's key type, is rejected.
Attributes the mapping does not know are kept too: each row carries the change's complete new and old
images for the history table (canonical JSON text), and the names (never the values) of the unmapped
attributes.

Speed (issue 10): a record is decoded once (msgspec; the standard library's ``json`` decides only what
msgspec refuses, such as ``NaN``). A fast path, compiled once per mapping, then walks the item along the
mapping and accepts only what it can show the checked path accepts, with the same row. Anything else
(every rejection, every unusual value) it leaves to the checked path: the rules applied plainly, one after
the other, which decides and names the reason. The decisions and the rows are therefore the checked
path's, whichever path made them (tests/unit/test_transform_paths.py compares the two).

Never log or raise with record content: reasons name attributes, columns and rules, never a value, a
type tag or a database message.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps does with a str
from typing import Annotated, Any

import msgspec

from claims_cdc.mapping import Column, Mapping

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
#: Without an arrival time to compare with: below this, ApproximateCreationDateTime is in milliseconds
#: (the table's default precision); at or above it, in microseconds. 1e14 ms is the year 5138; 1e14 us 1973.
_MICROS_THRESHOLD = 10**14
#: Fields of the ordering key, zero-padded so that text order is numeric order (20 and 64 digits).
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
    if len(sequence_number) <= _SEQUENCE_DIGITS and sequence_number.isdigit() and sequence_number.isascii():
        return f"{micros:020d}." + sequence_number.rjust(64, "0")  # as below, without the trip through int
    return f"{micros:020d}.{int(sequence_number):064d}"


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


# --- Decoding, canonical JSON, the content hash ------------------------------------------------------

#: Decodes a record of any shape; encodes images and keys as canonical JSON (keys sorted at every level).
_DECODER = msgspec.json.Decoder()
_CANONICAL = msgspec.json.Encoder(order="sorted")
#: Writes structs' fields in their (sorted) order and dicts' keys as they are: canonical when they are.
_IN_ORDER = msgspec.json.Encoder()


def _decode(data: bytes) -> tuple[Any, bool]:
    """The record's JSON document, and whether msgspec decoded it (then it holds no NaN and no lone
    surrogate). What msgspec refuses, the standard library decides, exactly as before msgspec was used."""
    try:
        return _DECODER.decode(data), True
    except Exception:  # noqa: BLE001 - msgspec refuses more than json.loads (NaN, 1e400, a BOM): json decides
        return _decode_plainly(data), False


def _decode_plainly(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RejectedRecord("record data is not JSON") from None
    except RecursionError:
        raise RejectedRecord("record data nests too deeply to decode") from None


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: compact, keys sorted at every level, strings in UTF-8, the numbers of
    DynamoDB JSON (strings) exactly as sent. What plain JSON cannot hold (NaN, a lone surrogate: the
    standard library's decoder lets them through) is written as the standard library writes it, escaped."""
    if _has_non_finite(value):
        return _escaped_json(value)
    try:
        return _CANONICAL.encode(value)
    except Exception:  # noqa: BLE001 - a lone surrogate cannot be UTF-8: json escapes it
        return _escaped_json(value)


def _escaped_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _has_non_finite(value: Any) -> bool:
    stack = [value]  # no recursion: the standard library decodes documents nested deeper than Python recurses
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return True
    return False


def content_hash(row: dict[str, Any], mapping: Mapping, keys: dict[str, Any] | None = None) -> str:
    """Identity of a change by what it says: event name, time, the change's ``Keys`` and its images.

    Every mapped value derives from these (the envelope's event and time; the item, which is the image
    the event keeps with ``Keys`` over it), so a copy of a change re-sent (the same eventID re-delivered,
    or a new eventID) has the same hash and the history keeps it once; two different changes never share
    one, whatever their eventIDs. The images are hashed as the row holds them, canonical JSON text with
    sorted keys, so attribute order does not matter; nothing is serialised again for the hash. ``keys``
    defaults to the table's key alone, as the stream sends it (``{"claim_id": {"S": <the key column>}}``).
    """
    if keys is None:
        keys = {mapping.key_attribute: {"S": row[mapping.key_column]}}
    micros = int(str(row["cdc_change_order"]).split(".", 1)[0])
    images = [row.get(name) for name in ("cdc_new_image", "cdc_old_image")]
    new_image, old_image = (None if image is None else image.encode() if isinstance(image, str)
                            else canonical_json(image) for image in images)
    return _hash(row[_plan(mapping).event_column], micros, canonical_json(keys), new_image, old_image)


def _hash(event_name: Any, micros: int, keys: bytes, new_image: bytes | None, old_image: bytes | None) -> str:
    event = str(event_name).encode()
    # A header with every part's length (-1: no such image) frames the parts: no two changes give one text.
    header = b"%d:%s %d %d %d %d\n" % (len(event), event, micros, len(keys),
                                        -1 if new_image is None else len(new_image),
                                        -1 if old_image is None else len(old_image))
    return hashlib.sha256(b"".join((header, keys, new_image or b"", old_image or b""))).hexdigest()


# --- The mapping, compiled once ----------------------------------------------------------------------

#: What the fast paths do with a column's value: take a text, convert a number, parse a timestamp.
_TEXT, _FLOAT, _INTEGER, _TIMESTAMP = range(4)
#: Numbers taken as they are written: no exponent, no leading zero, at most 38 characters (so at most 38
#: significant digits, well inside DynamoDB's range). Any other number goes through Decimal, as always.
_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_PLAIN_WHOLE = re.compile(r"-?(?:0|[1-9][0-9]{0,37})")
#: Decimal writes 0.0000001 as 1E-7: such a number's text is left to Decimal too.
_SMALL_FRACTION = "0.000000"
#: Up to this many characters, a text is within Snowflake's 16 MB VARCHAR whatever its encoding.
_VARCHAR_SAFE_CHARS = _VARCHAR_MAX_BYTES // 4


class _Plan:
    """A mapping compiled for the fast paths: the attributes it reads as a tree shaped like the item, and
    the item's common shape as msgspec types (:class:`_Shape`)."""

    def __init__(self, mapping: Mapping):
        self.mapping = mapping
        self.names = tuple(mapping.names)
        self.key_attribute = mapping.key_attribute
        self.event_column = next(c.column for c in mapping.columns if c.source == "@eventName")
        self.envelope = tuple(c for c in mapping.columns if c.source.startswith("@"))
        #: attribute name -> [targets, children, flattened name, prefix of the children's flattened names];
        #: a target is (column name, action, longest text taken as it is, column).
        self.tree: dict[str, list[Any]] = {}
        for column in mapping.columns:
            if column.source.startswith("@"):
                continue
            level, prefix = self.tree, ""
            parts = column.source.split(".")
            for depth, part in enumerate(parts):
                flat = prefix + part
                entry = level.setdefault(part, [(), None, flat, flat + "."])
                if depth == len(parts) - 1:
                    entry[0] += ((column.column, _action(column), _longest_plain_text(column), column),)
                else:
                    if entry[1] is None:
                        entry[1] = {}
                    level, prefix = entry[1], flat + "."
        self.shape = _Shape.of(self)


def _action(column: Column) -> int:
    if column.type == "STRING" or column.max_length is not None:
        return _TEXT
    return {"FLOAT": _FLOAT, "INTEGER": _INTEGER}.get(column.type, _TIMESTAMP)


def _longest_plain_text(column: Column) -> int:
    return min(column.max_length if column.max_length is not None else _VARCHAR_SAFE_CHARS, _VARCHAR_SAFE_CHARS)


_PLANS: dict[int, _Plan] = {}


def _plan(mapping: Mapping) -> _Plan:
    plan = _PLANS.get(id(mapping))
    if plan is None or plan.mapping is not mapping:  # the plan holds its mapping, so an id is never reused
        if len(_PLANS) >= 16:
            _PLANS.clear()
        plan = _PLANS[id(mapping)] = _Plan(mapping)
    return plan


def _struct(name: str, fields: list[tuple[Any, ...]], **options: Any) -> type:
    """A msgspec struct type the garbage collector does not track: decoded JSON holds no reference cycles,
    and the sixty-odd structs of a record would otherwise start a collection every dozen records."""
    return msgspec.defstruct(name, fields, gc=False, **options)


# msgspec types of DynamoDB JSON attribute values, one type tag each (an unknown tag fails to decode). No
# pattern is checked while decoding (msgspec's pattern check costs more than the decoding of the record):
# the row function checks the numbers' and timestamps' form as it converts them.
_StringValue = _struct("StringValue", [("S", str)], forbid_unknown_fields=True)
_NumberValue = _struct("NumberValue", [("N", str)], forbid_unknown_fields=True)


#: The elements of a list in the common shape: strings, numbers, and maps of strings and numbers (each
#: element must still hold exactly one of them: see :func:`_common_list_text`).
_ListLeaf = _struct("ListLeaf", [("N", str | msgspec.UnsetType, msgspec.UNSET),
                                 ("S", str | msgspec.UnsetType, msgspec.UNSET)],
                    forbid_unknown_fields=True, omit_defaults=True)
_ListElement = _struct("ListElement", [("M", dict[str, _ListLeaf] | msgspec.UnsetType, msgspec.UNSET),
                                       ("N", str | msgspec.UnsetType, msgspec.UNSET),
                                       ("S", str | msgspec.UnsetType, msgspec.UNSET)],
                       forbid_unknown_fields=True, omit_defaults=True)


@functools.cache
def _text_value(longest: int) -> type:
    """A text column's attribute: a string of at most ``longest`` characters, or a list (its JSON text)."""
    return _struct("TextValue", [
        ("L", list[_ListElement] | msgspec.UnsetType, msgspec.UNSET),
        ("S", Annotated[str, msgspec.Meta(max_length=longest)] | msgspec.UnsetType, msgspec.UNSET),
    ], forbid_unknown_fields=True, omit_defaults=True)


class _Shape:
    """The common record of a mapping, as msgspec types, so that decoding a record checks it too.

    A record has the common shape when its item holds every attribute (and every map on the way) the
    mapping reads, each of the DynamoDB type its column takes as it is (S or L for text, S for timestamps,
    N plainly written for numbers), and no attribute the mapping does not read (so that nothing is left
    unchecked); its ``Keys`` hold the key alone, as S; its time is a whole number. msgspec decodes and
    checks such a record in C, and :attr:`row` reads the row off it; a record of any other shape fails
    here and takes the general path.
    """

    def __init__(self, plan: _Plan, item: type, leaves: list[_Leaf]):
        keys = _struct("Keys", [("key", _StringValue)], rename={"key": plan.key_attribute},
                       forbid_unknown_fields=True)
        change = _struct("Change", [
            ("ApproximateCreationDateTime", int), ("Keys", keys),
            ("NewImage", item | None, None), ("OldImage", item | None, None),
        ])
        record = _struct("Record", [("eventName", str), ("dynamodb", change), ("eventID", Any, None)])
        self.decoder = msgspec.json.Decoder(record)
        self.key_column = plan.mapping.key_column
        self.source = _row_source(plan, leaves)
        namespace = {"UNSET": msgspec.UNSET, "list_text": _list_column, "timestamp": _naive_timestamp,
                     "decimal": _plain_float, "whole": _plain_int, "typed": _typed, "envelope": plan.envelope}
        exec(compile(self.source, "<claims_cdc.transform row of the common shape>", "exec"), namespace)  # noqa: S102
        #: ``row(item, event_name, micros_text)``: the mapped columns (all of them, in the mapping's order)
        #: of a decoded item of the common shape; raises where the item is not of it after all.
        self.row = namespace["row"]

    @classmethod
    def of(cls, plan: _Plan) -> _Shape | None:
        """The mapping's common shape, or None when it has none (an attribute read both as a value and as
        a map, or by columns of different kinds)."""
        leaves: list[_Leaf] = []
        item = _level(plan.tree, (), leaves)
        return None if item is None else cls(plan, item, leaves)


#: A mapped column in the common shape: the msgspec field names leading to its attribute (one per map
#: level), its target in the plan, and its depth in the item.
_Leaf = tuple[tuple[str, ...], tuple[Any, ...], int]


def _level(tree: dict[str, list[Any]], path: tuple[str, ...], leaves: list[_Leaf]) -> type | None:
    """The msgspec type of one map level of the item; its mapped columns are appended to ``leaves``."""
    fields: list[tuple[str, Any, Any]] = []
    rename = {}
    for index, (name, (targets, children, _flat, _prefix)) in enumerate(sorted(tree.items())):
        field = f"a{index}"  # attribute names need not be identifiers: the encoded name is the real one
        rename[field] = name
        if targets and children:
            return None
        if targets:
            actions = {target[1] for target in targets}
            if len(actions) != 1:
                return None
            action = actions.pop()
            if action == _TEXT:
                value_type = _text_value(min(target[2] for target in targets))
            else:
                value_type = _StringValue if action == _TIMESTAMP else _NumberValue
            leaves.extend(((*path, field), target, len(path)) for target in targets)
        else:
            inner = _level(children, (*path, field), leaves)
            if inner is None:
                return None
            value_type = _struct("MapValue", [("M", inner)], forbid_unknown_fields=True)
        fields.append((field, value_type | msgspec.UnsetType, msgspec.UNSET))
    return _struct("Level", fields, rename=rename, forbid_unknown_fields=True, omit_defaults=True)


def _row_source(plan: _Plan, leaves: list[_Leaf]) -> str:
    """Python source of ``row(item, event_name, micros_text)`` for the common shape.

    Straight-line code, one statement or three per column, with every attribute name known in advance:
    the interpreter then reads each field of msgspec's structs directly, without a lookup by name, which
    is what makes the common path fast. Only field names (``a0``, ``a1``, ...), column names (checked
    identifiers, written as literals) and numbers go into the source, never anything from a record.
    """
    lines = []
    maps = {(): "item"}

    def map_variable(path: tuple[str, ...]) -> str:
        if path not in maps:
            parent = map_variable(path[:-1])
            maps[path] = f"m{len(maps)}"
            lines.append(f"{maps[path]} = {parent}.{path[-1]}.M")
        return maps[path]

    values = {}
    for index, (path, (column_name, action, longest, _column), depth) in enumerate(leaves):
        node, value = f"{map_variable(path[:-1])}.{path[-1]}", f"v{index}"
        if action == _TEXT:  # S, or else L (its JSON text); never both, never neither
            lines += [f"n = {node}", f"{value} = n.S",
                      f"if {value} is UNSET or n.L is not UNSET: {value} = list_text(n, {depth}, {longest})"]
        elif action == _TIMESTAMP:
            lines.append(f"{value} = timestamp({node}.S)")
        elif action == _FLOAT:  # digits with at most one point: float() is float(Decimal())
            plain = "len(x) <= 38 and x.isascii() and x.replace('.', '', 1).isdigit()"
            lines += [f"x = {node}.N", f"{value} = float(x) if {plain} else decimal(x)"]
        else:  # digits alone: int() is int(Decimal())
            lines += [f"x = {node}.N",
                      f"{value} = int(x) if len(x) <= 38 and x.isascii() and x.isdigit() else whole(x)"]
        values[column_name] = value
    for index, column in enumerate(plan.envelope):
        value = "event_name" if column.source == "@eventName" else "micros_text"
        values[column.column] = value if column.type == "STRING" else f"typed(envelope[{index}], {value})"
    lines.append("return {" + ", ".join(f"{name!r}: {values[name]}" for name in plan.names) + "}")
    return "def row(item, event_name, micros_text):\n" + "".join(f"    {line}\n" for line in lines)


def _list_column(node: Any, depth: int, longest: int) -> str:
    """A text column's attribute that is not S: it must be L, and its JSON text short enough."""
    if node.L is msgspec.UNSET or node.S is not msgspec.UNSET:
        raise _Unusual
    if depth + 2 > MAX_DEPTH:  # the list's elements, and the values of the maps among them
        raise _Unusual
    text = _common_list_text(node.L)
    if len(text) > longest:
        raise _Unusual
    return text


def _common_list_text(elements: list[Any]) -> str:
    """:func:`json_text` of a list of the common shape (msgspec checked the types; the numbers' form is checked here).

    Each element and each map value must hold exactly one type tag. The maps' attributes are then put in
    sorted order, in place, once their text (in the order sent) is written: the image holding them then
    encodes canonically without sorting every map again. (The common path decoded this image itself; if
    it steps aside, the general path decodes the record afresh.)
    """
    unset = msgspec.UNSET
    parts = []
    for element in elements:
        text = element.S
        if text is not unset:
            if element.N is not unset or element.M is not unset:
                raise _Unusual
            parts.append(_quote(text))
            continue
        text = element.N
        if text is not unset:
            if element.M is not unset:
                raise _Unusual
            parts.append(_list_number(text))
            continue
        fields = element.M
        if fields is unset:
            raise _Unusual  # no type tag at all
        members = []
        in_order, previous = True, ""
        for name, value in fields.items():
            if name < previous:
                in_order = False
            previous = name
            text = value.S
            if text is not unset:
                if value.N is not unset:
                    raise _Unusual
                members.append(f"{_quote(name)}:{_quote(text)}")
            elif value.N is not unset:
                members.append(f"{_quote(name)}:{_list_number(value.N)}")
            else:
                raise _Unusual
        parts.append("{" + ",".join(members) + "}")
        if not in_order:
            element.M = {name: fields[name] for name in sorted(fields)}
    return "[" + ",".join(parts) + "]"


def _list_number(text: str) -> str:
    """A number in a list as :func:`json_text` writes it (Decimal's text), when that is the text as sent:
    written plainly, and not so small that Decimal would write it with an exponent (0.0000001 is 1E-7)."""
    if len(text) <= 38 and _PLAIN_DECIMAL.fullmatch(text) and not text.lstrip("-").startswith(_SMALL_FRACTION):
        return text
    raise _Unusual


def _naive_timestamp(text: str) -> str:
    """:func:`_typed` of a TIMESTAMP_NTZ column, for a timestamp without an offset or spaces around it."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:  # converted to UTC by the general path
        raise _Unusual
    return parsed.isoformat(timespec="microseconds")


def _plain_float(text: str) -> float:
    """:func:`_typed` of a FLOAT column for a plainly written number (a sign, no exponent)."""
    if len(text) <= 38 and _PLAIN_DECIMAL.fullmatch(text):
        return float(text)
    raise _Unusual


def _plain_int(text: str) -> int:
    """:func:`_typed` of an INTEGER column for a plainly written whole number (a sign)."""
    if _PLAIN_WHOLE.fullmatch(text):
        return int(text)
    raise _Unusual


# --- One record -> one row ---------------------------------------------------------------------------

def to_row(record: SourceRecord, mapping: Mapping, rules: TimeRules = TimeRules()) -> dict[str, Any]:
    """One Kinesis record -> one row (column name -> JSON-ready value). Raises :class:`RejectedRecord`.

    The images are canonical JSON text (``cdc_new_image``, ``cdc_old_image``; absent when the record has
    none), as the history table's VARIANT columns load them.
    """
    plan = _plan(mapping)
    row = _common_row(record, plan, rules)
    return row if row is not None else _general_row(record, plan, rules)


def _finish(row: dict[str, Any], record: SourceRecord, event_id: Any, event_name: str, micros: int,
            keys: bytes, new_image: bytes | None, old_image: bytes | None, unmapped: list[str]) -> dict[str, Any]:
    """The pipeline's own columns, after the mapped ones."""
    row["cdc_event_id"] = str(event_id) if isinstance(event_id, (str, int)) and event_id != "" else None
    row["cdc_shard_id"] = record.shard_id
    row["cdc_sequence_number"] = record.sequence_number
    row["cdc_change_order"] = change_order(micros, record.sequence_number)
    if new_image is not None:  # absent, not JSON null: the history column is then SQL NULL
        row["cdc_new_image"] = new_image.decode()
    if old_image is not None:
        row["cdc_old_image"] = old_image.decode()
    names = sorted({safe_name(name) for name in unmapped}) if unmapped else None
    row["cdc_unmapped_attributes"] = json.dumps(names) if names else None
    row["cdc_content_hash"] = _hash(event_name, micros, keys, new_image, old_image)
    return row


def _common_row(record: SourceRecord, plan: _Plan, rules: TimeRules) -> dict[str, Any] | None:
    """The row of a record of the mapping's common shape (:class:`_Shape`), or None for any other record."""
    shape = plan.shape
    if shape is None:
        return None
    try:
        doc = shape.decoder.decode(record.data)
    except Exception:  # noqa: BLE001 - another shape, or not even JSON: the general path decides
        return None
    change = doc.dynamodb
    event_name = doc.eventName
    image = change.OldImage if event_name == "REMOVE" else change.NewImage
    micros = _plausible_micros(change.ApproximateCreationDateTime, record.arrival_micros, rules)
    key = change.Keys.key.S
    if event_name not in EVENT_NAMES or image is None or micros is None or not key.strip():
        return None
    try:
        row = shape.row(image, event_name, str(micros))
    except Exception:  # noqa: BLE001 - an attribute absent, a list or a timestamp out of the ordinary
        return None
    if row[shape.key_column] != key:
        return None
    # Canonical text: msgspec writes the structs' fields in sorted order, and walking the lists of the
    # image the event keeps put their maps in order; only the other image needs sorting.
    if event_name == "REMOVE":
        new_image = None if change.NewImage is None else _CANONICAL.encode(change.NewImage)
        old_image = _IN_ORDER.encode(image)
    else:
        new_image = _IN_ORDER.encode(image)
        old_image = None if change.OldImage is None else _CANONICAL.encode(change.OldImage)
    return _finish(row, record, doc.eventID, event_name, micros, _CANONICAL.encode(change.Keys), new_image,
                   old_image, [])


def _plausible_micros(created: int, arrival_micros: int | None, rules: TimeRules) -> int | None:
    """:func:`normalise_micros` for a whole number, the stream's form, without Decimal; None where that
    would reject the record (the general path then names why)."""
    if created <= 0:
        return None
    if arrival_micros is None:
        return created * 1000 if created < _MICROS_THRESHOLD else created
    earliest = arrival_micros - rules.retention_hours * 3_600_000_000
    latest = arrival_micros + rules.max_skew_seconds * 1_000_000
    for micros in (created * 1000, created):  # milliseconds, then microseconds
        if earliest <= micros <= latest:
            return micros
    return None


def _general_row(record: SourceRecord, plan: _Plan, rules: TimeRules) -> dict[str, Any]:
    """The row of any record: the general fast path where it can, else the checked path."""
    doc, by_msgspec = _decode(record.data)
    try:
        change = _fast_change(doc, record, plan, rules)
    except Exception:  # noqa: BLE001 - anything the fast path does not expect, the checked path decides
        change = _checked_change(doc, record, plan.mapping, rules)
    encode = _CANONICAL.encode if by_msgspec else canonical_json
    images = [None if image is None else encode(image) for image in (change.new_image, change.old_image)]
    return _finish(change.values, record, doc.get("eventID"), change.event_name, change.micros,
                   encode(change.keys), *images, change.unmapped)


class _Unusual(Exception):
    """A fast path steps aside: the next path decides this record."""


@dataclass(slots=True)
class _Change:
    """What a record says, checked: the mapped values (column -> value) and what the row keeps besides."""

    values: dict[str, Any]
    event_name: str
    micros: int
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    #: The flattened names of the item's attributes no column takes (not yet made safe to show).
    unmapped: list[str]


def _checked_change(doc: Any, record: SourceRecord, mapping: Mapping, rules: TimeRules) -> _Change:
    """The rules, applied plainly, one after the other: the reference the fast paths agree with."""
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
    values: dict[str, Any] = {}
    for column in mapping.columns:
        value = envelope[column.source] if column.source.startswith("@") else flat.get(column.source)
        values[column.column] = _typed(column, value)
    return _Change(values, event_name, micros, keys, images["NewImage"], images["OldImage"],
                   [name for name in flat if name not in sources])


def _fast_change(doc: Any, record: SourceRecord, plan: _Plan, rules: TimeRules) -> _Change:
    """Any record, without Decimal and without naming attributes: walks the item along the mapping's tree.

    Raises :class:`_Unusual` (or anything) where the checked path must decide. It accepts only what the
    checked path accepts, with the same values: every attribute of the item is checked, the mapped ones
    as they are converted, the others by the checked path's own conversion.
    """
    if type(doc) is not dict:
        raise _Unusual
    event_name = doc.get("eventName")
    change = doc.get("dynamodb")
    if event_name not in EVENT_NAMES or type(change) is not dict:
        raise _Unusual
    created = change.get("ApproximateCreationDateTime")
    micros = _plausible_micros(created, record.arrival_micros, rules) if type(created) is int else None
    if micros is None:
        raise _Unusual
    keys = change.get("Keys")
    key_attribute = plan.key_attribute
    if type(keys) is not dict or len(keys) != 1:  # the table's key alone
        raise _Unusual
    key = keys.get(key_attribute)
    if type(key) is not dict or len(key) != 1 or type(key.get("S")) is not str or not key["S"].strip():
        raise _Unusual
    new_image, old_image = change.get("NewImage"), change.get("OldImage")
    for image in (new_image, old_image):
        if image is not None and type(image) is not dict:
            raise _Unusual
    image = old_image if event_name == "REMOVE" else new_image
    if image is None:
        if event_name != "REMOVE":
            raise _Unusual
        image = {}
    values = dict.fromkeys(plan.names)
    unmapped: list[str] = []
    _walk(image, plan.tree, 0, values, unmapped)
    if key_attribute in image:
        if image[key_attribute] != key:
            raise _Unusual
    else:
        _walk(keys, plan.tree, 0, values, unmapped)
    for column in plan.envelope:
        value = event_name if column.source == "@eventName" else str(micros)
        values[column.column] = value if column.type == "STRING" else _typed(column, value)
    return _Change(values, event_name, micros, keys, new_image, old_image, unmapped)


def _walk(attributes: dict[str, Any], tree: dict[str, list[Any]], depth: int, values: dict[str, Any],
          unmapped: list[str], prefix: str = "") -> None:
    """Check the attributes of one map level of the item, and convert the mapped ones into ``values``."""
    for name, node in attributes.items():
        entry = tree.get(name)
        if entry is None:
            if "." in name:  # a name that flattens like a path: the checked path sorts out what it means
                raise _Unusual
            _collect_unmapped(node, prefix + name, depth, unmapped)
            continue
        if type(node) is not dict or len(node) != 1:
            raise _Unusual
        targets, children, flat, child_prefix = entry
        inner = node.get("M")
        if inner is not None:
            if targets or type(inner) is not dict or depth >= MAX_DEPTH:  # a map where a value is expected
                raise _Unusual
            _walk(inner, children, depth + 1, values, unmapped, child_prefix)
        elif targets:
            for column_name, action, longest, column in targets:
                values[column_name] = _value(node, action, longest, column, depth)
        else:  # a value where the mapping reads a map: the checked path's own conversion checks it
            from_dynamodb_json(node, "", depth)
            unmapped.append(flat)


def _value(node: dict[str, Any], action: int, longest: int, column: Column, depth: int) -> Any:
    """One attribute's DynamoDB JSON (one type tag, checked) -> the column's value, as :func:`_typed` gives."""
    if action == _TEXT:
        text = node.get("S")
        if type(text) is not str:
            items = node.get("L")
            text = _list_text(items, depth + 1) if type(items) is list else None
        if text is not None:
            if len(text) > longest:
                raise _Unusual
            return text
    elif action == _INTEGER:
        text = node.get("N")
        if type(text) is str and _PLAIN_WHOLE.fullmatch(text):
            return int(text)
    elif action == _FLOAT:
        text = node.get("N")
        if type(text) is str and len(text) <= 38 and _PLAIN_DECIMAL.fullmatch(text):
            return float(text)
    return _typed(column, from_dynamodb_json(node, "", depth))


def _list_text(items: list[Any], depth: int) -> str:
    """A DynamoDB list -> :func:`json_text` of its plain value, checking every element.

    Strings, and maps of strings, the usual elements, are written here without a call each.
    """
    parts = []
    for node in items:
        if type(node) is dict and len(node) == 1:
            text = node.get("S")
            if type(text) is str:
                parts.append(_quote(text))
                continue
            fields = node.get("M")
            if type(fields) is dict and depth < MAX_DEPTH:
                members = []
                for name, value in fields.items():
                    if type(value) is dict and len(value) == 1:
                        text = value.get("S")
                        if type(text) is str:
                            members.append(f"{_quote(name)}:{_quote(text)}")
                            continue
                    members.append(f"{_quote(name)}:{_json_text_of(value, depth + 1)}")
                parts.append("{" + ",".join(members) + "}")
                continue
        parts.append(_json_text_of(node, depth))
    return "[" + ",".join(parts) + "]"


def _json_text_of(node: Any, depth: int) -> str:
    if depth > MAX_DEPTH or type(node) is not dict or len(node) != 1:
        raise _Unusual
    (tag, inner), = node.items()
    kind = type(inner)
    if tag == "S" and kind is str:
        return _quote(inner)
    if tag == "N" and kind is str:
        return _number_text(inner)
    if tag == "M" and kind is dict:
        return "{" + ",".join([f"{_quote(k)}:{_json_text_of(v, depth + 1)}" for k, v in inner.items()]) + "}"
    if tag == "L" and kind is list:
        return _list_text(inner, depth + 1)
    if tag == "BOOL" and kind is bool:
        return "true" if inner else "false"
    if tag == "NULL" and inner is True:
        return "null"
    if kind is list and tag in ("SS", "BS") and all(type(v) is str for v in inner):
        return "[" + ",".join(map(_quote, inner)) + "]"
    if kind is list and tag == "NS" and all(type(v) is str for v in inner):
        return "[" + ",".join(map(_number_text, inner)) + "]"
    if tag == "B" and kind is str:
        return _quote(inner)
    raise _Unusual


def _number_text(text: str) -> str:
    """A DynamoDB number as :func:`json_text` writes it (Decimal's text), checked as :func:`_number` does."""
    if len(text) <= 38 and _PLAIN_DECIMAL.fullmatch(text) and not text.lstrip("-").startswith(_SMALL_FRACTION):
        return text
    return str(_number(text, ""))


def _collect_unmapped(node: Any, name: str, depth: int, unmapped: list[str]) -> None:
    """An attribute no column takes: checked by the checked path's conversion, its flattened names kept."""
    if type(node) is dict and len(node) == 1 and type(node.get("M")) is dict and depth <= MAX_DEPTH:
        for key, value in node["M"].items():
            if "." in key:
                raise _Unusual
            _collect_unmapped(value, f"{name}.{key}", depth + 1, unmapped)
        return
    from_dynamodb_json(node, "", depth)
    unmapped.append(name)


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
