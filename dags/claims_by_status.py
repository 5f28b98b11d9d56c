"""
# claims_by_status

An example downstream DAG: it runs whenever `claims_cdc` has merged changes into the destination (the
Asset `snowflake://<account>/<database>/<schema>/openflow_insclaim_dest_tbl` that `merged_counts`
publishes), and rebuilds the summary table **claims_by_status** (claims and total charge per claim status)
from the destination, in one transaction. Idempotent: a re-run or a clear rebuilds the same table.
The summary stays in Snowflake; the task logs and hands on counts only.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from claims_cdc.alerts import side_run_failed
from claims_cdc.assets import destination_asset
from claims_cdc.settings import load_settings

SETTINGS = load_settings()


@dag(
    schedule=[destination_asset(SETTINGS)],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "snowflake", "downstream"],
    # A failed run sends one alert (DAG, run, reason, link: never record content) to the alert channels.
    on_failure_callback=side_run_failed,
    default_args=SETTINGS.task_defaults(),
)
def claims_by_status():
    @task(execution_timeout=timedelta(minutes=10))
    def claims_by_status_summary() -> dict:
        """Rebuilds the claims-by-status table from the destination (created if missing), in one transaction."""
        from claims_cdc.summaries import rebuild_claims_by_status

        return rebuild_claims_by_status(SETTINGS)

    claims_by_status_summary()


claims_by_status()
