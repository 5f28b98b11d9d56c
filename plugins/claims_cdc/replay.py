"""The bodies of the ``claims_cdc_replay`` tasks: re-read the stream from a time, rebuild the destination
from the event history as of a time, or re-drive the dead letters.

A stream replay reads each chosen shard from AT_TIMESTAMP through the live path (the same read, transform,
de-duplication, load and ordered merge) as a side batch (:mod:`claims_cdc.snapshot`): the live checkpoints
never move. Replaying what is already merged changes nothing: the history keeps a change once (by its
content hash), and the merge applies only what is newer than the destination's row. Every run records its
mode, range and counts in the batch log. Ids, positions and counts only; no claim content is logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from claims_cdc import aws, batch_files, kinesis_reader
from claims_cdc.dynamodb_reader import micros_of
from claims_cdc.mapping import load_mapping
from claims_cdc.pipeline import fails_without_retry, read_shard, redrive
from claims_cdc.settings import ConfigError, Settings
from claims_cdc.snapshot import log_side_run, new_side_batch, side_settings
from claims_cdc.snowflake import session
from claims_cdc.sql import load
from claims_cdc.transform import change_order

log = logging.getLogger(__name__)

MODES = ("stream", "rebuild", "redrive")


def parse_time(value: str | datetime | None, name: str, default: datetime) -> datetime:
    """A Param's ISO-8601 time (naive: UTC), or ``default`` when it is empty; ConfigError names the Param."""
    if value is None or value == "":
        return default
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not an ISO-8601 time (e.g. 2026-11-26T01:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- (a) the stream, again from a time ------------------------------------------------------------------

@fails_without_retry
def plan_stream_replay(settings: Settings, dag_run_id: str, from_time: datetime, shard_ids: list[str] | None,
                       max_records: int, started_at: datetime | None) -> list[dict[str, Any]]:
    """The shards to re-read from ``from_time`` (AT_TIMESTAMP), all or the chosen ones, each with its fair
    share of ``max_records``. Refused (naming the Param) when ``from_time`` lies in the future or before the
    stream's retention: those records are gone (rebuild from the history, or snapshot, instead)."""
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    hours = kinesis_reader.retention_hours(kinesis, settings.kinesis_stream)
    now = datetime.now(UTC)
    if from_time > now:
        raise ConfigError(f"from_time={from_time.isoformat()} is in the future")
    if from_time < now - timedelta(hours=hours):
        raise ConfigError(f"from_time={from_time.isoformat()} is older than the stream's retention ({hours} h): "
                          "those records are gone; use mode=rebuild (from the event history) or claims_cdc_snapshot")
    try:
        tasks = kinesis_reader.plan_replay_shards(kinesis, settings.kinesis_stream, shard_ids, max_records,
                                                  from_time.isoformat())
    except ValueError as error:
        raise ConfigError(f"shards: {error}") from None
    batch = new_side_batch(settings, dag_run_id)
    log.info("replay %s: %d shard(s) from %s", batch["batch_id"], len(tasks), from_time.isoformat())
    return [{**batch, "retention_hours": hours, "started_at": started_at.isoformat() if started_at else None,
             **task.to_json()} for task in tasks]


def read_replay_shard(settings: Settings, shard: dict[str, Any]) -> dict[str, Any]:
    """One shard from its replay time, read and transformed as a live shard is, into the side batch's files."""
    done = read_shard(side_settings(settings), shard)
    return {**done, "part_id": done["shard_id"], "from": shard["at_timestamp"]}


def stream_description(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """What the batch log keeps of a stream replay: its range and each shard's positions read."""
    first = next((s for s in shards if s), {})
    return {"mode": "replay", "from": first.get("from"),
            "shards": [{k: s.get(k) for k in ("shard_id", "start", "end", "records")} for s in shards if s]}


# --- (b) the destination, rebuilt from the history -----------------------------------------------------

@fails_without_retry
def rebuild(settings: Settings, dag_run_id: str, as_of: datetime) -> dict[str, Any]:
    """The destination and the tombstones as the event history says they were at ``as_of``, in one
    transaction; logged in the batch log. Returns counts only."""
    mapping = load_mapping(settings.mapping_path)
    statements = load("side", settings, mapping)
    bound = change_order(micros_of(as_of), "9" * 64)  # every change at or before as_of, whatever its position
    batch_id = f"rebuild-{batch_files.new_batch_id()}"
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow, snow.transaction():
        removed = snow.rowcount(statements["rebuild_clear_destination"])
        rows = snow.rowcount(statements["rebuild_destination"], [bound])
        snow.rowcount(statements["rebuild_clear_tombstones"])
        tombstones = snow.rowcount(statements["rebuild_tombstones"], [bound])
        counts = {"destination_rows_before": removed, "destination_rows": rows, "tombstones": tombstones}
        description = {"mode": "rebuild", "as_of": as_of.isoformat(), **counts}
        snow.rowcount(statements["log_side_run"], [batch_id, dag_run_id, settings.kinesis_stream, 0,
                                                   json.dumps(description, separators=(",", ":")), "REBUILT",
                                                   batch_id])
    log.info("rebuild %s as of %s: %s", batch_id, as_of.isoformat(), counts)
    return {"batch_id": batch_id, **description}


# --- (c) the dead letters, re-driven --------------------------------------------------------------------

def redrive_dead_letters(settings: Settings, dag_run_id: str, limit: int) -> dict[str, Any]:
    """:func:`claims_cdc.pipeline.redrive` (logged in the batch log as its REDRIVEN batch); a re-drive that
    found nothing to take is logged too."""
    if limit < 1:
        raise ConfigError(f"redrive_limit={limit} must be at least 1")
    result = redrive(settings, limit, dag_run_id)
    if not result["redriven"]:
        log_side_run(settings, result["batch_id"], dag_run_id, {"mode": "redrive", "limit": limit, "redriven": 0},
                     0, "REDRIVEN")
    return result
