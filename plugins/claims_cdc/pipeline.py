"""The bodies of the ``claims_cdc`` tasks, as plain functions of settings and run identity.

Each step hands the next one a small manifest (ids, paths, positions, counts) and never rows: records
travel through batch files (:mod:`claims_cdc.batch_files`) and Snowflake. Every step is safe to retry.
"""

from __future__ import annotations

import base64
import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from claims_cdc import aws, batch_files, warehouse
from claims_cdc.kinesis_reader import (
    Checkpoint,
    CheckpointGap,
    StreamNotFound,
    check_retention,
    has_records,
    read_batch,
    retention_hours,
)
from claims_cdc.mapping import Mapping, load_mapping
from claims_cdc.settings import ConfigError, Settings
from claims_cdc.snowflake import Session, SnowflakeObjectMissing, session
from claims_cdc.transform import SourceRecord, TimeRules, transform_records

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Errors no retry can fix: a bad setting, a stream, table or Snowflake object that does not exist, and
#: records that expired unread. Their messages name the setting (or the shard) and never hold record content.
#: A batch that does not balance is a bug: retrying the same records cannot fix it.
UNRETRYABLE = (ConfigError, StreamNotFound, aws.TableNotFound, SnowflakeObjectMissing, CheckpointGap,
               warehouse.BatchImbalance)


def fails_without_retry(body: Callable[_P, _R]) -> Callable[_P, _R]:
    """The one place where the task bodies turn an error no retry can fix into ``AirflowFailException``.

    The task then fails at once, with the same message, instead of retrying for minutes first.
    """

    @functools.wraps(body)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return body(*args, **kwargs)
        except UNRETRYABLE as error:
            raise AirflowFailException(str(error)) from error

    return run


def mapping_for(settings: Settings) -> Mapping:
    return load_mapping(settings.mapping_path)


@contextmanager
def _snowflake(settings: Settings) -> Iterator[Session]:
    """A Snowflake session for these settings (looked up as ``session`` here, so tests can cut it)."""
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        yield snow


@fails_without_retry
def stored_checkpoints(settings: Settings) -> dict[str, Checkpoint]:
    """Each shard's position as committed in Snowflake (one short session)."""
    with _snowflake(settings) as snow:
        return warehouse.read_checkpoints(snow, settings, mapping_for(settings))


@fails_without_retry
def stream_has_records(settings: Settings, checkpoints: dict[str, Checkpoint] | None = None) -> bool:
    """True when any shard has a record after its stored checkpoint (nothing is consumed).

    ``checkpoints`` saves the Snowflake read when the caller already holds them (the trigger reads them once).
    """
    if checkpoints is None:
        checkpoints = stored_checkpoints(settings)
    return has_records(aws.kinesis_client(settings.aws_conn_id), settings.kinesis_stream, checkpoints)


@fails_without_retry
def extract(settings: Settings, dag_run_id: str, max_records: int, started_at: datetime | None) -> dict[str, Any]:
    """Read what is in the stream after the stored checkpoints (up to ``max_records``) into a batch file."""
    if max_records < 1:
        raise ConfigError(f"max_records={max_records} must be at least 1")
    checkpoints = stored_checkpoints(settings)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    hours = retention_hours(kinesis, settings.kinesis_stream)
    # A CheckpointGap fails the task at once (fails_without_retry): no retry brings expired records back.
    check_retention(kinesis, settings.kinesis_stream, checkpoints, hours=hours)
    result = read_batch(
        kinesis,
        settings.kinesis_stream,
        checkpoints,
        max_records=max_records,
        page_limit=settings.get_records_limit,
        started_at=started_at,
    )
    batch_id = batch_files.new_batch_id()
    uri = batch_files.batch_uri(settings, dag_run_id, batch_id)
    count = batch_files.write_jsonl(settings, f"{uri}/records.jsonl", (r.to_json() for r in result.records))
    shards = [s.to_json() for s in result.shards]
    log.info("batch %s: read %d records from %d shard(s)", batch_id, count, len(shards))
    for shard in shards:
        log.info("  shard %s: %d records, after %s up to %s%s", shard["shard_id"], shard["records"],
                 shard["start"], shard["end"], " (drained)" if shard["drained"] else "")
    return {"batch_id": batch_id, "uri": uri, "records": count, "shards": shards, "retention_hours": hours}


def time_rules(settings: Settings, batch: dict[str, Any]) -> TimeRules:
    """The plausibility window of a change's own time, for a batch read from a stream of this retention."""
    return TimeRules(retention_hours=int(batch.get("retention_hours") or 24),
                     max_skew_seconds=settings.max_clock_skew_seconds)


def _files_gone(batch: dict[str, Any]) -> Exception:
    """A cleared task of an old run whose batch files were removed: only a new extract can help."""
    return AirflowFailException(
        f"batch {batch['batch_id']}: its files were removed (a later run staged or re-read its records, or "
        f"they passed CDC_BATCH_FILE_MAX_AGE_HOURS); nothing was lost: clear this run from extracted_batch "
        "to read again from the stored checkpoints"
    )


@fails_without_retry
def transform(settings: Settings, batch: dict[str, Any]) -> dict[str, Any]:
    """Flatten and rename the batch's records by the mapping file; keep bad ones with their reason."""
    if not batch_files.batch_exists(settings, f"{batch['uri']}/records.jsonl"):
        raise _files_gone(batch)
    records = [SourceRecord.from_json(d) for d in batch_files.read_jsonl(settings, f"{batch['uri']}/records.jsonl")]
    result = transform_records(records, mapping_for(settings), time_rules(settings, batch))
    rows = batch_files.write_jsonl(settings, f"{batch['uri']}/rows.jsonl", result.rows)
    rejected = batch_files.write_jsonl(settings, f"{batch['uri']}/rejected.jsonl", result.rejected)
    for bad in result.rejected:
        log.warning("rejected shard %s sequence %s: %s", bad["shard_id"], bad["sequence_number"], bad["reason"])
    log.info("batch %s: %d rows, %d rejected", batch["batch_id"], rows, rejected)
    return {**batch, "rows": rows, "rejected": rejected}


@fails_without_retry
def stage(settings: Settings, batch: dict[str, Any], dag_run_id: str) -> dict[str, Any]:
    """Load the CDC and history tables and move the checkpoints, in one transaction."""
    if not batch["records"] and not any(s["drained"] for s in batch["shards"]):
        log.info("batch %s is empty; nothing to stage", batch["batch_id"])
        return _with_counts(batch, warehouse.StageCounts(batch["batch_id"], 0, 0, 0))
    try:
        rows = list(batch_files.read_jsonl(settings, f"{batch['uri']}/rows.jsonl"))
        rejected = list(batch_files.read_jsonl(settings, f"{batch['uri']}/rejected.jsonl"))
    except FileNotFoundError:
        # A retry after this batch was staged and its files removed is done; any other case needs a new extract.
        with _snowflake(settings) as snow:
            done = warehouse.staged_counts(snow, settings, mapping_for(settings), batch["batch_id"])
        if done is None:
            raise _files_gone(batch) from None
        log.info("batch %s was already staged and its files removed; nothing to do", batch["batch_id"])
        return _with_counts(batch, done)
    with _snowflake(settings) as snow:
        counts = warehouse.stage_batch(
            snow,
            settings,
            mapping_for(settings),
            batch_id=batch["batch_id"],
            dag_run_id=dag_run_id,
            shards=batch["shards"],
            records_read=batch["records"],
            rows=rows,
            rejected=rejected,
        )
    return _with_counts(batch, counts)


def _with_counts(batch: dict[str, Any], counts: warehouse.StageCounts) -> dict[str, Any]:
    """The batch's manifest with its staging counts (read = staged + re-deliveries dropped + rejected)."""
    return {**batch, "rows_staged": counts.rows_staged, "history_rows": counts.history_rows,
            "rows_rejected": counts.rows_rejected, "duplicates_dropped": counts.duplicates_dropped}


def redrive(settings: Settings, limit: int, run_id: str) -> dict[str, Any]:
    """Re-process dead letters through the same path (transform, stage, ordered merge) after a fix.

    Each dead letter taken is marked re-driven (never deleted) in the same transaction that stages its row;
    one that still fails is dead-lettered again under the re-drive's batch, with its reason now. Ordering
    is by each change's own time, so re-driving an old change never overwrites a newer one.
    """
    mapping = mapping_for(settings)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    rules = time_rules(settings, {"retention_hours": retention_hours(kinesis, settings.kinesis_stream)})
    batch_id = f"redrive-{batch_files.new_batch_id()}"
    summary: dict[str, Any] = {"batch_id": batch_id, "redriven": 0, "rows_staged": 0, "duplicates_dropped": 0,
                               "still_rejected": 0, "merged": None}
    with _snowflake(settings) as snow:
        letters = warehouse.read_dead_letters(snow, settings, mapping, limit)
        if letters:
            records = [SourceRecord(d["shard_id"], d["sequence_number"], base64.b64decode(d["payload_base64"]),
                                    d["arrival_micros"]) for d in letters]
            result = transform_records(records, mapping, rules)
            taken = [{key: d[key] for key in ("batch_id", "shard_id", "sequence_number")} for d in letters]
            counts = warehouse.stage_batch(snow, settings, mapping, batch_id=batch_id, dag_run_id=run_id, shards=[],
                                           records_read=len(records), rows=result.rows, rejected=result.rejected,
                                           status="REDRIVEN", redriven=taken)
            merged = warehouse.merge_pending(snow, settings, mapping, uuid.uuid4().hex)
            summary.update(redriven=len(records), rows_staged=counts.rows_staged,
                           duplicates_dropped=counts.duplicates_dropped, still_rejected=counts.rows_rejected,
                           merged=merged.to_json())
    log.info("re-drive %s: %s", batch_id, summary)
    return summary


@fails_without_retry
def merge(settings: Settings, batch: dict[str, Any] | None, dag_run_id: str) -> dict[str, int]:
    """Merge everything staged (this batch and any an earlier run left), then drop this run's batch files."""
    merge_id = uuid.uuid4().hex
    with _snowflake(settings) as snow:
        counts = warehouse.merge_pending(snow, settings, mapping_for(settings), merge_id)
    if batch:
        batch_files.remove_batch(settings, dag_run_id, batch["batch_id"])
    return counts.to_json()


def remove_batch_files(
    settings: Settings, batch: dict[str, Any] | None, run_started_at: datetime | None, now: datetime | None = None
) -> dict[str, Any]:
    """Remove the batch files no run needs any more (runs after a successful merge, or a skipped run).

    After this run's merge, every batch extracted before this run's is staged or superseded: this run read
    from the committed checkpoints, so an earlier batch's records were staged by it or by this run. When the
    sensor found nothing after the checkpoints, the same holds for every batch extracted before the run
    started. Any batch older than ``CDC_BATCH_FILE_MAX_AGE_HOURS`` goes too. Returns counts and ids only.
    """
    settled_before = batch_files.batch_time(batch["batch_id"]) if batch else run_started_at
    if settled_before is not None and settled_before.tzinfo is None:
        settled_before = settled_before.replace(tzinfo=UTC)
    removed = batch_files.remove_finished(settings, settled_before=settled_before, now=now)
    return {**removed.to_json(), "batch_ids": removed.superseded + removed.expired}


@fails_without_retry
def reconcile(settings: Settings, dag_run_id: str) -> dict[str, Any]:
    """Compare the destination's row count with DynamoDB's exact item count, and record it."""
    dynamodb_count = aws.dynamodb_item_count(settings.aws_conn_id, settings.dynamodb_table)
    with _snowflake(settings) as snow:
        result = warehouse.record_reconciliation(
            snow, settings, mapping_for(settings), dag_run_id=dag_run_id, dynamodb_count=dynamodb_count
        )
    log.info("reconciliation: %s", result)
    if result["status"] != "MATCH":
        message = (
            f"destination holds {result['snowflake_count']} rows, DynamoDB {result['dynamodb_count']} items "
            f"(difference {result['difference']}); changes may still be in flight"
        )
        if settings.fail_on_mismatch:
            raise RuntimeError(message)
        log.warning(message)
    return result
