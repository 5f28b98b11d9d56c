"""Each ``claims_cdc`` run's note in the UI: records read, merged, dead-lettered, and the lag left behind.

A task cannot set its run's note through the Task SDK (Airflow 3.3's execution API reads a run's note but
has no call to write it; apache/airflow#64890), so the note is written the supported way: Airflow's REST
API, ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` with ``update_mask=note``, through the HTTP connection
``CDC_AIRFLOW_API_CONN_ID`` (the API server's address, a user allowed to edit runs, its password). Without
that connection the note is composed and returned, not written.

The note holds counts, seconds and states only, never a record's value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from claims_cdc import aws, kinesis_reader, warehouse
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import Settings
from claims_cdc.snowflake import session

log = logging.getLogger(__name__)

#: Records counted behind each shard for the note's lag (as ``make status`` counts them, with a smaller bound).
NOTE_RECORDS_BOUND = 1_000
#: Pauses before the note's calls are tried again, at once, after a server error (HTTP 5xx) or a dropped
#: connection. The API server answers 500 while its metadata database stays locked (SQLite under `make up`
#: gave up after 5 s once in 12 runs, 2026-11-26); the task's own retry would wait its retry delay (10 s
#: and more) while the next run waits for this one.
RETRY_PAUSES = (0.5, 1.0)


def compose(staged: dict[str, Any] | None, merged: dict[str, Any] | None, lag: dict[str, Any] | None) -> str:
    """The note's text, from the run's staging and merge results (XCom: counts) and the lag after it."""
    if staged is None:
        parts = ["no records (the stream stayed idle, or the run stopped before staging)"]
    else:
        parts = [f"records {int(staged.get('records', 0))}"]
        if merged is None:
            parts.append("not merged")
        else:
            parts.append(f"merged +{int(merged.get('inserted', 0))} inserted, ~{int(merged.get('updated', 0))} "
                         f"updated, -{int(merged.get('deleted', 0))} deleted")
        parts.append(f"dead-lettered {int(staged.get('rows_rejected', 0))}")
    if lag is None:
        parts.append("lag unknown")
    else:
        behind = f"{'>=' if lag['bounded'] else ''}{lag['records_behind']}"
        parts.append(f"lag {lag['seconds_behind']:.0f} s ({behind} records behind)")
    return " · ".join(parts)


def current_lag(settings: Settings, bound: int = NOTE_RECORDS_BOUND) -> dict[str, Any]:
    """Records readable after the stored checkpoints (summed over shards, each up to ``bound``) and the age
    of the oldest of them, in seconds."""
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        checkpoints = warehouse.read_checkpoints(snow, settings, load_mapping(settings.mapping_path))
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    now = datetime.now(UTC)
    records, seconds, bounded = 0, 0.0, False
    for shard in kinesis_reader.readable_shards(kinesis_reader.list_shards(kinesis, settings.kinesis_stream),
                                                checkpoints):
        checkpoint = checkpoints.get(shard["ShardId"])
        lag = kinesis_reader.shard_lag(kinesis, settings.kinesis_stream, shard["ShardId"],
                                       checkpoint.sequence_number if checkpoint else None, bound)
        records += lag.records
        bounded = bounded or lag.bounded
        seconds = max(seconds, lag.seconds_behind(now))
    return {"records_behind": records, "bounded": bounded, "seconds_behind": seconds}


def _api_base(conn: Any) -> str:
    host = (conn.host or "").rstrip("/")
    if "://" in host:
        return host
    scheme = conn.schema or "http"
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")


def write(settings: Settings, dag_id: str, run_id: str, note: str) -> bool:
    """PATCH the run's note through Airflow's REST API; False when ``CDC_AIRFLOW_API_CONN_ID`` is not defined.

    A server error or a dropped connection is tried again at once (:func:`_retried`); an HTTP error that
    remains raises (the task retries): the message names the status and the call, never the note.
    """
    import httpx
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(settings.airflow_api_conn_id)
    except AirflowNotFoundException:
        log.info("no connection %r (CDC_AIRFLOW_API_CONN_ID): the run's note is not written",
                 settings.airflow_api_conn_id)
        return False
    base = _api_base(conn)
    with httpx.Client(base_url=base, timeout=30) as client:
        token = _retried(lambda: client.post("/auth/token", json={"username": conn.login, "password": conn.password}))
        if token.status_code >= 300:
            raise RuntimeError(f"CDC_AIRFLOW_API_CONN_ID={settings.airflow_api_conn_id!r}: logging in to {base} "
                               f"answered HTTP {token.status_code}")
        answer = _retried(lambda: client.patch(
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
            params={"update_mask": "note"}, json={"note": note},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"}))
        if answer.status_code >= 300:
            raise RuntimeError(f"writing the note of run {run_id} through {base} answered HTTP {answer.status_code}")
    log.info("run %s: note written", run_id)
    return True


def _retried(call: Callable[[], Any]) -> Any:
    """``call()`` (an HTTP call; both of the note's are idempotent), tried again after each pause of
    :data:`RETRY_PAUSES` while it answers a server error or the connection fails; then its last answer
    (or error)."""
    import httpx

    for pause in (*RETRY_PAUSES, None):
        try:
            answer = call()
        except httpx.TransportError as error:
            if pause is None:
                raise
            reason = type(error).__name__
        else:
            if answer.status_code < 500 or pause is None:
                return answer
            reason = f"HTTP {answer.status_code}"
        log.info("the note's call to the API server failed (%s); trying again in %.1f s", reason, pause)
        time.sleep(pause)
    raise AssertionError("unreachable")


def note_run(settings: Settings, dag_id: str, run_id: str, staged: dict[str, Any] | None,
             merged: dict[str, Any] | None) -> dict[str, Any]:
    """Compose the run's note (the lag read now, after the merge) and write it; returns the note (counts)."""
    try:
        lag = current_lag(settings)
    except Exception as error:  # noqa: BLE001 - the note still says what the run did
        log.warning("lag not read for the note: %s", type(error).__name__)
        lag = None
    note = compose(staged, merged, lag)
    return {"note": note, "written": write(settings, dag_id, run_id, note)}
