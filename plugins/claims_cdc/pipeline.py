"""The bodies of the ``claims_cdc`` tasks, as plain functions of settings and run identity.

Each step hands the next one a small manifest (ids, paths, positions, counts) and never rows: records
travel through batch files (:mod:`claims_cdc.batch_files`) and Snowflake. Every step is safe to retry.
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from queue import Full, Queue
from typing import Any, ParamSpec, Self, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from claims_cdc import aws, batch_files, kinesis_reader, load_files, warehouse
from claims_cdc.kinesis_reader import (
    Checkpoint,
    CheckpointGap,
    ShardTask,
    StreamNotFound,
    check_retention,
    has_records,
    plan_shards,
    retention_hours,
)
from claims_cdc.mapping import Mapping, load_mapping
from claims_cdc.settings import ConfigError, Settings
from claims_cdc.snowflake import Session, SnowflakeObjectMissing, session
from claims_cdc.transform import SourceRecord, TimeRules, transform_records

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")

#: Records transformed and written to a shard's Parquet file at a time (one row group): a shard's task holds
#: one Kinesis page of raw records (up to CDC_GET_RECORDS_LIMIT), the next one being read, and this many rows.
ROW_GROUP_RECORDS = 2_000

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
def plan(settings: Settings, dag_run_id: str, max_records: int, started_at: datetime | None) -> list[dict[str, Any]]:
    """The run's batch: which shards to read, each from its stored checkpoint, with its share of the cap.

    One entry per shard (the DAG maps the read over them): the batch's id and folder, the stream's retention,
    the run's start (records that arrive later wait for the next run), and the shard's task. Fails at once
    (:class:`CheckpointGap`) when records after a checkpoint may have expired unread.
    """
    if max_records < 1:
        raise ConfigError(f"max_records={max_records} must be at least 1")
    checkpoints = stored_checkpoints(settings)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    hours = retention_hours(kinesis, settings.kinesis_stream)
    check_retention(kinesis, settings.kinesis_stream, checkpoints, hours=hours)
    tasks = plan_shards(kinesis, settings.kinesis_stream, checkpoints, max_records)
    batch_id = batch_files.new_batch_id()
    batch = {"batch_id": batch_id, "uri": batch_files.batch_uri(settings, dag_run_id, batch_id),
             "retention_hours": hours, "started_at": started_at.isoformat() if started_at else None}
    log.info("batch %s: %d shard(s) to read, %s", batch_id, len(tasks),
             ", ".join(f"{t.shard_id} up to {t.share}" for t in tasks))
    return [{**batch, **task.to_json()} for task in tasks]


def time_rules(settings: Settings, batch: dict[str, Any]) -> TimeRules:
    """The plausibility window of a change's own time, for a batch read from a stream of this retention."""
    return TimeRules(retention_hours=int(batch.get("retention_hours") or 24),
                     max_skew_seconds=settings.max_clock_skew_seconds)


@fails_without_retry
def read_shard(settings: Settings, shard: dict[str, Any]) -> dict[str, Any]:
    """Read one shard of the batch and transform its records as they come, into the batch's Parquet files.

    Each record is decoded once (:func:`claims_cdc.transform.to_row`) and written once, in the format the
    load uses: page by page into ``rows/<shard>.parquet`` (unique changes) and ``rejected/<shard>.parquet``
    (dead letters with their reason), so memory holds one page, whatever the backlog. A re-delivery of a
    change already read in this shard's batch is dropped and counted. Safe to retry: the files are written
    anew from the same checkpoint. Returns the shard's positions and counts, never records.
    """
    task = ShardTask.from_json(shard)
    started_at = datetime.fromisoformat(shard["started_at"]) if shard.get("started_at") else None
    progress = None
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    with PartWriter(settings, mapping_for(settings), time_rules(settings, shard), shard["batch_id"], shard["uri"],
                    task.shard_id) as part:
        pages = kinesis_reader.read_shard(kinesis, settings.kinesis_stream, task, settings.get_records_limit,
                                          started_at)
        for page, state in _read_ahead(pages):
            progress = state
            part.write(page)
    assert progress is not None  # read_shard always yields its final progress
    done = {**progress.to_json(), "batch_id": shard["batch_id"], "uri": shard["uri"],
            "retention_hours": shard["retention_hours"], "rows": part.rows, "duplicates_dropped": part.dropped,
            "rejected": part.rejected}
    log.info("batch %s shard %s: %d records after %s up to %s%s: %d rows, %d re-deliveries dropped, %d rejected",
             shard["batch_id"], task.shard_id, progress.records, progress.start, progress.end,
             " (drained)" if progress.drained else "", part.rows, part.dropped, part.rejected)
    return done


class PartWriter:
    """One part of a batch (a live shard's read, a side batch's part), transformed as its records come into
    ``rows/<part>.parquet`` (unique changes) and ``rejected/<part>.parquet`` (dead letters with their reason).

    Records are transformed and written :data:`ROW_GROUP_RECORDS` at a time, so memory holds one page and one
    row group, whatever the part's size. A change already written in this part (the same content hash, under
    the same or a new eventID) is dropped and counted. The part's files of a killed try are removed first:
    a retry writes them anew. ``settings`` decides where the files go (the side batches' root for those).
    """

    def __init__(self, settings: Settings, mapping: Mapping, rules: TimeRules, batch_id: str, uri: str,
                 part_id: str):
        self._mapping, self._rules, self._batch_id = mapping, rules, batch_id
        files = {kind: batch_files.shard_file(uri, kind, part_id) for kind in ("rows", "rejected")}
        for file in files.values():  # a killed try's files
            batch_files.remove_file(settings, file)
        self._rows = load_files.ParquetSink(load_files.row_schema(mapping),
                                            lambda: batch_files.open_for_write(settings, files["rows"]))
        self._rejected = load_files.ParquetSink(load_files.REJECTED_SCHEMA,
                                                lambda: batch_files.open_for_write(settings, files["rejected"]))
        self._seen: set[str] = set()
        self.records = self.dropped = 0

    @property
    def rows(self) -> int:
        return self._rows.rows

    @property
    def rejected(self) -> int:
        return self._rejected.rows

    def write(self, records: list[SourceRecord]) -> None:
        self.records += len(records)
        for start in range(0, len(records), ROW_GROUP_RECORDS):  # rows are held a row group at a time
            result = transform_records(records[start:start + ROW_GROUP_RECORDS], self._mapping, self._rules)
            unique = []
            for row in result.rows:
                if row["cdc_content_hash"] in self._seen:  # the same change again (same or new eventID)
                    self.dropped += 1
                    continue
                self._seen.add(row["cdc_content_hash"])
                unique.append(row)
            self._rows.write(load_files.rows_table(self._mapping, self._batch_id, unique))
            self._rejected.write(load_files.rejected_table(self._batch_id, result.rejected))
            for bad in result.rejected:
                log.warning("rejected %s at %s: %s", bad["shard_id"], bad["sequence_number"], bad["reason"])

    def close(self) -> None:
        try:
            self._rows.close()
        finally:
            self._rejected.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _read_ahead(pages: Iterator[_T]) -> Iterator[_T]:
    """``pages``, with the next one fetched in a thread while the caller handles the current one.

    Kinesis answers one page while this process transforms the last: the read and the transform overlap
    (two pages in memory at most). An error in the reading thread is raised here, in order.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=1)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        queue.put((True, page), timeout=0.5)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((False, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put((False, error))

    reader = threading.Thread(target=fetch, name="kinesis-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def _files_gone(batch: dict[str, Any]) -> Exception:
    """A cleared task of an old run whose batch files were removed: only a new plan and read can help."""
    return AirflowFailException(
        f"batch {batch['batch_id']}: its files were removed (a later run staged or re-read its records, or "
        f"they passed CDC_BATCH_FILE_MAX_AGE_HOURS); nothing was lost: clear this run from shard_plan "
        "to read again from the stored checkpoints"
    )


#: What the batch log keeps of each shard read (its counts ride along in the batch log's shard list).
_SHARD_KEYS = ("shard_id", "parent_shard_ids", "start", "end", "records", "drained", "verified_at", "rows",
               "duplicates_dropped", "rejected", "millis_behind_latest")


def batch_of(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's batch manifest from its shards' results: ids, positions and counts summed."""
    first = shards[0]
    return {"batch_id": first["batch_id"], "uri": first["uri"], "retention_hours": first["retention_hours"],
            "shards": [{key: s.get(key) for key in _SHARD_KEYS} for s in shards],
            **{key: sum(int(s[key]) for s in shards) for key in ("records", "rows", "duplicates_dropped",
                                                                  "rejected")}}


@fails_without_retry
def stage(settings: Settings, shards: list[dict[str, Any]], dag_run_id: str) -> dict[str, Any]:
    """Load the CDC and history tables from every shard's files and move the checkpoints, in one transaction."""
    batch = batch_of(list(shards))
    if not batch["records"] and not any(s["drained"] for s in batch["shards"]):
        log.info("batch %s is empty; nothing to stage", batch["batch_id"])
        return _with_counts(batch, warehouse.StageCounts(batch["batch_id"], 0, 0, 0))
    expected = [batch_files.shard_file(batch["uri"], kind, s["shard_id"])
                for s in batch["shards"] for kind in ("rows", "rejected") if s[kind]]
    with _snowflake(settings) as snow:
        mapping = mapping_for(settings)
        if not all(batch_files.batch_exists(settings, uri) for uri in expected):
            # A retry after this batch was staged and its files removed is done; any other case needs a new read.
            done = warehouse.staged_counts(snow, settings, mapping, batch["batch_id"])
            if done is None:
                raise _files_gone(batch)
            log.info("batch %s was already staged and its files removed; nothing to do", batch["batch_id"])
            return _with_counts(batch, done)
        counts_of = functools.partial(
            warehouse.stage_files, snow, settings, mapping, batch_id=batch["batch_id"], dag_run_id=dag_run_id,
            shards=batch["shards"], records_read=batch["records"], rows=batch["rows"],
            duplicates_dropped=batch["duplicates_dropped"], rejected=batch["rejected"])
        if settings.external_stage:
            # COPY INTO reads the files where the shard tasks wrote them: the stage's URL is the batch root.
            counts = counts_of(folder=None, external_path=batch_files.relative_path(settings, batch["uri"]))
        else:
            with batch_files.local_copy(settings, batch["uri"]) as folder:
                counts = counts_of(folder=folder)
    return _with_counts(batch, counts)


def run_batch(settings: Settings, dag_run_id: str, max_records: int, started_at: datetime | None = None,
              workers: int = 8) -> dict[str, Any]:
    """One run's work in this process, as the DAG does it: plan, the shards read concurrently, stage, merge.

    For tools and tests; the DAG runs the same functions as tasks (the shards as mapped tasks).
    """
    shards = plan(settings, dag_run_id, max_records, started_at)
    if not shards:
        return {"records": 0, "merged": None}
    staged = stage(settings, read_shards(settings, shards, workers), dag_run_id)
    return {**staged, "merged": merge(settings, staged, dag_run_id)}


def read_shards(settings: Settings, shards: list[dict[str, Any]], workers: int = 8) -> list[dict[str, Any]]:
    """Every planned shard read at once, one thread each (as the DAG's mapped tasks run side by side)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard") as pool:
        return list(pool.map(lambda shard: read_shard(settings, shard), shards))


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

    After this run's merge, every batch planned before this run's is staged or superseded: this run read
    from the committed checkpoints, so an earlier batch's records were staged by it or by this run. When the
    sensor found nothing after the checkpoints, the same holds for every batch planned before the run
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
