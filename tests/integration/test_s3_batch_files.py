"""Batch files under an ``s3://`` CDC_BATCH_ROOT, as a deployment across hosts runs them (each shard's task
may run on another worker), against moto's S3.

ObjectStoragePath reaches S3 through the Amazon provider's fsspec filesystem (s3fs), which takes its
endpoint, region and credentials from the AWS connection: nothing here points s3fs at moto but the
connection's ``extra.endpoint_url``.
"""

from __future__ import annotations

import dataclasses
import uuid

import boto3
import pytest

from claims_cdc import aws, batch_files, pipeline
from helpers import RECENT_MICROS, destination, kinesis_doc

pytestmark = pytest.mark.stack


@pytest.fixture
def s3_settings(stack, settings):
    bucket = f"cdc-batches-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=stack.endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    yield dataclasses.replace(settings, batch_root=f"s3://{bucket}/batches"), s3, bucket


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_a_run_with_its_batch_files_on_s3_loads_and_removes_them(s3_settings, snow, clean_pipeline):
    settings, s3, bucket = s3_settings
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    for i, claim in enumerate(("CLM-S3A", "CLM-S3B", "CLM-S3C")):
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim,
                           Data=kinesis_doc("INSERT", {"claim_id": claim, "claimStatus": "Submitted"},
                                            RECENT_MICROS + i, str(uuid.uuid4())))

    shards = pipeline.read_shards(settings, pipeline.plan(settings, "manual__2025-01-01T00:00:00+00:00", 100, None))
    batch_id = shards[0]["batch_id"]
    assert _keys(s3, bucket) == sorted(
        f"batches/manual__2025-01-01T00_00_00_00_00/{batch_id}/rows/{s['shard_id']}.parquet"
        for s in shards if s["rows"])

    staged = pipeline.stage(settings, shards, "manual__2025-01-01T00:00:00+00:00")  # PUT from a private local copy
    assert staged["rows_staged"] == 3
    pipeline.merge(settings, staged, "manual__2025-01-01T00:00:00+00:00")
    assert _keys(s3, bucket) == []
    assert destination(snow, settings) == {c: ("INSERT", "Submitted") for c in ("CLM-S3A", "CLM-S3B", "CLM-S3C")}
    # A retried merge removes again: already gone is fine.
    batch_files.remove_batch(settings, "manual__2025-01-01T00:00:00+00:00", batch_id)
