"""The task bodies fail at once (AirflowFailException: no retries) on errors no retry can fix, keeping the
message that names the setting; other errors keep their type, so the task retries. Offline: in-process
moto (``mock_aws``) for AWS, files under tmp_path, no Snowflake (the checkpoint read is cut)."""

from __future__ import annotations

import dataclasses

import pytest
from airflow.sdk.exceptions import AirflowFailException

from claims_cdc import pipeline
from claims_cdc.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(aws_conn_id="aws_mock", kinesis_stream="ClaimsStreamThatIsNot",
                    dynamodb_table="ClaimsTableThatIsNot", batch_root=f"file://{tmp_path}/batches")


def test_a_bad_argument_fails_the_task_without_retry_keeping_the_message(settings):
    with pytest.raises(AirflowFailException, match="max_records=0 must be at least 1"):
        pipeline.plan(settings, "run-1", 0, None)


def test_a_broken_mapping_fails_the_task_without_retry_naming_the_setting(settings, tmp_path):
    shard = {"batch_id": "b1", "uri": f"{settings.batch_root}/run-1/b1", "retention_hours": 24, "started_at": None,
             "shard_id": "shardId-000000000000", "parent_shard_ids": [], "start": None, "share": 10, "closed": False}
    broken = tmp_path / "mapping.json"
    broken.write_text('{"columns": [')
    with pytest.raises(AirflowFailException, match=r"^CDC_MAPPING_PATH: cannot read"):
        pipeline.read_shard(dataclasses.replace(settings, mapping_path=broken), shard)


def test_a_missing_stream_fails_the_plan_without_retry_naming_the_setting_and_the_stream(settings, aws_mock,
                                                                                         monkeypatch):
    monkeypatch.setattr(pipeline, "stored_checkpoints", lambda _settings: {})  # no Snowflake here
    with pytest.raises(AirflowFailException) as failure:
        pipeline.plan(settings, "run-1", 10, None)
    assert "CDC_KINESIS_STREAM" in str(failure.value) and "'ClaimsStreamThatIsNot'" in str(failure.value)


def test_a_missing_stream_fails_the_sensors_look_without_retry(settings, aws_mock):
    with pytest.raises(AirflowFailException, match=r"CDC_KINESIS_STREAM: the Kinesis stream 'ClaimsStreamThatIsNot'"):
        pipeline.stream_has_records(settings, checkpoints={})


def test_a_missing_table_fails_reconcile_without_retry_naming_the_setting_and_the_table(settings, aws_mock):
    with pytest.raises(AirflowFailException, match=r"CDC_DYNAMODB_TABLE: the DynamoDB table 'ClaimsTableThatIsNot'"):
        pipeline.reconcile(settings, "run-1")


def test_an_error_a_retry_may_fix_keeps_its_type(settings, monkeypatch):
    def unreachable(*_):
        raise ConnectionError("could not reach DynamoDB")

    monkeypatch.setattr(pipeline.aws, "dynamodb_item_count", unreachable)
    with pytest.raises(ConnectionError):
        pipeline.reconcile(settings, "run-1")
