"""DAG integrity: it imports, and carries what the UI and on-call need."""

from __future__ import annotations

import pytest

from claims_cdc.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def dagbag(stack):
    """Parsed dags/. Needs the stack only for Airflow's migrated metadata database."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == ["claims_cdc"]


def test_claims_cdc_shape(dagbag):
    dag = dagbag.get_dag("claims_cdc")
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert {"cdc", "dynamodb", "kinesis", "snowflake"} <= set(dag.tags)
    assert dag.doc_md and "claims_cdc" in dag.doc_md
    order = ["stream_has_records", "extracted_batch", "transformed_batch", "staged_batch", "merged_counts",
             "reconciliation"]
    assert [t.task_id for t in dag.topological_sort()] == order


def test_every_task_retries_with_backoff_and_has_an_owner(dagbag):
    for task in dagbag.get_dag("claims_cdc").tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff, task.task_id
        assert task.owner == "data-engineering", task.task_id


def test_every_param_has_a_title_and_description(dagbag):
    params = dagbag.get_dag("claims_cdc").params
    assert set(params) == {"max_records", "sensor_timeout"}
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("title") and param.description, name


def test_runs_continuously_one_at_a_time_by_default(dagbag):
    dag = dagbag.get_dag("claims_cdc")
    assert type(dag.timetable).__name__ == "ContinuousTimetable"
    assert dag.max_active_runs == 1
    assert dag.max_consecutive_failed_dag_runs == 5  # a failing pipeline pauses instead of looping


def test_the_sensor_defers_to_the_triggerer_by_default(dagbag):
    sensor = dagbag.get_dag("claims_cdc").get_task("stream_has_records")
    assert sensor.deferrable is True
    assert sensor.soft_fail is True


def test_every_task_has_docs_and_a_timeout(dagbag):
    for task in dagbag.get_dag("claims_cdc").tasks:
        assert task.doc_md, task.task_id
        # Sensors are bounded by their own timeout (the run's sensor_timeout); the others by execution_timeout.
        bound = task.timeout if task.task_id == "stream_has_records" else task.execution_timeout
        assert bound, task.task_id
