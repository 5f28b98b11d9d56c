"""The bodies of the ``claims_cdc_snapshot`` tasks, and the side batches the snapshot, replay and audit share.

A *side batch* is a batch that is not the live stream's: the items of a snapshot, the records of a replay,
an audit's repairs. It takes the live path from the transform on (Parquet files, PUT, COPY INTO into the
staging table, the history, the ordered merge) with two differences, which make it safe to run while
``claims_cdc`` runs:

- it never moves a checkpoint (``shards=[]``); the batch log keeps what it did instead (mode, range, parts,
  counts) in its ``positions`` column;
- its files live under ``<CDC_BATCH_ROOT>/_side`` (:data:`claims_cdc.batch_files.SIDE_DIR`), which the live
  sweeper (``removed_batch_files``) leaves alone: it removes every batch planned before the live run's, so a
  side batch among them could lose its files between its read and its staging. Side batches older than
  ``CDC_BATCH_FILE_MAX_AGE_HOURS`` are removed when the next side batch is planned.

Concurrent merges are safe: each merge claims what is staged and applies a change only if it is newer (by
the change's own time) than the destination's row and the claim's tombstone, so whichever merge takes a
side batch's rows, the result is the same. Ids, positions and counts only travel through XCom; no claim
content is logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from claims_cdc import aws, batch_files, dynamodb_reader, warehouse
from claims_cdc.mapping import Mapping, load_mapping
from claims_cdc.pipeline import PartWriter, fails_without_retry
from claims_cdc.settings import ConfigError, Settings
from claims_cdc.snowflake import session
from claims_cdc.sql import load
from claims_cdc.transform import SourceRecord, TimeRules

log = logging.getLogger(__name__)

SNAPSHOT_METHODS = ("export", "scan")


def side_settings(settings: Settings) -> Settings:
    """The settings with the side batches' root (``<CDC_BATCH_ROOT>/_side``), out of the live sweeper's reach."""
    return dataclasses.replace(settings, batch_root=f"{settings.batch_root}/{batch_files.SIDE_DIR}")


def new_side_batch(settings: Settings, dag_run_id: str) -> dict[str, Any]:
    """A new side batch (its id and folder); expired side batches of earlier runs go first."""
    side = side_settings(settings)
    batch_files.remove_finished(side, settled_before=None)
    batch_id = batch_files.new_batch_id()
    return {"batch_id": batch_id, "uri": batch_files.batch_uri(side, dag_run_id, batch_id)}


def write_part(settings: Settings, batch: dict[str, Any], part_id: str,
               pages: Iterable[list[SourceRecord]], rules: TimeRules | None = None) -> dict[str, Any]:
    """Transform records page by page into the side batch's ``rows/<part>.parquet`` and
    ``rejected/<part>.parquet`` (as a live shard's task does); copies of a change in the part are dropped.
    Safe to retry: the part's files are written anew. Returns counts only."""
    with PartWriter(side_settings(settings), load_mapping(settings.mapping_path), rules or TimeRules(),
                    batch["batch_id"], batch["uri"], part_id) as part:
        for page in pages:
            part.write(page)
    log.info("side batch %s part %s: %d records, %d rows, %d copies dropped, %d rejected", batch["batch_id"],
             part_id, part.records, part.rows, part.dropped, part.rejected)
    return {"batch_id": batch["batch_id"], "uri": batch["uri"], "part_id": part_id, "records": part.records,
            "rows": part.rows, "duplicates_dropped": part.dropped, "rejected": part.rejected}


def log_side_run(settings: Settings, batch_id: str, dag_run_id: str, description: dict[str, Any],
                 records: int, status: str) -> None:
    """One batch-log row for a side run that staged nothing (idempotent by its batch id)."""
    statement = load("side", settings, load_mapping(settings.mapping_path))["log_side_run"]
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        snow.rowcount(statement, [batch_id, dag_run_id, settings.kinesis_stream, records,
                                  json.dumps(description, separators=(",", ":")), status, batch_id])


def _files_gone(batch_id: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(f"side batch {batch_id}: its files are gone (older than "
                                "CDC_BATCH_FILE_MAX_AGE_HOURS?); nothing was staged: run the DAG again")


@fails_without_retry
def stage_parts(settings: Settings, parts: list[dict[str, Any]], dag_run_id: str,
                description: dict[str, Any]) -> dict[str, Any]:
    """Stage a side batch from its parts' files, in one transaction, moving no checkpoint; the batch log
    keeps ``description`` (mode, range; ids and counts only) with each part's counts. Safe to retry."""
    parts = [p for p in parts if p]
    if not parts:  # nothing to read (an empty export, no shard): logged all the same
        batch_id = f"empty-{batch_files.new_batch_id()}"
        log_side_run(settings, batch_id, dag_run_id, {**description, "parts": []}, 0, "EMPTY")
        return {"batch_id": None, "records": 0, "rows_staged": 0, "rows_rejected": 0, "history_rows": 0}
    batch_id, uri = parts[0]["batch_id"], parts[0]["uri"]
    totals = {key: sum(int(p[key]) for p in parts) for key in ("records", "rows", "duplicates_dropped", "rejected")}
    logged = {**description, "parts": [{k: p[k] for k in ("part_id", "records", "rows", "rejected")} for p in parts]}
    summary = {"batch_id": batch_id, "uri": uri, **totals}
    if not totals["records"]:  # logged under the batch's id (idempotent), with its parts' zero counts
        log_side_run(settings, batch_id, dag_run_id, logged, 0, "EMPTY")
        return {**summary, "rows_staged": 0, "rows_rejected": 0, "history_rows": 0}
    side = side_settings(settings)
    mapping = load_mapping(settings.mapping_path)
    expected = [batch_files.shard_file(uri, kind, p["part_id"]) for p in parts for kind in ("rows", "rejected") if p[kind]]
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        if not all(batch_files.batch_exists(side, f) for f in expected):
            counts = warehouse.staged_counts(snow, settings, mapping, batch_id)
            if counts is None:
                raise _files_gone(batch_id)
        else:
            with batch_files.local_copy(side, uri) as folder:
                counts = warehouse.stage_files(
                    snow, settings, mapping, batch_id=batch_id, dag_run_id=dag_run_id, shards=[], folder=folder,
                    records_read=totals["records"], rows=totals["rows"],
                    duplicates_dropped=totals["duplicates_dropped"], rejected=totals["rejected"],
                    status=str(description["mode"]).upper(), logged_positions=logged)
    return {**summary, "rows_staged": counts.rows_staged, "rows_rejected": counts.rows_rejected,
            "history_rows": counts.history_rows}


@fails_without_retry
def merge_side_batch(settings: Settings, staged: dict[str, Any], dag_run_id: str) -> dict[str, Any]:
    """The ordered merge of everything staged (this side batch and whatever else waits), then this batch's
    files removed. Safe to retry and to run beside the live merge."""
    mapping = load_mapping(settings.mapping_path)
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        counts = warehouse.merge_pending(snow, settings, mapping, uuid.uuid4().hex)
    if staged.get("batch_id"):
        batch_files.remove_batch(side_settings(settings), dag_run_id, staged["batch_id"])
    return {"batch_id": staged.get("batch_id"), **counts.to_json()}


# --- claims_cdc_snapshot ---------------------------------------------------------------------------

def _client_token(dag_run_id: str) -> str:
    """The export's ClientToken: the same for every try of one run, so a retry gets the same export back."""
    return hashlib.sha256(dag_run_id.encode()).hexdigest()[:32]


@fails_without_retry
def plan_snapshot(settings: Settings, dag_run_id: str, method: str, segments: int,
                  requested_at: datetime) -> list[dict[str, Any]]:
    """The snapshot's parts: each data file of a point-in-time export of the table (``export``, the
    default: no read capacity used) or each segment of a parallel Scan (``scan``), all stamped with the
    same time: the export's point in time, or the moment before the Scan began.

    The export is asked for as of ``requested_at`` (the DAG run's start: every retry of the task asks for
    the same export, with the same client token, and waits for it).
    """
    if method not in SNAPSHOT_METHODS:
        raise ConfigError(f"snapshot method {method!r} must be one of {', '.join(SNAPSHOT_METHODS)}")
    if not 1 <= segments <= 1_000:
        raise ConfigError(f"segments={segments} must be within 1..1000")
    batch = new_side_batch(settings, dag_run_id)
    if method == "scan":
        stamp = dynamodb_reader.micros_of(datetime.now(UTC))
        return [{**batch, "method": "scan", "part_id": f"segment-{i:04d}-of-{segments:04d}", "segment": i,
                 "total_segments": segments, "stamp_micros": stamp} for i in range(segments)]
    if not settings.snapshot_bucket:
        raise ConfigError("CDC_SNAPSHOT_BUCKET is not set: the export method writes the table to that S3 bucket "
                          "(or run the snapshot with method=scan)")
    client = aws.dynamodb_client(settings.aws_conn_id)
    prefix = f"{settings.snapshot_prefix}/{re.sub(r'[^A-Za-z0-9_.-]', '_', dag_run_id)}"
    requested_at = requested_at.astimezone(UTC)
    started = dynamodb_reader.start_export(client, settings.dynamodb_table, settings.snapshot_bucket, prefix,
                                           requested_at, _client_token(dag_run_id))
    log.info("snapshot export %s of %s as of %s to s3://%s/%s", started["ExportArn"], settings.dynamodb_table,
             requested_at.isoformat(), settings.snapshot_bucket, prefix)
    done = dynamodb_reader.wait_for_export(client, started["ExportArn"], settings.snapshot_export_timeout)
    keys = dynamodb_reader.export_data_files(aws.s3_client(settings.aws_conn_id), done, prefix)
    stamp = dynamodb_reader.micros_of(dynamodb_reader.export_time(done, requested_at))
    log.info("snapshot export %s: %s items in %d data file(s)", started["ExportArn"], done.get("ItemCount"), len(keys))
    return [{**batch, "method": "export", "part_id": f"export-{i:05d}", "bucket": done["S3Bucket"], "key": key,
             "export_arn": started["ExportArn"], "stamp_micros": stamp} for i, key in enumerate(keys)]


def _snapshot_records(settings: Settings, part: dict[str, Any]) -> Iterator[list[SourceRecord]]:
    mapping: Mapping = load_mapping(settings.mapping_path)
    if part["method"] == "export":
        pages = dynamodb_reader.export_items(aws.s3_client(settings.aws_conn_id), part["bucket"], part["key"])
    else:
        pages = dynamodb_reader.scan_segment(aws.dynamodb_json_client(settings.aws_conn_id), settings.dynamodb_table,
                                             part["segment"], part["total_segments"])
    for items in pages:
        yield [dynamodb_reader.item_record(item, mapping.key_attribute, part["stamp_micros"], "snapshot",
                                           settings.dynamodb_table) for item in items]


@fails_without_retry
def read_snapshot_part(settings: Settings, part: dict[str, Any]) -> dict[str, Any]:
    """One export data file or Scan segment, transformed into the side batch's files (counts returned)."""
    return {**write_part(settings, part, part["part_id"], _snapshot_records(settings, part)),
            "stamp_micros": part["stamp_micros"], "method": part["method"]}


def snapshot_description(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """What the batch log keeps of a snapshot: its method and point in time."""
    first = next((p for p in parts if p), {})
    stamp = first.get("stamp_micros")
    as_of = datetime.fromtimestamp(stamp / 1_000_000, UTC).isoformat() if stamp else None
    return {"mode": "snapshot", "method": first.get("method"), "as_of": as_of}
