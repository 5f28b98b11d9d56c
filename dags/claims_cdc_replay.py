"""
# claims_cdc_replay

Replays and repairs as DAG runs, chosen by the **mode** Param of the trigger form:

| mode | what it does | when |
|---|---|---|
| `stream` | re-reads the Kinesis stream from **from_time** (AT_TIMESTAMP, within the stream's retention) for all shards or the chosen **shards**, through the live path: the same read, transform, de-duplication, load and ordered merge. The live checkpoints do not move. | after a bug in the transform or the mapping is fixed; to re-check a window. Replaying what is already merged changes nothing (destination and history alike) |
| `rebuild` | sets the destination (and the tombstones) to what the event history says as of **as_of**, in one transaction | the destination was damaged by hand or by a bug; or a point-in-time view is needed (pause `claims_cdc` first when as_of is in the past) |
| `redrive` | re-processes up to **redrive_limit** dead letters (oldest first) through the same path; each one is marked, never deleted | after a fix for the reason they were rejected (`python -m claims_cdc.admin report` lists reasons) |

Every run records its mode, range and counts in the batch log (`cdc_batch_log.positions`). Safe beside
`claims_cdc`: no checkpoint moves, and every merge applies only changes newer than the destination's row.
Records never travel through XCom; no task logs claim content.
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
    SETTINGS, __doc__, ["cdc", "kinesis", "snowflake", "phi", "replay"],
    params={
        "mode": Param(
            "stream",
            type="string",
            enum=["stream", "rebuild", "redrive"],
            title="What to replay",
            description="stream: re-read the stream from a time. rebuild: the destination from the event "
            "history as of a time. redrive: the dead-lettered records.",
        ),
        "from_time": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Stream: from (UTC)",
            description="mode=stream: the time to re-read from (AT_TIMESTAMP); within the stream's retention "
            "(24 h by default). Empty: one hour before the run.",
        ),
        "shards": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": "^shardId-[0-9]{12}$"},
            title="Stream: shards",
            description="mode=stream: the shard ids to re-read, one a line (e.g. shardId-000000000000). "
            "Empty: every shard of the stream.",
        ),
        "max_records": Param(
            SETTINGS.max_records,
            type="integer",
            minimum=1,
            maximum=10_000_000,
            title="Stream: most records",
            description="mode=stream: cap on the records this replay reads, over all shards.",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Rebuild: as of (UTC)",
            description="mode=rebuild: the destination becomes each claim's latest change at or before this "
            "time in the event history. Empty: now.",
        ),
        "redrive_limit": Param(
            10_000,
            type="integer",
            minimum=1,
            maximum=1_000_000,
            title="Re-drive: most dead letters",
            description="mode=redrive: how many dead letters to take, oldest first.",
        ),
    },
))
def claims_cdc_replay():
    @task.branch(execution_timeout=timedelta(minutes=1))
    def chosen_mode() -> str:
        """Follows the run's mode: the stream's tasks, the rebuild or the re-drive."""
        mode = get_current_context()["params"]["mode"]
        return {"stream": "replay_plan", "rebuild": "rebuilt_destination", "redrive": "redriven"}[mode]

    @task(execution_timeout=timedelta(minutes=5))
    def replay_plan() -> list[dict]:
        """The shards to re-read, each from the replay's time, with its share of the cap."""
        from claims_cdc.replay import parse_time, plan_stream_replay

        context = get_current_context()
        params = context["params"]
        started = getattr(context.get("ti"), "start_date", None) or pendulum.now("UTC")
        from_time = parse_time(params.get("from_time"), "from_time", started - timedelta(hours=1))
        return plan_stream_replay(SETTINGS, side_run_id(), from_time, params.get("shards") or None,
                                  int(params["max_records"]), started)

    @task(execution_timeout=timedelta(minutes=30), map_index_template="{{ shard_id }}",
          doc_md="Re-reads one shard from the replay's time, transformed as a live shard is, into the batch's files.")
    def replay_batch(shard: dict) -> dict:
        from claims_cdc.replay import read_replay_shard

        get_current_context()["shard_id"] = shard["shard_id"]
        return read_replay_shard(SETTINGS, shard)

    @task(execution_timeout=timedelta(minutes=30))
    def staged_replay(shards: list[dict]) -> dict:
        """Loads the re-read records into the staging and history tables (a change already kept is not
        kept again); no checkpoint moves; logs the replay's range and counts."""
        from claims_cdc.replay import stream_description
        from claims_cdc.snapshot import stage_parts

        shards = list(shards)
        return stage_parts(SETTINGS, shards, side_run_id(), stream_description(shards))

    @task(execution_timeout=timedelta(minutes=30))
    def merged_replay(staged: dict) -> dict:
        """The ordered merge: only what is newer than the destination's row is applied."""
        from claims_cdc.snapshot import merge_side_batch

        return merge_side_batch(SETTINGS, staged, side_run_id())

    @task(execution_timeout=timedelta(minutes=30))
    def rebuilt_destination() -> dict:
        """The destination and tombstones as the event history says, as of the run's time; in one transaction."""
        from claims_cdc.replay import parse_time, rebuild

        params = get_current_context()["params"]
        return rebuild(SETTINGS, side_run_id(), parse_time(params.get("as_of"), "as_of", pendulum.now("UTC")))

    @task(execution_timeout=timedelta(minutes=30))
    def redriven() -> dict:
        """Dead letters re-processed through the same path, marked re-driven (never deleted)."""
        from claims_cdc.replay import redrive_dead_letters

        return redrive_dead_letters(SETTINGS, side_run_id(), int(get_current_context()["params"]["redrive_limit"]))

    mode = chosen_mode()
    plan = replay_plan()
    mode >> [plan, rebuilt_destination(), redriven()]
    merged_replay(staged_replay(replay_batch.expand(shard=plan)))


claims_cdc_replay()
