"""DAG integrity of the side DAGs (snapshot, replay, audit): they import, carry typed Params with titles,
descriptions and bounds, retry like claims_cdc, and never move a checkpoint. Offline: no server, no database."""

from __future__ import annotations

import pytest

from claims_cdc.settings import PROJECT_ROOT

SIDE_DAGS = ["claims_cdc_snapshot", "claims_cdc_replay", "claims_cdc_audit"]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags


@pytest.mark.parametrize("dag_id", SIDE_DAGS)
def test_side_dag_runs_one_at_a_time_by_hand_with_claims_cdcs_retries_and_owner(dags, dag_id):
    dag = dags[dag_id]
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.doc_md and dag_id in dag.doc_md
    for task in dag.tasks:
        assert task.retries >= 2 and task.retry_exponential_backoff, task.task_id
        assert task.owner == "data-engineering", task.task_id
        assert task.execution_timeout, task.task_id
        assert task.doc_md, task.task_id


@pytest.mark.parametrize("dag_id", SIDE_DAGS)
def test_every_side_param_is_typed_with_a_title_and_description(dags, dag_id):
    params = dags[dag_id].params
    assert params
    for name in params:
        schema = params.get_param(name).schema
        assert schema.get("type") and schema.get("title") and params.get_param(name).description, (dag_id, name)
        if schema["type"] == "integer":
            assert schema.get("minimum") is not None and schema.get("maximum") is not None, (dag_id, name)


def test_snapshot_reads_by_export_by_default_and_maps_one_task_per_part(dags):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dags["claims_cdc_snapshot"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # by hand only
    assert dag.params["method"] == "export"
    assert dag.params.get_param("method").schema["enum"] == ["export", "scan"]
    assert isinstance(dag.get_task("snapshot_batch"), MappedOperator)
    order = [t.task_id for t in dag.topological_sort()]
    assert order == ["snapshot_parts", "snapshot_batch", "staged_snapshot", "merged_snapshot"]


def test_replay_branches_by_mode_and_defaults_to_the_stream_from_an_hour_ago(dags):
    dag = dags["claims_cdc_replay"]
    assert dag.params.get_param("mode").schema["enum"] == ["stream", "rebuild", "redrive"]
    assert dag.params["mode"] == "stream" and dag.params["from_time"] is None and dag.params["shards"] is None
    assert dag.get_task("chosen_mode").downstream_task_ids == {"replay_plan", "rebuilt_destination", "redriven"}
    assert dag.params.get_param("from_time").schema["format"] == "date-time"


@pytest.mark.parametrize("bad", [{"mode": "backfill"}, {"max_records": 0}, {"shards": ["not-a-shard"]},
                                 {"redrive_limit": 0}])
def test_a_bad_replay_param_is_refused_by_the_form(dags, bad):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dags["claims_cdc_replay"].params)
    params.validate()  # the defaults are valid
    (name, value), = bad.items()
    with pytest.raises(ParamValidationError, match=name):
        params[name] = value  # what the trigger form does with the value typed in


@pytest.mark.parametrize("dag_id", ["claims_cdc", "claims_cdc_audit", "claims_cdc_snapshot", "claims_cdc_replay"])
def test_airflows_backfill_is_refused_a_stream_has_no_time_partitions(dags, dag_id):
    """`airflow backfill create` checks allowed_run_types, then that the timetable is periodic
    (airflow.models.backfill._create_backfill): either refuses. The scheduled DAGs allow no backfill run,
    whatever CDC_SCHEDULE says; the DAGs run by hand have a non-periodic timetable."""
    dag = dags[dag_id]
    if dag_id in ("claims_cdc", "claims_cdc_audit"):
        allowed = {str(t.value) for t in dag.allowed_run_types}
        assert "backfill" not in allowed and {"scheduled", "manual"} <= allowed
    else:
        assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: not periodic
