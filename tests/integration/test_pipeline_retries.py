"""Task-level retries through the pipeline's own task functions, against moto and fakesnow."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from snowflake.connector.errors import OperationalError

from claims_cdc import aws, pipeline
from helpers import RECENT_MICROS, count, destination, kinesis_doc

pytestmark = pytest.mark.stack


def test_a_snowflake_connection_error_between_load_and_merge_is_retried_safely(settings, snow, clean_pipeline,
                                                                                monkeypatch):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    for i, status in enumerate(["Submitted", "Approved"]):
        item = {"claim_id": "CLM-R", "claimStatus": status, "totalCharge": Decimal(1)}
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey="CLM-R",
                           Data=kinesis_doc("INSERT" if i == 0 else "MODIFY", item, RECENT_MICROS + i,
                                            str(uuid.uuid4())))
    batch = pipeline.stage(settings, pipeline.read_shards(settings, pipeline.plan(settings, "run-1", 100, None)),
                           "run-1")

    real_session = pipeline.session

    def unreachable(*args, **kwargs):
        raise OperationalError("250003: failed to connect to the Snowflake host")

    monkeypatch.setattr(pipeline, "session", unreachable)
    with pytest.raises(OperationalError):
        pipeline.merge(settings, batch, "run-1")
    monkeypatch.setattr(pipeline, "session", real_session)

    # The batch stayed staged; the retried merge applies it once and cleans up.
    assert count(snow, settings, settings.cdc_table) == 2
    first = pipeline.merge(settings, batch, "run-1")
    again = pipeline.merge(settings, batch, "run-1")
    assert (first["inserted"], first["rows_cleaned"]) == (1, 2)
    assert again == {"batches": 0, "inserted": 0, "updated": 0, "deleted": 0, "rows_cleaned": 0}
    assert destination(snow, settings) == {"CLM-R": ("MODIFY", "Approved")}
    assert count(snow, settings, settings.history_table) == 2
    assert count(snow, settings, settings.cdc_table) == 0
