"""
# claims_cdc_snapshot

The initial load: every item of the DynamoDB table **InsuranceClaims** into `openflow_insclaim_dest_tbl`,
for claims that existed before the table's Kinesis streaming destination was enabled (or to reseed after an
outage longer than the stream's retention).

| task | what it produces |
|---|---|
| `snapshot_parts` | `method=export` (default): an `ExportTableToPointInTime` of the table to `CDC_SNAPSHOT_BUCKET` (no read capacity used), waited for; one part per data file. `method=scan`: one part per parallel Scan segment |
| `snapshot_batch` | one mapped task per part: its items, as change records stamped with the export's time (or the Scan's start), through the stream's transform into Parquet files |
| `staged_snapshot` | the parts PUT and loaded with COPY INTO into the staging table and the history, in one transaction; no checkpoint moves; the batch log keeps mode, time and counts |
| `merged_snapshot` | the ordered merge: a stream change newer than the snapshot's time wins, an older one loses, and a claim deleted after it stays deleted (its tombstone is newer) |

Safe while `claims_cdc` runs (no checkpoint is touched, its files stay out of the live sweeper's reach, and
either DAG's merge applies only what is newer), and safe to run twice (a second snapshot rewrites nothing
that has not changed since). Manual runs only. Records never travel through XCom; no task logs claim content.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from claims_cdc.mapping import load_mapping
from claims_cdc.settings import load_settings
from claims_cdc.side_dags import side_dag_arguments, side_run_id

SETTINGS = load_settings()
load_mapping(SETTINGS.mapping_path)


@dag(schedule=None, **side_dag_arguments(
    SETTINGS, __doc__, ["cdc", "dynamodb", "snowflake", "phi", "snapshot"],
    params={
        "method": Param(
            "export",
            type="string",
            enum=["export", "scan"],
            title="How to read the table",
            description="export: ExportTableToPointInTime to CDC_SNAPSHOT_BUCKET (needs point-in-time recovery "
            "on the table; costs no read capacity). scan: a parallel Scan, one mapped task per segment "
            "(consumes read capacity).",
        ),
        "segments": Param(
            4,
            type="integer",
            minimum=1,
            maximum=1_000,
            title="Scan segments",
            description="With method=scan: TotalSegments of the parallel Scan, one mapped task each.",
        ),
    },
))
def claims_cdc_snapshot():
    @task(execution_timeout=timedelta(hours=2))
    def snapshot_parts() -> list[dict]:
        """Starts the export and waits for it (or splits the Scan): one part per data file or segment."""
        from claims_cdc.snapshot import plan_snapshot

        context = get_current_context()
        params = context["params"]
        requested_at = getattr(context.get("dag_run"), "start_date", None) or pendulum.now("UTC")
        return plan_snapshot(SETTINGS, side_run_id(), str(params["method"]), int(params["segments"]),
                             requested_at - timedelta(seconds=1))

    @task(execution_timeout=timedelta(hours=1), map_index_template="{{ part_id }}",
          doc_md="Reads one export data file or Scan segment and transforms its items into the batch's files.")
    def snapshot_batch(part: dict) -> dict:
        from claims_cdc.snapshot import read_snapshot_part

        get_current_context()["part_id"] = part["part_id"]
        return read_snapshot_part(SETTINGS, part)

    @task(execution_timeout=timedelta(minutes=30))
    def staged_snapshot(parts: list[dict]) -> dict:
        """Loads every part into the staging and history tables in one transaction; logs it in the batch log."""
        from claims_cdc.snapshot import snapshot_description, stage_parts

        parts = list(parts)
        return stage_parts(SETTINGS, parts, side_run_id(), snapshot_description(parts))

    @task(execution_timeout=timedelta(minutes=30))
    def merged_snapshot(staged: dict) -> dict:
        """The ordered merge: changes newer than the snapshot's time win; deleted claims stay deleted."""
        from claims_cdc.snapshot import merge_side_batch

        return merge_side_batch(SETTINGS, staged, side_run_id())

    merged_snapshot(staged_snapshot(snapshot_batch.expand(part=snapshot_parts())))


claims_cdc_snapshot()
