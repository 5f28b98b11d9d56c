"""
# claims_cdc

Keeps the Snowflake copy of the DynamoDB table **InsuranceClaims** in sync, by micro-batch change data
capture from its Kinesis streaming destination **InsuranceClaimsStream**.

| task | what it produces |
|---|---|
| `stream_has_records` | waits, in the triggerer, until a shard has records after its checkpoint; skips the run when the stream stays idle |
| `shard_plan` | the shards to read, parents before children, each with its fair share of *max_records* |
| `shard_batch` | one mapped task per shard: its records after the checkpoint, flattened and renamed by `include/mapping/claims.json` as they are read, into the batch's Parquet files; bad records kept with their reason |
| `staged_batch` | every shard's rows PUT to a stage and loaded with COPY INTO, event history, new checkpoints: one Snowflake transaction |
| `merged_counts` | the latest change per claim merged into `openflow_insclaim_dest_tbl`; merged staging rows removed |
| `reconciliation` | destination row count against DynamoDB's exact item count, recorded in `cdc_reconciliation`; in a scheduled run at most once per `CDC_RECONCILE_EVERY_SECONDS` (300), skipped in between |
| `run_note` | the run's note in the UI: records read, merged, dead-lettered, and the lag left after it (counts only) |
| `removed_batch_files` | batch files of earlier runs (failed or killed ones too) once their records are staged or superseded, and any older than `CDC_BATCH_FILE_MAX_AGE_HOURS`; also runs when the sensor skips |
| `alerts_checked` | last, when nothing failed (also when the sensor skips): opens or closes the lag, dead-letter and drift alerts, and closes the failure alerts of earlier runs with one recovery message |

Runs follow `CDC_SCHEDULE` (default `@continuous`: a new run starts as soon as the last one ends, one at a
time). Replay and backfill are DAG runs: every step is idempotent, so clearing or re-running a run is safe.
A failed run loses nothing: the next run reads from the same committed checkpoints. After five failed
runs in a row the DAG pauses itself (`max_consecutive_failed_dag_runs`); unpause it once the cause is fixed.
Failure alerts (a task's retries spent, a failed run, the DAG pausing itself, a run past its deadline) go
to SNS (`CDC_ALERT_SNS_TOPIC_ARN`) and, when configured, Slack and e-mail: once per incident, never with
record content; see the README's *Operating it*.
Records never travel through XCom (ids, positions and counts only), and no task logs claim content.
Batch files (claims, PHI) are owner-only on `file://`; see the README's *Batch files*.

`merged_counts` publishes the destination as an Asset (`snowflake://<account>/<database>/<schema>/<table>`),
its event's extra holding the rows inserted, updated and deleted: downstream DAGs (such as
`claims_by_status`) schedule on it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, Param, dag, get_current_context, task

from claims_cdc.assets import destination_asset, merge_event_extra
from claims_cdc.mapping import load_mapping
from claims_cdc.sensors import KinesisStreamRecordsSensor
from claims_cdc.settings import load_settings

# Configuration errors fail the parse: a bad CDC_* setting, a malformed AIRFLOW_CONN_* variable for either
# connection, or a broken mapping file shows as this DAG's import error, naming the setting. (Local reads
# only: no connection is opened and no network is used here.) Inside a task, such errors fail the task
# without retries (claims_cdc.pipeline.fails_without_retry).
SETTINGS = load_settings()
load_mapping(SETTINGS.mapping_path)
#: The destination table, published by merged_counts after each merge (downstream DAGs schedule on it).
DESTINATION = destination_asset(SETTINGS)


#: After this many failed runs in a row the DAG pauses itself (and the `paused` alert is sent).
MAX_CONSECUTIVE_FAILED_RUNS = 5


def _alert_task_failed(context) -> None:
    """Every task's on_failure_callback: called on the worker once the task's retries are spent."""
    from claims_cdc.alerts import task_failed

    task_failed(SETTINGS, context)


def _alert_run_failed(context) -> None:
    """The DAG's on_failure_callback: run by the dag-processor when a run fails."""
    from claims_cdc.alerts import run_failed

    run_failed(SETTINGS, context, MAX_CONSECUTIVE_FAILED_RUNS)


def _run_id() -> str:
    return get_current_context()["run_id"]


def _task_started_at():
    """When this try of the task started: records that arrive later wait for the next run.

    Not the DAG run's start: under a deferrable sensor a run may wait minutes before records arrive.
    """
    return getattr(get_current_context().get("ti"), "start_date", None)


@dag(
    schedule=SETTINGS.schedule,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # Under @continuous a failing run is followed at once by the next: after five failed runs in a row
    # (each with its tasks' retries spent) the DAG pauses itself instead of looping, and waits for a person.
    max_consecutive_failed_dag_runs=MAX_CONSECUTIVE_FAILED_RUNS,
    on_failure_callback=_alert_run_failed,
    # A run still going CDC_RUN_DEADLINE_SECONDS after it was queued opens the `overrun` alert (the callback
    # runs in the triggerer); 0 turns it off.
    deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT,
                           interval=timedelta(seconds=SETTINGS.run_deadline_seconds),
                           callback=AsyncCallback("claims_cdc.alerts.run_overran"))
    if SETTINGS.run_deadline_seconds else None,
    # A stream has no time partitions to backfill: Airflow's backfill (`airflow backfill create`, the UI's
    # Backfill) is refused for any CDC_SCHEDULE, not only @continuous; claims_cdc_replay re-reads a window.
    allowed_run_types=["scheduled", "manual", "asset_triggered", "operator_triggered"],
    doc_md=__doc__,
    tags=["cdc", "dynamodb", "kinesis", "snowflake", "phi"],
    default_args={**SETTINGS.task_defaults(), "on_failure_callback": _alert_task_failed},
    params={
        "max_records": Param(
            SETTINGS.max_records,
            type="integer",
            minimum=1,
            maximum=10_000_000,
            title="Most records per run",
            description="Cap on the records one run reads from the stream, over all shards. "
            "The rest waits for the next run.",
        ),
        "sensor_timeout": Param(
            SETTINGS.sensor_timeout,
            type="integer",
            minimum=1,
            maximum=86_400,
            title="Seconds to wait for records",
            description="A run that finds no record within this time ends as skipped, not failed. "
            "The wait happens in the triggerer and holds no worker slot.",
        ),
    },
)
def claims_cdc():
    waiting = KinesisStreamRecordsSensor(
        task_id="stream_has_records",
        settings=SETTINGS,  # the stream and both connections default from it
        timeout="{{ params.sensor_timeout }}",
        poke_interval=SETTINGS.poke_interval,
        deferrable=SETTINGS.sensor_mode == "deferrable",
        mode="reschedule" if SETTINGS.sensor_mode == "reschedule" else "poke",
        doc_md="Looks for records after each shard's checkpoint without consuming them. Deferrable by "
        "default (`CDC_SENSOR_MODE`): the checkpoints are read once, then the triggerer polls Kinesis every "
        "`CDC_POKE_INTERVAL` seconds. Ends as *skipped* when nothing arrives within the run's `sensor_timeout`.",
    )

    @task(execution_timeout=timedelta(minutes=5))
    def shard_plan() -> list[dict]:
        """Which shards this run reads, each from its checkpoint, with its fair share of the cap."""
        from claims_cdc.pipeline import plan

        max_records = int(get_current_context()["params"]["max_records"])
        return plan(SETTINGS, _run_id(), max_records, started_at=_task_started_at())

    # One task per shard (dynamic task mapping): with the CeleryExecutor or KubernetesExecutor the shards
    # are read on as many workers. Each task's rendered name is its shard id.
    @task(execution_timeout=timedelta(minutes=15), map_index_template="{{ shard_id }}",
          doc_md="Reads one shard from its checkpoint and transforms its records as they come, into the batch's "
          "Parquet files; bad records are kept with their reason.")  # a mapped task takes no docstring as doc_md
    def shard_batch(shard: dict) -> dict:
        from claims_cdc.pipeline import read_shard

        get_current_context()["shard_id"] = shard["shard_id"]
        return read_shard(SETTINGS, shard)

    @task(execution_timeout=timedelta(minutes=15))
    def staged_batch(shards: list[dict]) -> dict:
        """Loads every shard's rows into the CDC and history tables and moves the checkpoints, in one
        transaction."""
        from claims_cdc.pipeline import stage

        return stage(SETTINGS, list(shards), _run_id())

    @task(execution_timeout=timedelta(minutes=15), outlets=[DESTINATION])
    def merged_counts(batch: dict) -> dict:
        """Merges the latest change per claim into the destination and cleans up exactly those rows. Publishes
        the destination's Asset, with the rows inserted, updated and deleted as the event's extra."""
        from claims_cdc.pipeline import merge

        counts = merge(SETTINGS, batch, _run_id())
        get_current_context()["outlet_events"][DESTINATION].extra = merge_event_extra(counts, _run_id())
        return counts

    @task(execution_timeout=timedelta(minutes=10))
    def reconciliation(merged: dict) -> dict:
        """Records the destination's row count against DynamoDB's exact item count. A scheduled run does so
        at most once per `CDC_RECONCILE_EVERY_SECONDS` (the next run waits for this task) and otherwise
        ends skipped at once; a run started by hand always reconciles."""
        from airflow.sdk.exceptions import AirflowSkipException

        from claims_cdc.cadence import skip_reconciliation_reason

        reason = skip_reconciliation_reason(SETTINGS, get_current_context(), pendulum.now("UTC"))
        if reason:
            raise AirflowSkipException(reason)
        from claims_cdc.pipeline import reconcile

        return reconcile(SETTINGS, _run_id())

    @task(trigger_rule="none_failed", execution_timeout=timedelta(minutes=10))
    def removed_batch_files(batch: dict | None) -> dict:
        """Removes the batch files no run needs any more: those of earlier runs (failed or killed ones
        included) once their records are staged or superseded, and any older than
        `CDC_BATCH_FILE_MAX_AGE_HOURS`. Runs after a successful merge, and in a run whose sensor skipped;
        not after a failure (the next run cleans up). Returns counts and batch ids only."""
        from claims_cdc.pipeline import remove_batch_files

        dag_run = get_current_context().get("dag_run")
        return remove_batch_files(SETTINGS, batch, getattr(dag_run, "start_date", None))

    @task(trigger_rule="none_failed", execution_timeout=timedelta(minutes=5))
    def alerts_checked(batch: dict | None) -> dict:
        """Runs last, when nothing failed (also in a run whose sensor skipped): opens or closes the lag,
        dead-letter and drift alerts (each once per incident, with one recovery message), and closes the
        failure, pause and overrun alerts of earlier runs. Returns numbers and alert kinds only."""
        from claims_cdc.alerts import check_run

        return check_run(SETTINGS, _run_id(), batch)

    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=5))
    def run_note() -> dict:
        """Writes the run's note in the UI: records read, merged, dead-lettered, and the lag left after the run
        (counts only), through Airflow's REST API (`CDC_AIRFLOW_API_CONN_ID`). Runs whatever became of the run."""
        from claims_cdc.run_notes import note_run

        context = get_current_context()
        ti = context["ti"]
        return note_run(SETTINGS, ti.dag_id, _run_id(), ti.xcom_pull(task_ids="staged_batch"),
                        ti.xcom_pull(task_ids="merged_counts"))

    planned = shard_plan()
    waiting >> planned
    staged = staged_batch(shard_batch.expand(shard=planned))
    merged = merged_counts(staged)
    reconciled = reconciliation(merged)
    removed = removed_batch_files(staged)
    merged >> removed
    [reconciled, removed] >> alerts_checked(staged)
    merged >> run_note()


claims_cdc()
