"""What the side DAG files (``claims_cdc_snapshot``, ``claims_cdc_replay``, ``claims_cdc_audit``) share: the
arguments of their ``@dag`` and the run id their batches record.

Light on purpose: the DAG files import it at parse time (settings, the alert callback and Airflow's SDK only).
"""

from __future__ import annotations

from typing import Any

import pendulum

from claims_cdc.alerts import side_run_failed
from claims_cdc.settings import Settings


def side_dag_arguments(settings: Settings, doc_md: str | None, tags: list[str], **overrides: Any) -> dict[str, Any]:
    """The ``@dag`` arguments a side DAG shares with the others (its ``schedule`` it gives itself): one run at a
    time, its tasks' retries from the settings, and one alert per failed run (DAG, run, reason, link: never
    record content) to the alert channels. ``overrides`` adds or replaces any of them (``params``, ...)."""
    return {
        "start_date": pendulum.datetime(2025, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "doc_md": doc_md,
        "tags": tags,
        "on_failure_callback": side_run_failed,
        "default_args": settings.task_defaults(),
        **overrides,
    }


def side_run_id() -> str:
    """The running task's DAG run as a side batch records it: ``<dag_id>.<run_id>`` (the live DAG's batches
    record the bare run id)."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    return f"{context['dag'].dag_id}.{context['run_id']}"
