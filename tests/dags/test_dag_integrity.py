"""DAG integrity: it imports, and carries what the UI and on-call need. Offline: no server, no database.

The DAGs are read from ``DagBag.dags``, not ``get_dag()``, which queries the metadata database
(tests/platform/test_platform_quirks.py reproduces it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claims_cdc.settings import PROJECT_ROOT


class _OfflineDagBag:
    """The parsed dags/ folder, looked up without the metadata database."""

    def __init__(self) -> None:
        from airflow.dag_processing.dagbag import DagBag

        self.bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
        self.import_errors = self.bag.import_errors
        self.dag_ids = self.bag.dag_ids

    def get_dag(self, dag_id: str):
        return self.bag.dags[dag_id]


@pytest.fixture(scope="module")
def dagbag():
    return _OfflineDagBag()


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["claims_by_status", "claims_cdc", "claims_cdc_audit", "claims_cdc_replay",
                                      "claims_cdc_snapshot"]


def test_no_dag_or_pipeline_module_imports_the_local_tools():
    """plugins/ and dags/ are what a deployment runs: the local stack (dev/) must never be imported there."""
    import ast

    offenders = []
    for path in [*(PROJECT_ROOT / "plugins").rglob("*.py"), *(PROJECT_ROOT / "dags").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(PROJECT_ROOT)}: {n}" for n in names
                          if n.split(".")[0] in {"claims_cdc_dev", "moto", "fakesnow", "faker", "duckdb"}]
    assert offenders == []


def test_claims_cdc_shape(dagbag):
    dag = dagbag.get_dag("claims_cdc")
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert {"cdc", "dynamodb", "kinesis", "snowflake"} <= set(dag.tags)
    assert dag.doc_md and "claims_cdc" in dag.doc_md
    order = ["stream_has_records", "shard_plan", "shard_batch", "staged_batch", "merged_counts", "reconciliation"]
    assert [t.task_id for t in dag.topological_sort()
            if t.task_id not in {"removed_batch_files", "alerts_checked", "run_note"}] == order
    # one read-and-transform task per shard (dynamic task mapping over the plan), one staging transaction
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.get_task("shard_batch"), MappedOperator)
    assert not isinstance(dag.get_task("staged_batch"), MappedOperator)
    # batch-file clean-up follows the merge, and also runs when the sensor skipped (never after a failure)
    tidy = dag.get_task("removed_batch_files")
    assert tidy.upstream_task_ids == {"staged_batch", "merged_counts"}
    assert str(tidy.trigger_rule) in {"none_failed", "TriggerRule.NONE_FAILED"}
    # the alert checks come last, when nothing failed (a skipped sensor included)
    checked = dag.get_task("alerts_checked")
    assert checked.upstream_task_ids == {"staged_batch", "reconciliation", "removed_batch_files"}
    assert str(checked.trigger_rule) in {"none_failed", "TriggerRule.NONE_FAILED"}


def test_failures_and_overruns_alert_through_callbacks(monkeypatch):
    # The tests' stack writes CDC_RUN_DEADLINE_SECONDS=0 (dag.test() cannot run a DAG with a deadline): parsed
    # here as a deployment sets it.
    monkeypatch.setenv("CDC_RUN_DEADLINE_SECONDS", "3600")
    dag = _OfflineDagBag().get_dag("claims_cdc")
    assert dag.on_failure_callback is not None  # a failed run (and the pause after five in a row)
    assert all(task.on_failure_callback for task in dag.tasks)  # a task's retries spent
    [deadline] = dag.deadline  # a run past CDC_RUN_DEADLINE_SECONDS, through Airflow's Deadline Alerts
    assert deadline.callback.path == "claims_cdc.alerts.run_overran"
    assert deadline.interval.total_seconds() == 3600
    monkeypatch.setenv("CDC_RUN_DEADLINE_SECONDS", "0")
    assert _OfflineDagBag().get_dag("claims_cdc").deadline is None


def test_the_merge_publishes_the_destination_asset_and_claims_by_status_is_scheduled_on_it(dagbag):
    from airflow.sdk import Asset

    merge = dagbag.get_dag("claims_cdc").get_task("merged_counts")
    destination = Asset(uri="snowflake://local/CDC_DB/CDC_SCHEMA/openflow_insclaim_dest_tbl")
    assert merge.outlets == [destination]
    downstream = dagbag.get_dag("claims_by_status")
    assert list(downstream.timetable.asset_condition.objects) == [destination]
    assert [t.task_id for t in downstream.tasks] == ["claims_by_status_summary"]
    assert downstream.doc_md and downstream.max_active_runs == 1


def test_every_run_writes_its_note_whatever_became_of_it(dagbag):
    note = dagbag.get_dag("claims_cdc").get_task("run_note")
    assert note.upstream_task_ids == {"merged_counts"}
    assert str(note.trigger_rule) in {"all_done", "TriggerRule.ALL_DONE"}


@pytest.mark.parametrize("dag_id", ["claims_cdc", "claims_by_status"])
def test_every_task_retries_with_backoff_and_has_an_owner(dagbag, dag_id):
    for task in dagbag.get_dag(dag_id).tasks:
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
    assert dag.max_consecutive_failed_dag_runs == 5  # a failing pipeline pauses instead of looping


def test_the_sensor_defers_to_the_triggerer_by_default(dagbag):
    # CDC_SENSOR_MODE's default, whatever Airflow's own [operators] default_deferrable says.
    assert dagbag.get_dag("claims_cdc").get_task("stream_has_records").deferrable is True


def _rendered_sensor(dagbag, params):
    """The sensor as a worker sees it: templates rendered from the run's params, arguments resolved."""
    import copy

    sensor = copy.deepcopy(dagbag.get_dag("claims_cdc").get_task("stream_has_records"))
    sensor.render_template_fields({"params": params})
    return sensor, sensor._resolve()


def test_the_sensor_waits_as_long_as_the_runs_param_says(dagbag):
    sensor, resolved = _rendered_sensor(dagbag, {"sensor_timeout": 42})
    assert sensor.timeout == 42.0
    assert resolved.kinesis_stream == sensor.stream_name


def test_a_sensor_timeout_param_that_is_not_seconds_fails_the_task_at_once(dagbag):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="timeout='soon'"):
        _rendered_sensor(dagbag, {"sensor_timeout": "soon"})


def test_every_task_has_docs_and_a_timeout(dagbag):
    for task in dagbag.get_dag("claims_cdc").tasks:
        assert task.doc_md, task.task_id
        if task.task_id != "stream_has_records":
            assert task.execution_timeout, task.task_id
    # The sensor is bounded by its own timeout: the run's sensor_timeout, whose default is a positive number.
    default = dagbag.get_dag("claims_cdc").params["sensor_timeout"]
    sensor, _ = _rendered_sensor(dagbag, {"sensor_timeout": default})
    assert sensor.timeout == float(default) > 0


def _import_error(monkeypatch, **env) -> str:
    """The dags/ folder parsed with ``env`` set: its import error (what the UI shows), the same for every DAG
    file (each reads the settings and the mapping at parse time)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    errors = {Path(path).name: error for path, error in _OfflineDagBag().import_errors.items()}
    assert "claims_cdc.py" in errors, errors
    # The other DAGs read the same settings: a bad one fails their parse too, with the same error (a broken
    # mapping file fails only the DAGs that load it).
    assert set(errors) <= {p.name for p in (PROJECT_ROOT / "dags").glob("*.py")}, errors
    assert len({error.splitlines()[-1] for error in errors.values()}) == 1, errors
    return errors["claims_cdc.py"]


def test_a_broken_mapping_file_is_an_import_error_naming_the_setting(monkeypatch, tmp_path):
    broken = tmp_path / "mapping.json"
    broken.write_text('{"key_attribute": "claim_id", "columns": [{"column": "claimId"}]}')
    error = _import_error(monkeypatch, CDC_MAPPING_PATH=str(broken))
    assert "CDC_MAPPING_PATH" in error


def test_a_malformed_connection_variable_is_an_import_error_naming_it_never_its_value(monkeypatch):
    secret = "Pr1vate-Key-Passphrase"
    error = _import_error(monkeypatch, AIRFLOW_CONN_SNOWFLAKE_DEFAULT='{"conn_type": "snowflake", "password": "'
                          + secret + '", bad json')
    assert "AIRFLOW_CONN_SNOWFLAKE_DEFAULT is not valid JSON" in error
    assert secret not in error


def test_a_schedule_that_is_not_cron_is_an_import_error_naming_the_setting(monkeypatch):
    assert "CDC_SCHEDULE='61 * * * *' is not a valid schedule" in _import_error(monkeypatch, CDC_SCHEDULE="61 * * * *")
