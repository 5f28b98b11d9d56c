"""THE ADAPTATION POINT of ``make bench``: the in-process drain, the one place that calls the pipeline's task
functions by name.

When the DAG's tasks change (their functions, arguments or order), change :func:`drain_in_process` to
call them as ``dags/claims_cdc.py`` does, one DAG run per loop, and nothing else: the rest of the bench
(``claims_cdc_dev.bench``) knows only this function, the stage names it times and the number of runs it
returns. Statements are counted around it, on ``claims_cdc.snowflake.Session``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from claims_cdc.settings import Settings


def drain_in_process(settings: Settings, stage: Callable[[str], AbstractContextManager], max_runs: int) -> int:
    """Run the DAG's tasks in this process, in the DAG's order, run after run, until the sensor's check finds
    no record after the checkpoints; each call inside ``with stage(name)`` is timed under ``name``.

    Returns the number of runs that found records. Fails after ``max_runs`` runs (a drain that does not
    move forward).
    """
    from claims_cdc import pipeline

    for runs in range(max_runs + 1):
        with stage("stream_has_records"):
            if not pipeline.stream_has_records(settings):
                return runs
        run_id = f"bench__{runs + 1}"
        started = datetime.now(UTC)
        with stage("shard_plan"):
            shards = pipeline.plan(settings, run_id, settings.max_records, started_at=started)
        with stage("shard_batch"):  # read + transform, the shards side by side as the mapped tasks run
            done = pipeline.read_shards(settings, shards)
        with stage("stage"):
            staged = pipeline.stage(settings, done, run_id)
        with stage("merge"):
            pipeline.merge(settings, staged, run_id)
        with stage("reconcile"):
            pipeline.reconcile(settings, run_id)
        with stage("remove_batch_files"):
            pipeline.remove_batch_files(settings, staged, started)
    raise RuntimeError(f"the stream still has records after {max_runs} runs")
