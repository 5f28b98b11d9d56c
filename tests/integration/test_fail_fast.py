"""Errors no retry can fix fail the task bodies at once, against the moto and fakesnow servers (the same
hooks and wire protocols production uses): the message names the setting, and the task is not retried."""

from __future__ import annotations

import dataclasses

import pytest
from airflow.sdk.exceptions import AirflowFailException

from claims_cdc import pipeline

pytestmark = pytest.mark.stack


def test_a_snowflake_database_that_does_not_exist_fails_at_once_saying_to_run_setup(settings):
    with pytest.raises(AirflowFailException) as failure:
        pipeline.stored_checkpoints(dataclasses.replace(settings, database="NO_SUCH_DB"))
    message = str(failure.value)
    assert "errno 2003" in message and "CDC_SNOWFLAKE_DATABASE" in message
    assert "python -m claims_cdc.admin setup" in message
    assert "NO_SUCH_DB" not in message  # the server's own text (which names it) is not passed on


def test_a_stream_that_does_not_exist_fails_the_plan_at_once(settings):
    with pytest.raises(AirflowFailException, match=r"CDC_KINESIS_STREAM: the Kinesis stream 'NoSuchStream'"):
        pipeline.plan(dataclasses.replace(settings, kinesis_stream="NoSuchStream"), "run-ff", 10, None)


def test_a_table_that_does_not_exist_fails_reconcile_at_once(settings):
    with pytest.raises(AirflowFailException, match=r"CDC_DYNAMODB_TABLE: the DynamoDB table 'NoSuchTable'"):
        pipeline.reconcile(dataclasses.replace(settings, dynamodb_table="NoSuchTable"), "run-ff")
