"""The destination table as an Airflow Asset: what the merge publishes and downstream DAGs schedule on.

Its URI follows the Snowflake provider's asset convention (``airflow.providers.snowflake.assets.snowflake``):
``snowflake://<account>/<database>/<schema>/<table>``, built from the settings. An asset event's extra holds
the merge's counts (rows inserted, updated, deleted): never a record's value.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from claims_cdc.settings import Settings

#: The merge's counts an asset event carries (claims_cdc.warehouse.MergeCounts).
EVENT_COUNTS = ("inserted", "updated", "deleted", "batches")


def destination_asset(settings: Settings) -> Asset:
    """``snowflake://<CDC_SNOWFLAKE_ACCOUNT>/<database>/<schema>/<destination table>``."""
    return Asset(uri=f"snowflake://{settings.snowflake_account}/{settings.database}/{settings.schema}/"
                     f"{settings.dest_table}")


def merge_event_extra(counts: dict[str, Any], dag_run_id: str) -> dict[str, Any]:
    """The extra of the destination's asset event after a merge: its counts and the run, nothing else."""
    return {**{key: int(counts.get(key, 0)) for key in EVENT_COUNTS}, "dag_run_id": dag_run_id}
