"""How often a run reconciles: every scheduled run would count the whole DynamoDB table, and hold up the next.

Under ``@continuous`` the next run starts only once every task of the current one has ended, so a
reconciliation in each run (an exact DynamoDB item count and a Snowflake count, seconds on a large table)
lengthens every run and so the time from a write to its row being visible. A scheduled run therefore
reconciles only when ``CDC_RECONCILE_EVERY_SECONDS`` have passed since the last successful reconciliation
(Airflow's previous successful instance of the task); otherwise its task ends *skipped* at once, before any
client is imported. A run started by hand (a replay, a backfill, a person checking) always reconciles, and so
does every run with the setting at 0.

Pure rules on times and run types: no connection, no record content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from claims_cdc.settings import Settings

#: The run type of runs the scheduler starts (Airflow's ``DagRunType.SCHEDULED``); others always reconcile.
SCHEDULED = "scheduled"


def _is_scheduled(run_type: Any) -> bool:
    # DagRunType is a str Enum whose str() is "DagRunType.SCHEDULED": compare its value.
    return getattr(run_type, "value", run_type) == SCHEDULED


def reconciliation_skip_reason(settings: Settings, run_type: Any, last_reconciled: datetime | None,
                               now: datetime) -> str | None:
    """Why this run does not reconcile, or None when it does.

    :param run_type: the run's type (``scheduled``, ``manual``, ``backfill``, ...).
    :param last_reconciled: when the last successful reconciliation ended (aware), or None for never.
    :param now: the current time (aware).
    """
    every = settings.reconcile_every_seconds
    if every == 0 or not _is_scheduled(run_type) or last_reconciled is None:
        return None
    since = (now - last_reconciled).total_seconds()
    if since >= every:
        return None
    return (f"reconciled {since:.0f}s ago; a scheduled run reconciles at most once per "
            f"CDC_RECONCILE_EVERY_SECONDS={every}s (the next run is not held up by it)")


def last_successful_end(ti: Any) -> datetime | None:
    """When the previous successful instance of ``ti``'s task ended (its start if no end is recorded)."""
    from airflow.sdk import TaskInstanceState

    previous = ti.get_previous_ti(state=TaskInstanceState.SUCCESS)
    if previous is None:
        return None
    return previous.end_date or previous.start_date


def skip_reconciliation_reason(settings: Settings, context: Any, now: datetime) -> str | None:
    """:func:`reconciliation_skip_reason` for the running task's context (its DAG run and task instance).

    Asks Airflow for the previous successful reconciliation only for a scheduled run with a cadence set.
    """
    run_type = getattr(context.get("dag_run"), "run_type", None)
    if settings.reconcile_every_seconds == 0 or not _is_scheduled(run_type):
        return None
    return reconciliation_skip_reason(settings, run_type, last_successful_end(context["ti"]), now)
