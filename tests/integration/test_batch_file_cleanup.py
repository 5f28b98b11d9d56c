"""Batch files (claims, PHI) of a failed or killed run are gone once the next run has finished.

Run 1 goes through the pipeline's own task functions and dies in its stage; run 2 is a whole DAG run
(``dag.test()``), as the scheduler would start it next. The checks are what a person would look at: the
files under ``CDC_BATCH_ROOT`` and the rows in Snowflake.
"""

from __future__ import annotations

import stat
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from claims_cdc import aws, pipeline, snowflake
from helpers import RECENT_MICROS, count, destination, kinesis_doc, run_dag, task_states

pytestmark = pytest.mark.stack


class WorkerKilled(Exception):
    """Stands for the worker process dying at a Snowflake statement."""


def _files(settings) -> list[Path]:
    root = Path(settings.batch_root.removeprefix("file://"))
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _put_claims(settings, *claims: str) -> None:
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    for i, claim in enumerate(claims):
        item = {"claim_id": claim, "claimStatus": "Submitted", "totalCharge": Decimal(i + 1)}
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim,
                           Data=kinesis_doc("INSERT", item, RECENT_MICROS + i, str(uuid.uuid4())))


def _kill_before(monkeypatch, name: str) -> None:
    """Kill the 'worker' just before the named statement runs."""
    real = snowflake.Session.execute

    def execute(self, statement, params=()):
        if getattr(statement, "name", None) == name:
            raise WorkerKilled(name)
        return real(self, statement, params)

    monkeypatch.setattr(snowflake.Session, "execute", execute)


def _kill_after_commit(monkeypatch) -> None:
    """Kill the 'worker' right after Snowflake committed its transaction."""
    real = snowflake.Session.raw

    def raw(self, sql):
        real(self, sql)
        if sql == "COMMIT":
            raise WorkerKilled(sql)

    monkeypatch.setattr(snowflake.Session, "raw", raw)


def test_a_run_killed_mid_stage_leaves_no_batch_files_once_the_next_run_has_finished(settings, snow, clean_pipeline,
                                                                                     monkeypatch):
    _put_claims(settings, "CLM-K1", "CLM-K2")
    batch = pipeline.read_shards(settings, pipeline.plan(settings, "run-1", 100, None))
    with monkeypatch.context() as patched:
        _kill_before(patched, "insert_history")  # inside the stage's transaction: nothing commits
        with pytest.raises(WorkerKilled):
            pipeline.stage(settings, batch, "run-1")
    left = _files(settings)
    assert {p.parent.name for p in left} == {"rows"} and {p.suffix for p in left} == {".parquet"}
    assert sorted(p.stem for p in left) == sorted(s["shard_id"] for s in batch if s["rows"])
    assert {stat.S_IMODE(p.stat().st_mode) for p in left} == {0o600}
    assert count(snow, settings, settings.cdc_table) == 0  # the killed stage left nothing staged

    dag_run = run_dag()

    assert dag_run.state == "success"
    assert task_states(dag_run)["removed_batch_files"] == "success"
    assert _files(settings) == []
    assert list(Path(settings.batch_root.removeprefix("file://")).glob("*")) == []  # no empty run folders
    assert destination(snow, settings) == {"CLM-K1": ("INSERT", "Submitted"), "CLM-K2": ("INSERT", "Submitted")}
    assert count(snow, settings, settings.history_table) == 2
    assert count(snow, settings, settings.cdc_table) == 0
    # Clearing run 1's stage now fails with the way out; its records are already in the destination.
    with pytest.raises(AirflowFailException, match="clear this run from shard_plan"):
        pipeline.stage(settings, batch, "run-1")


def test_files_of_a_run_killed_after_its_stage_committed_go_even_when_the_next_run_skips(settings, snow,
                                                                                        clean_pipeline, monkeypatch):
    _put_claims(settings, "CLM-S1")
    batch = pipeline.read_shards(settings, pipeline.plan(settings, "run-1", 100, None))
    with monkeypatch.context() as patched:
        _kill_after_commit(patched)  # the worker dies as the stage commits, before Airflow hears of it
        with pytest.raises(WorkerKilled):
            pipeline.stage(settings, batch, "run-1")
    assert count(snow, settings, settings.cdc_table) == 1  # staged: the checkpoints moved with it
    assert len(_files(settings)) == 1  # the one claim's shard

    # Nothing after the checkpoints: the sensor skips this run, and the clean-up still runs.
    dag_run = run_dag(sensor_timeout=2)

    states = task_states(dag_run)
    assert states.pop("alerts_checked") == "success"  # the alert checks run in idle runs too
    assert states.pop("removed_batch_files") == "success"
    assert states.pop("run_note") == "success"  # the run's note is written in idle runs too
    assert set(states.values()) == {"skipped"}
    assert _files(settings) == []
    # A retry of run 1's stage finds the batch already staged and succeeds without its files.
    assert pipeline.stage(settings, batch, "run-1")["rows_staged"] == 1
