"""The pipeline's status at a glance (``python -m claims_cdc.admin status``, ``make status``).

A status is a dict of sections, each collected by one function and formatted by another (:data:`SECTIONS`),
so a new section is one entry. Everything shown is an id, a position, a time, a count, a reason or a state:
never a record's value. Reads only: no checkpoint moves, no record is consumed (Kinesis is looked at with
GetRecords from the stored positions, as the sensor does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from claims_cdc import aws, kinesis_reader, warehouse
from claims_cdc.mapping import Mapping
from claims_cdc.settings import Settings
from claims_cdc.snowflake import Session
from claims_cdc.sql import load

log = logging.getLogger(__name__)

#: Records counted behind a shard's position, at most: a count beyond it shows as "at least" this many.
#: It bounds the status's reads (one GetRecords per 10,000 records, 5 a second per shard).
RECORDS_BEHIND_BOUND = 10_000


@dataclass
class StatusContext:
    """What the collectors read from: the settings, one Snowflake session (opened on first use, by
    ``open_snow``), one Kinesis client, the time."""

    settings: Settings
    mapping: Mapping
    open_snow: Callable[[], Session]
    kinesis: Any
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    records_bound: int = RECORDS_BEHIND_BOUND
    _snow: Session | None = None
    _snow_error: Exception | None = None

    @property
    def snow(self) -> Session:
        """The session, opened once; when it cannot be opened, every section that needs it is unavailable
        (with the same error) and the others are still shown."""
        if self._snow_error is not None:
            raise self._snow_error
        if self._snow is None:
            try:
                self._snow = self.open_snow()
            except Exception as error:
                self._snow_error = error
                raise
        return self._snow


@dataclass(frozen=True)
class Section:
    title: str
    collect: Callable[[StatusContext], Any]
    format: Callable[[Any], list[str]]


# --- collectors: each returns plain JSON-able data (times as aware datetimes, turned into ISO text) ---


def _utc(value: datetime | None) -> datetime | None:
    """Snowflake's TIMESTAMP_NTZ values are UTC (the pipeline writes SYSDATE())."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def collect_shards(ctx: StatusContext) -> list[dict[str, Any]]:
    """Per shard: state (open, closed, retired, or expired from the stream), stored position, lag."""
    settings = ctx.settings
    checkpoints = warehouse.read_checkpoints(ctx.snow, settings, ctx.mapping)
    listed = {s["ShardId"]: s for s in kinesis_reader.list_shards(ctx.kinesis, settings.kinesis_stream)}
    shards = []
    for shard_id in sorted(set(listed) | set(checkpoints)):
        checkpoint = checkpoints.get(shard_id)
        position = checkpoint.sequence_number if checkpoint else None
        entry: dict[str, Any] = {"shard_id": shard_id, "position": position, "records_behind": 0,
                                 "records_behind_bounded": False, "seconds_behind": 0.0,
                                 "millis_behind_latest": None, "oldest_unread_arrival": None}
        if checkpoint is not None and checkpoint.closed:
            entry["state"] = "retired"  # read to its end and retired by a run: nothing more to read
        elif shard_id not in listed:
            entry["state"] = "expired"  # no longer in the stream, not read to its end (see CheckpointGap)
        else:
            entry["state"] = "closed" if "EndingSequenceNumber" in listed[shard_id].get(
                "SequenceNumberRange", {}) else "open"
            lag = kinesis_reader.shard_lag(ctx.kinesis, settings.kinesis_stream, shard_id, position,
                                           ctx.records_bound)
            entry.update(records_behind=lag.records, records_behind_bounded=lag.bounded,
                         seconds_behind=round(lag.seconds_behind(ctx.now), 1),
                         millis_behind_latest=lag.millis_behind_latest, oldest_unread_arrival=lag.oldest_arrival)
        shards.append(entry)
    return shards


def collect_last_batch(ctx: StatusContext) -> dict[str, Any] | None:
    rows = ctx.snow.fetchall(load("status", ctx.settings, ctx.mapping)["last_batch"])
    if not rows:
        return None
    (batch_id, run_id, status, staged_at, merged_at, read, staged, dropped, rejected, history,
     not_merged) = rows[0]
    return {"batch_id": batch_id, "dag_run_id": run_id, "status": status, "staged_at": _utc(staged_at),
            "merged_at": None if not_merged else _utc(merged_at), "records_read": int(read or 0),
            "rows_staged": int(staged or 0), "duplicates_dropped": int(dropped or 0),
            "rows_rejected": int(rejected or 0), "history_rows": int(history or 0)}


def change_time(change_order: str | None) -> datetime | None:
    """The change's own time from its order key (``<micros, 20 digits>.<sequence number>``)."""
    if not change_order:
        return None
    micros = int(change_order.split(".", 1)[0])
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def collect_backlog(ctx: StatusContext) -> dict[str, Any]:
    rows, claimed, oldest_order, oldest_loaded = ctx.snow.fetchall(
        load("status", ctx.settings, ctx.mapping)["staging_backlog"])[0]
    rows = int(rows or 0)
    oldest = change_time(oldest_order) if rows else None
    return {"rows": rows, "claimed_by_merge": int(claimed or 0), "oldest_change_at": oldest,
            "oldest_change_age_seconds": round((ctx.now - oldest).total_seconds(), 1) if oldest else None,
            "oldest_staged_at": _utc(oldest_loaded) if rows else None}


def collect_dead_letters(ctx: StatusContext) -> list[dict[str, Any]]:
    rows = ctx.snow.fetchall(load("report", ctx.settings, ctx.mapping)["dead_letter_reasons"])
    return [{"reason": reason, "records": int(n), "waiting": int(waiting)} for reason, n, waiting in rows]


def collect_last_reconciliation(ctx: StatusContext) -> dict[str, Any] | None:
    rows = ctx.snow.fetchall(load("status", ctx.settings, ctx.mapping)["last_reconciliation"])
    if not rows:
        return None
    checked_at, run_id, dynamodb, snowflake, difference, status = rows[0]
    return {"checked_at": _utc(checked_at), "dag_run_id": run_id, "dynamodb_count": int(dynamodb),
            "snowflake_count": int(snowflake), "difference": int(difference), "status": status}


# --- formatters: lines of text per section ---


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def format_shards(shards: list[dict[str, Any]]) -> list[str]:
    if not shards:
        return ["  no shard listed and no checkpoint stored"]
    lines = [f"  {'shard':<22} {'state':<8} {'records behind':>14} {'seconds behind':>14}  position (checkpoint)"]
    for s in shards:
        behind = f"{'>=' if s['records_behind_bounded'] else ''}{s['records_behind']}"
        lines.append(f"  {s['shard_id']:<22} {s['state']:<8} {behind:>14} {s['seconds_behind']:>14.1f}  "
                     f"{s['position'] or 'none yet (reads from TRIM_HORIZON)'}")
    return lines


def format_last_batch(batch: dict[str, Any] | None) -> list[str]:
    if batch is None:
        return ["  none yet"]
    if batch["merged_at"]:
        merged = f"merged {_when(batch['merged_at'])}"
    elif not batch["rows_staged"]:  # only dead letters or re-deliveries: the merge marks batches it merged rows of
        merged = "no rows to merge"
    else:
        merged = "not merged yet"
    return [
        f"  {batch['batch_id']} ({batch['status']}), run {batch['dag_run_id']}",
        f"  staged {_when(batch['staged_at'])}, {merged}",
        (f"  records read {batch['records_read']} = staged {batch['rows_staged']} + re-deliveries dropped "
        f"{batch['duplicates_dropped']} + dead-lettered {batch['rows_rejected']}; new history rows "
        f"{batch['history_rows']}"),
    ]


def format_backlog(backlog: dict[str, Any]) -> list[str]:
    if not backlog["rows"]:
        return ["  0 rows waiting to be merged"]
    claimed = f" ({backlog['claimed_by_merge']} claimed by a merge in progress)" if backlog["claimed_by_merge"] else ""
    return [f"  {backlog['rows']} rows waiting to be merged{claimed}",
            (f"  oldest change {_when(backlog['oldest_change_at'])} ({backlog['oldest_change_age_seconds']:.1f} s ago),"
            f" staged {_when(backlog['oldest_staged_at'])}")]


def format_dead_letters(letters: list[dict[str, Any]]) -> list[str]:
    if not letters:
        return ["  none"]
    return [f"  {'records':>8} {'waiting':>8}  reason"] + [
        f"  {d['records']:>8} {d['waiting']:>8}  {d['reason']}" for d in letters]


def format_last_reconciliation(rec: dict[str, Any] | None) -> list[str]:
    if rec is None:
        return ["  none yet"]
    return [(f"  {_when(rec['checked_at'])}: {rec['status']}, destination {rec['snowflake_count']} rows, DynamoDB "
            f"{rec['dynamodb_count']} items (difference {rec['difference']}), run {rec['dag_run_id']}")]


def format_open_alerts(alerts: list[dict[str, Any]]) -> list[str]:
    """Open alerts as ``claims_cdc.alerts.open_alerts(settings)`` lists them (kind, opened_at, summary)."""
    if not alerts:
        return ["  none"]
    return [f"  {a['kind']:<14} since {a['opened_at']}  {a['summary']}" for a in alerts]


def collect_open_alerts(ctx: StatusContext) -> list[dict[str, Any]]:
    """The open incidents, from Airflow's metadata database (where they live: see :mod:`claims_cdc.alerts`)."""
    from claims_cdc.alerts import open_alerts

    return open_alerts(ctx.settings)


#: The sections, in the order shown.
SECTIONS: dict[str, Section] = {
    "shards": Section("shards (position: the stored checkpoint; seconds behind: the age of the oldest unread "
                      "record)", collect_shards, format_shards),
    "last_batch": Section("last batch (batch log)", collect_last_batch, format_last_batch),
    "staging_backlog": Section("staging backlog (staged, not merged yet)", collect_backlog, format_backlog),
    "dead_letters": Section("dead letters by reason", collect_dead_letters, format_dead_letters),
    "last_reconciliation": Section("last reconciliation", collect_last_reconciliation, format_last_reconciliation),
    "open_alerts": Section("open alerts (one per incident; see the README's Operating it)", collect_open_alerts,
                           format_open_alerts),
}


class SectionUnavailable(dict):
    """A section that could not be read: its error's class (and, for the pipeline's own errors, their message,
    which never holds a value)."""


def _unavailable(error: Exception) -> SectionUnavailable:
    from claims_cdc.snowflake import SnowflakeObjectMissing, StatementFailed

    detail = str(error) if isinstance(error, StatementFailed | SnowflakeObjectMissing) else None
    return SectionUnavailable(unavailable=type(error).__name__, detail=detail)


def collect(ctx: StatusContext, sections: dict[str, Section] | None = None) -> dict[str, Any]:
    """Every section's data; a section that fails shows as unavailable (the others are still shown)."""
    status: dict[str, Any] = {"generated_at": ctx.now, "stream": ctx.settings.kinesis_stream,
                              "records_bound": ctx.records_bound,
                              "destination": f"{ctx.settings.database}.{ctx.settings.schema}.{ctx.settings.dest_table}",
                              "sections": {}}
    for name, section in (sections or SECTIONS).items():
        try:
            status["sections"][name] = section.collect(ctx)
        except Exception as error:  # noqa: BLE001 - one unreadable section must not hide the others
            log.warning("status section %s unavailable: %s", name, type(error).__name__)
            status["sections"][name] = _unavailable(error)
    return status


def read_status(settings: Settings, mapping: Mapping, open_snow: Callable[[], Session],
                records_bound: int = RECORDS_BEHIND_BOUND) -> dict[str, Any]:
    """The status, read through the pipeline's own connections: Snowflake through ``open_snow`` (called once,
    when a section first needs it), Kinesis through the Amazon provider's hook."""
    ctx = StatusContext(settings, mapping, open_snow, aws.kinesis_client(settings.aws_conn_id),
                        records_bound=records_bound)
    return collect(ctx)


def unavailable_sections(status: dict[str, Any]) -> list[str]:
    return [name for name, value in status["sections"].items() if isinstance(value, SectionUnavailable)]


def format_status(status: dict[str, Any], sections: dict[str, Section] | None = None) -> str:
    sections = sections or SECTIONS
    lines = [(f"claims-cdc status at {_when(status['generated_at'])}: stream {status['stream']} -> "
             f"{status['destination']}; records behind counted up to {status['records_bound']} per shard")]
    for name, value in status["sections"].items():
        section = sections.get(name)
        lines += ["", section.title if section else name]
        if isinstance(value, SectionUnavailable):
            lines.append(f"  unavailable: {value['unavailable']}" + (f" ({value['detail']})" if value["detail"] else ""))
        else:
            lines += section.format(value) if section else [f"  {value}"]
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, default=_json_default)
