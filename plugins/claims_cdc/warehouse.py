"""What the pipeline does in Snowflake: set-up, checkpoints, staging, merge, clean-up, reconciliation.

Every function takes a :class:`~claims_cdc.snowflake.Session` and returns ids and counts only, never rows.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from claims_cdc import load_files
from claims_cdc.kinesis_reader import Checkpoint
from claims_cdc.mapping import Mapping
from claims_cdc.settings import Settings
from claims_cdc.snowflake import Session
from claims_cdc.sql import load

log = logging.getLogger(__name__)


class CheckpointConflict(RuntimeError):
    """The stored checkpoints moved since this batch was read: someone else staged these records."""


class BatchImbalance(RuntimeError):
    """A batch's counts do not add up (read != staged + re-deliveries dropped + dead-lettered): a bug, never
    retried. Nothing of the batch is committed."""


@dataclass(frozen=True)
class StageCounts:
    batch_id: str
    rows_staged: int
    history_rows: int
    rows_rejected: int
    duplicates_dropped: int = 0
    already_staged: bool = False


@dataclass(frozen=True)
class MergeCounts:
    batches: int
    inserted: int
    updated: int
    deleted: int
    rows_cleaned: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def run_setup(session: Session, settings: Settings, mapping: Mapping) -> list[str]:
    """Run ``include/sql/setup.sql``; return the names of the statements skipped on the emulator."""
    skipped = []
    for statement in load("setup", settings, mapping).values():
        if session.execute(statement) is None:
            skipped.append(statement.name)
    return skipped


def run_teardown(session: Session, settings: Settings, mapping: Mapping) -> None:
    for statement in load("teardown", settings, mapping).values():
        session.execute(statement)


def read_checkpoints(session: Session, settings: Settings, mapping: Mapping) -> dict[str, Checkpoint]:
    stmt = load("stage", settings, mapping)["read_checkpoints"]
    # ``verified_at IS NULL`` is read as well: the fakesnow server returns a NULL timestamp as 1970-01-01.
    return {
        shard: Checkpoint(shard, seq, bool(closed), None if verified_null else verified_at)
        for shard, seq, closed, verified_at, verified_null in session.fetchall(stmt, [settings.kinesis_stream])
    }


def stage_batch(
    session: Session,
    settings: Settings,
    mapping: Mapping,
    *,
    batch_id: str,
    dag_run_id: str,
    shards: list[dict[str, Any]],
    records_read: int,
    rows: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    status: str = "STAGED",
    redriven: list[dict[str, str]] | None = None,
) -> StageCounts:
    """Stage rows held in memory (a re-drive's few): written as the batch's files, then :func:`stage_files`."""
    unique = unique_changes(rows)
    with load_files.private_folder() as folder:
        if unique:
            load_files.write_rows(folder, mapping, batch_id, unique)
        if rejected:
            load_files.write_rejected(folder, batch_id, rejected)
        return stage_files(session, settings, mapping, batch_id=batch_id, dag_run_id=dag_run_id, shards=shards,
                           folder=folder, records_read=records_read, rows=len(unique),
                           duplicates_dropped=len(rows) - len(unique), rejected=len(rejected), status=status,
                           redriven=redriven)


def stage_files(
    session: Session,
    settings: Settings,
    mapping: Mapping,
    *,
    batch_id: str,
    dag_run_id: str,
    shards: list[dict[str, Any]],
    folder: Path | None,
    records_read: int,
    rows: int,
    duplicates_dropped: int,
    rejected: int,
    status: str = "STAGED",
    redriven: list[dict[str, str]] | None = None,
    external_path: str | None = None,
    logged_positions: Any = None,
) -> StageCounts:
    """Stage one batch from its Parquet files and move its shards' checkpoints, in one transaction.

    ``folder`` (local) holds ``rows/*.parquet`` (the batch's unique rows) and ``rejected/*.parquet`` (its dead
    letters), PUT to the internal load stage; or, with ``external_path`` (the batch's folder under the
    external stage ``CDC_EXTERNAL_STAGE``), COPY INTO reads them there and ``folder`` is ``None``. ``rows``,
    ``duplicates_dropped`` and ``rejected`` are the counts written there. The rows land whole in the landing
    table and are split there into the staging rows and the history rows, in the same transaction
    (include/sql/stage.sql). Every batch
    balances: ``records_read`` = rows staged + re-deliveries dropped + dead letters, or
    :class:`BatchImbalance` is raised and nothing is committed. Safe to retry: a batch already in the batch
    log is not staged again, and a batch read from positions that have since moved is refused
    (:class:`CheckpointConflict`) instead of staged twice. ``logged_positions`` (a snapshot's, replay's or
    audit's description: mode, range, parts; ids and counts only) is what the batch log keeps instead of
    ``shards``; such a batch passes ``shards=[]`` and moves no checkpoint.
    """
    if records_read != rows + duplicates_dropped + rejected:
        raise BatchImbalance(
            f"batch {batch_id}: {records_read} records read but {rows} rows, {duplicates_dropped} re-deliveries "
            f"dropped and {rejected} dead letters; a record went missing between read and stage. Nothing was "
            "staged."
        )
    # Checked before the upload too: a retry after the commit leaves no files behind on the stage.
    if (done := _already_staged(session, settings, mapping, batch_id)) is not None:
        return done
    stmts = load("stage", settings, mapping)
    if external_path is not None:
        loads = load("load", settings, mapping, batch_id=batch_id, upload_folder="/", external_path=external_path)
    else:
        if folder is None:
            raise ValueError("stage_files needs the local folder of the batch's files, or their external_path")
        loads = load("load", settings, mapping, batch_id=batch_id, upload_folder=str(folder))
        # PUT is not transactional: the files go up first (a retry overwrites them), COPY INTO runs inside.
        if rows:
            session.execute(loads["put_rows"])
        if rejected:
            session.execute(loads["put_rejected"])
    with session.transaction():
        return _stage_in_transaction(session, settings, mapping, stmts, loads, batch_id=batch_id,
                                     dag_run_id=dag_run_id, shards=shards, records_read=records_read,
                                     rows=rows, dropped=duplicates_dropped, rejected=rejected, status=status,
                                     redriven=redriven, source=(
                                         f"external stage {settings.external_stage} (CDC_EXTERNAL_STAGE; its URL "
                                         f"must be CDC_BATCH_ROOT) under {external_path}/"
                                         if external_path is not None else f"internal stage {settings.load_stage}"),
                                     logged_positions=logged_positions)


def _stage_in_transaction(session: Session, settings: Settings, mapping: Mapping, stmts: dict, loads: dict, *,
                          batch_id: str, dag_run_id: str, shards: list[dict[str, Any]], records_read: int,
                          rows: int, dropped: int, rejected: int, status: str,
                          redriven: list[dict[str, str]] | None, source: str,
                          logged_positions: Any = None) -> StageCounts:
    if (done := _already_staged(session, settings, mapping, batch_id)) is not None:
        return done
    current = read_checkpoints(session, settings, mapping)
    for shard in shards:
        stored = current.get(shard["shard_id"])
        stored_seq = stored.sequence_number if stored else None
        if stored_seq != shard["start"]:
            raise CheckpointConflict(
                f"shard {shard['shard_id']}: checkpoint is {stored_seq}, batch {batch_id} was read after "
                f"{shard['start']}; another run staged these records. Re-run to read from the stored position."
            )
    staged = history = dead = 0
    if rows:
        # Landed whole, then split: the staging rows without the images, the history rows with them.
        session.execute(loads["copy_landing"])
        staged = session.rowcount(stmts["insert_staging"], [batch_id])
        history = session.rowcount(stmts["insert_history"], [batch_id])
        session.execute(stmts["delete_landed"], [batch_id])
    if rejected:
        session.execute(loads["copy_rejected"])
        dead = session.rowcount(stmts["stamp_rejected"], [batch_id])
    if redriven:
        session.rowcount(stmts["mark_redriven"], [batch_id, json.dumps(redriven)])
    if (staged, dead) != (rows, rejected):
        raise BatchImbalance(f"batch {batch_id}: {rows} rows and {rejected} dead letters written, "
                             f"{staged} and {dead} loaded from the {source}; rolled back")
    # Every shard read is rewritten, moved or not, so that verified_at is refreshed too.
    read = [{**s, "parent_shard_ids": ",".join(s["parent_shard_ids"])} for s in shards]
    if read:
        positions = json.dumps(read, separators=(",", ":"))
        session.rowcount(stmts["delete_checkpoints"], [settings.kinesis_stream, positions])
        session.rowcount(stmts["insert_checkpoints"], [settings.kinesis_stream, batch_id, positions])
    session.rowcount(
        stmts["insert_batch"],
        [batch_id, dag_run_id, settings.kinesis_stream, records_read, staged, history, rejected,
         json.dumps(shards if logged_positions is None else logged_positions, separators=(",", ":")), status,
         dropped],
    )
    log.info("batch %s staged: %d read = %d staged + %d re-deliveries dropped + %d dead-lettered (%d new in the "
             "history)", batch_id, records_read, staged, dropped, rejected, history)
    return StageCounts(batch_id, staged, history, rejected, dropped)


def read_dead_letters(session: Session, settings: Settings, mapping: Mapping, limit: int) -> list[dict[str, Any]]:
    """Dead letters not re-driven yet, oldest first: their position, exact bytes (base64) and arrival time."""
    stmts = load("stage", settings, mapping)
    return [
        {"batch_id": batch, "shard_id": shard, "sequence_number": sequence,
         "payload_base64": payload, "arrival_micros": None if arrival is None else int(arrival)}
        for batch, shard, sequence, payload, arrival in session.fetchall(stmts["read_dead_letters"], [limit])
    ]


def report(session: Session, settings: Settings, mapping: Mapping) -> dict[str, Any]:
    """Dead letters by reason and the attributes the mapping does not know, with counts (no values)."""
    stmts = load("report", settings, mapping)
    unmapped: dict[str, int] = {}
    for names, changes in session.fetchall(stmts["unmapped_attributes"]):
        for name in json.loads(names):
            unmapped[name] = unmapped.get(name, 0) + int(changes)
    reasons = [{"reason": reason, "records": int(total), "waiting": int(waiting or 0)}
               for reason, total, waiting in session.fetchall(stmts["dead_letter_reasons"])]
    return {"unmapped_attributes": dict(sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0]))),
            "dead_letters": reasons}


def _already_staged(session: Session, settings: Settings, mapping: Mapping, batch_id: str) -> StageCounts | None:
    done = staged_counts(session, settings, mapping, batch_id)
    if done is not None:
        log.info("batch %s was already staged (%s rows); nothing to do", batch_id, done.rows_staged)
    return done


def staged_counts(session: Session, settings: Settings, mapping: Mapping, batch_id: str) -> StageCounts | None:
    """The batch log's counts for a batch already staged; ``None`` when it never was."""
    done = session.fetchall(load("stage", settings, mapping)["read_batch"], [batch_id])
    if not done:
        return None
    _status, staged, history, rejected_count, duplicates = done[0]
    return StageCounts(batch_id, int(staged), int(history), int(rejected_count), int(duplicates or 0),
                       already_staged=True)


def accept_gap(session: Session, settings: Settings, mapping: Mapping, *, shard_id: str, operator: str) -> str:
    """Restart one shard at its TRIM_HORIZON after an operator accepted a retention gap; logged for audit."""
    stmts = load("stage", settings, mapping)
    current = read_checkpoints(session, settings, mapping).get(shard_id)
    restart = [{"shard_id": shard_id, "parent_shard_ids": "", "end": None, "drained": False, "verified_at": None}]
    positions = json.dumps([{"shard_id": shard_id, "previous": current.sequence_number if current else None,
                             "restart": "TRIM_HORIZON"}])
    batch_id = f"gap-{uuid.uuid4().hex}"
    with session.transaction():
        session.rowcount(stmts["delete_checkpoints"], [settings.kinesis_stream, json.dumps(restart)])
        session.rowcount(stmts["insert_checkpoints"], [settings.kinesis_stream, batch_id, json.dumps(restart)])
        session.rowcount(stmts["log_gap_accepted"], [batch_id, operator, settings.kinesis_stream, positions])
    log.warning("shard %s: retention gap accepted by %s; restarting at TRIM_HORIZON", shard_id, operator)
    return batch_id


def unique_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop re-deliveries within a batch: copies of a change (the same claim and content hash, under the
    same eventID or a new one). The eventID alone is not trusted: two different changes that share one are
    both kept."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["cdc_content_hash"] in seen:  # the hash covers the claim id, time, event, values and images
            continue
        seen.add(row["cdc_content_hash"])
        unique.append(row)
    return unique


def _merge_counts(cursor: Any) -> dict[str, int]:
    """MERGE returns one row whose columns are named 'number of rows inserted' and so on."""
    if cursor is None:
        return {}
    row = cursor.fetchone() or ()
    names = [d[0].lower() for d in cursor.description or ()]
    return {name.split()[-1]: int(value or 0) for name, value in zip(names, row, strict=False)}


def merge_pending(session: Session, settings: Settings, mapping: Mapping, merge_id: str) -> MergeCounts:
    """Merge every staged row into the destination, then delete exactly the rows merged.

    Safe to repeat at any point: each step applies only changes newer than what the target holds, and a
    repeat re-claims the rows an interrupted merge left behind.
    """
    stmts = load("merge", settings, mapping)
    claimed = session.rowcount(stmts["claim_staged"], [merge_id])
    if not claimed:
        return MergeCounts(0, 0, 0, 0, 0)
    session.execute(stmts["merge_tombstones"], [merge_id])
    counts = _merge_counts(session.execute(stmts["merge_destination"], [merge_id]))
    cleanup = load("cleanup", settings, mapping)
    with session.transaction():
        batches = session.rowcount(cleanup["mark_merged"], [merge_id])
        cleaned = session.rowcount(cleanup["cleanup_staging"], [merge_id])
    result = MergeCounts(
        batches=batches,
        inserted=counts.get("inserted", 0),
        updated=counts.get("updated", 0),
        deleted=counts.get("deleted", 0),
        rows_cleaned=cleaned,
    )
    log.info("merge %s: %s", merge_id, result.to_json())
    return result


def record_reconciliation(
    session: Session, settings: Settings, mapping: Mapping, *, dag_run_id: str, dynamodb_count: int
) -> dict[str, Any]:
    stmts = load("reconcile", settings, mapping)
    snowflake_count = int(session.fetchall(stmts["count_destination"])[0][0])
    difference = snowflake_count - dynamodb_count
    status = "MATCH" if difference == 0 else "MISMATCH"
    session.rowcount(
        stmts["insert_reconciliation"],
        [dag_run_id, settings.dynamodb_table, dynamodb_count, snowflake_count, difference, status],
    )
    return {"dynamodb_count": dynamodb_count, "snowflake_count": snowflake_count, "difference": difference,
            "status": status}
