"""The bodies of the ``claims_cdc_audit`` tasks: DynamoDB against the destination, key by key and by
content hash, and the repair of what differs.

How two sides are compared: an item is put through the stream's transform (as a change record of it,
:func:`claims_cdc.dynamodb_reader.item_record`), and its *item hash* is the SHA-256 of the mapped columns
the item fills (every column but the envelope's ``eventName`` and ``eventCreationUnixTime``), each value in
one normal form per Snowflake type (:func:`normal`). A destination row's item hash is the same function of
the same columns as Snowflake returns them. Equal hashes: the row holds what the item says. A key in
DynamoDB alone is *missing*, in the destination alone *extra*, in both with different hashes *different*.

A repair reads the divergent keys again (BatchGetItem, strongly consistent) and sends them through the same
ordered merge as a snapshot, stamped with the moment before the read: the item as it is now (an INSERT), or
for a key DynamoDB no longer has, its tombstone (a REMOVE). A stream change newer than that moment still
wins. The audit's tables keep ids, hashes and counts only; nothing here logs a value.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from claims_cdc import aws, batch_files, dynamodb_reader
from claims_cdc.mapping import Mapping, load_mapping
from claims_cdc.pipeline import fails_without_retry
from claims_cdc.settings import ConfigError, Settings
from claims_cdc.snapshot import merge_side_batch, new_side_batch, stage_parts, write_part
from claims_cdc.snowflake import Session, session
from claims_cdc.sql import load
from claims_cdc.transform import RejectedRecord, to_row

log = logging.getLogger(__name__)

KINDS = ("missing", "extra", "different")
#: The item hash of an item the transform rejects: never equal to a row's, so its key shows as divergent.
REJECTED_HASH = "rejected"
#: Keys and hashes bound at once in one INSERT (as JSON).
KEYS_PER_INSERT = 5_000


def normal(column_type: str, value: Any) -> str | None:
    """One text per value, whichever side it comes from: the transform's row or Snowflake's answer."""
    if value is None:
        return None
    if column_type == "FLOAT":
        return repr(float(value))
    if column_type == "INTEGER":
        return str(int(Decimal(str(value))))
    if column_type.startswith("TIMESTAMP"):
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds")
    return str(value)


def item_columns(mapping: Mapping) -> list[Any]:
    return [c for c in mapping.columns if not c.source.startswith("@")]


def values_hash(values: dict[str, Any], mapping: Mapping) -> str:
    """The item hash of a row's mapped item columns (column name -> value)."""
    normal_form = [[c.column, normal(c.type, values.get(c.column))] for c in item_columns(mapping)]
    return hashlib.sha256(json.dumps(normal_form, separators=(",", ":")).encode()).hexdigest()


def item_hash(item: dict[str, Any], mapping: Mapping, table_name: str) -> str:
    """The item hash of a DynamoDB item (DynamoDB JSON), through the stream's transform."""
    record = dynamodb_reader.item_record(item, mapping.key_attribute, 1, "audit", table_name)
    try:
        return values_hash(to_row(record, mapping), mapping)
    except RejectedRecord:
        return REJECTED_HASH


def compare(source: dict[str, str], destination: dict[str, str]) -> dict[str, list[str]]:
    """Divergent keys by kind, each list sorted: missing, extra, different."""
    return {"missing": sorted(source.keys() - destination.keys()),
            "extra": sorted(destination.keys() - source.keys()),
            "different": sorted(k for k in source.keys() & destination.keys() if source[k] != destination[k])}


def _statements(settings: Settings) -> tuple[dict, Mapping]:
    mapping = load_mapping(settings.mapping_path)
    return load("audit", settings, mapping), mapping


def _destination_hashes(snow: Session, settings: Settings, statement: Any, params: list[Any] | None = None
                        ) -> dict[str, str]:
    mapping = load_mapping(settings.mapping_path)
    names = [c.column for c in item_columns(mapping)]
    key = names.index(mapping.key_column)
    cursor = snow.execute(statement, params or [])
    hashes: dict[str, str] = {}
    while rows := cursor.fetchmany(10_000):
        for row in rows:
            hashes[row[key]] = values_hash(dict(zip(names, row, strict=True)), mapping)
    return hashes


# --- The tasks ---------------------------------------------------------------------------------------

@fails_without_retry
def plan_audit(settings: Settings, segments: int) -> list[dict[str, Any]]:
    """The audit's id and its Scan segments (one mapped task each); earlier audits' scratch keys go."""
    if not 1 <= segments <= 1_000:
        raise ConfigError(f"segments={segments} must be within 1..1000")
    audit_id = batch_files.new_batch_id()
    statements, _ = _statements(settings)
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        snow.rowcount(statements["clear_old_audit_keys"], [audit_id])
    return [{"audit_id": audit_id, "segment": i, "total_segments": segments} for i in range(segments)]


@fails_without_retry
def scan_segment(settings: Settings, part: dict[str, Any]) -> dict[str, Any]:
    """One Scan segment: each item's key and item hash into the audit's keys table (ids and hashes only)."""
    statements, mapping = _statements(settings)
    client = aws.dynamodb_json_client(settings.aws_conn_id)
    pairs = [{"k": item[mapping.key_attribute]["S"], "h": item_hash(item, mapping, settings.dynamodb_table)}
             for page in dynamodb_reader.scan_segment(client, settings.dynamodb_table, part["segment"],
                                                      part["total_segments"])
             for item in page]
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow, snow.transaction():
        snow.rowcount(statements["clear_audit_segment"], [part["audit_id"], part["segment"]])
        for start in range(0, len(pairs), KEYS_PER_INSERT):
            snow.rowcount(statements["insert_audit_keys"], [part["audit_id"], part["segment"],
                                                            json.dumps(pairs[start:start + KEYS_PER_INSERT])])
    rejected = sum(1 for p in pairs if p["h"] == REJECTED_HASH)
    log.info("audit %s segment %d/%d: %d items (%d the transform rejects)", part["audit_id"], part["segment"],
             part["total_segments"], len(pairs), rejected)
    return {"audit_id": part["audit_id"], "segment": part["segment"], "items": len(pairs), "rejected": rejected}


@fails_without_retry
def find_divergence(settings: Settings, audit_id: str, dag_run_id: str) -> dict[str, Any]:
    """Compare the scanned keys and hashes with the destination's; record the divergent keys (ids only)
    and the counts. Safe to retry: the audit's findings are replaced."""
    statements, _ = _statements(settings)
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        source = dict(snow.fetchall(statements["read_audit_keys"], [audit_id]))
        destination = _destination_hashes(snow, settings, statements["read_destination"])
        found = compare(source, destination)
        with snow.transaction():
            snow.rowcount(statements["clear_divergence"], [audit_id])
            listed = [{"k": key, "kind": kind} for kind in KINDS for key in found[kind]]
            for start in range(0, len(listed), KEYS_PER_INSERT):
                snow.rowcount(statements["insert_divergence"], [audit_id, json.dumps(listed[start:start + KEYS_PER_INSERT])])
            counts = {kind: len(found[kind]) for kind in KINDS}
            _record(snow, statements, audit_id, dag_run_id, len(source), len(destination), counts, None, None, "FOUND")
    log.info("audit %s: %d items, %d rows; %s", audit_id, len(source), len(destination), counts)
    return {"audit_id": audit_id, "dynamodb_items": len(source), "destination_rows": len(destination), **counts}


def _record(snow: Session, statements: dict, audit_id: str, dag_run_id: str, items: int, rows: int,
            before: dict[str, int], repaired: int | None, after: dict[str, int] | None, status: str) -> None:
    after = after or {}
    snow.rowcount(statements["clear_audit"], [audit_id])
    snow.rowcount(statements["insert_audit"], [audit_id, dag_run_id, items, rows, before["missing"], before["extra"],
                                               before["different"], repaired, after.get("missing"),
                                               after.get("extra"), after.get("different"), status])


def _divergent(snow: Session, statements: dict, audit_id: str) -> dict[str, str]:
    return dict(snow.fetchall(statements["read_divergence"], [audit_id]))


@fails_without_retry
def repair(settings: Settings, found: dict[str, Any], dag_run_id: str) -> dict[str, Any]:
    """Read the divergent keys again (BatchGetItem) and send them through the same ordered merge as a
    snapshot: the item as it is now, or the tombstone of a key DynamoDB no longer has. Counts only."""
    statements, mapping = _statements(settings)
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        keys = sorted(_divergent(snow, statements, found["audit_id"]))
    if not keys:
        return {"audit_id": found["audit_id"], "repaired": 0, "inserted": 0, "removed": 0}
    stamp = dynamodb_reader.micros_of(datetime.now(UTC))  # the moment before the read: newer changes win
    items = dynamodb_reader.batch_get(aws.dynamodb_json_client(settings.aws_conn_id), settings.dynamodb_table,
                                      mapping.key_attribute, keys)
    records = [dynamodb_reader.item_record(items[k], mapping.key_attribute, stamp, "audit", settings.dynamodb_table)
               if k in items else
               dynamodb_reader.item_record({mapping.key_attribute: {"S": k}}, mapping.key_attribute, stamp, "audit",
                                           settings.dynamodb_table, event="REMOVE")
               for k in keys]
    batch = new_side_batch(settings, dag_run_id)
    part = write_part(settings, batch, "repair", [records])
    description = {"mode": "audit_repair", "audit_id": found["audit_id"],
                   "as_of": datetime.fromtimestamp(stamp / 1_000_000, UTC).isoformat(),
                   "before": {kind: found[kind] for kind in KINDS}}
    staged = stage_parts(settings, [part], dag_run_id, description)
    merged = merge_side_batch(settings, staged, dag_run_id)
    result = {"audit_id": found["audit_id"], "repaired": len(keys), "inserted": len(items),
              "removed": len(keys) - len(items), "batch_id": staged["batch_id"], "merge": merged}
    log.info("audit %s repair: %s", found["audit_id"], {k: v for k, v in result.items() if k != "merge"})
    return result


@fails_without_retry
def verify(settings: Settings, found: dict[str, Any], repaired: dict[str, Any] | None, dag_run_id: str) -> dict[str, Any]:
    """The divergent keys compared again, DynamoDB (read now) against the destination: the counts after
    the repair, recorded with the audit's counts before it. Keys that still differ are marked so."""
    statements, mapping = _statements(settings)
    audit_id = found["audit_id"]
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        keys = sorted(_divergent(snow, statements, audit_id))
        items = dynamodb_reader.batch_get(aws.dynamodb_json_client(settings.aws_conn_id), settings.dynamodb_table,
                                          mapping.key_attribute, keys) if keys else {}
        source = {k: item_hash(item, mapping, settings.dynamodb_table) for k, item in items.items()}
        destination = _destination_hashes(snow, settings, statements["read_destination_keys"], [json.dumps(keys)]) if keys else {}
        after = compare(source, destination)
        counts = {kind: len(after[kind]) for kind in KINDS}
        with snow.transaction():
            still = {key: kind for kind in KINDS for key in after[kind]}
            if keys:
                snow.rowcount(statements["mark_after_repair"], [None, audit_id, json.dumps(sorted(set(keys) - set(still)))])
            for kind in KINDS:
                if after[kind]:
                    snow.rowcount(statements["mark_after_repair"], [kind, audit_id, json.dumps(after[kind])])
            status = "MATCH" if not keys else ("REPAIRED" if not still else "DIVERGENT")
            _record(snow, statements, audit_id, dag_run_id, found["dynamodb_items"], found["destination_rows"],
                    {kind: found[kind] for kind in KINDS}, (repaired or {}).get("repaired", 0), counts, status)
    log.info("audit %s after repair: %s (%s)", audit_id, counts, status)
    return {"audit_id": audit_id, "status": status, "before": {kind: found[kind] for kind in KINDS}, "after": counts}

