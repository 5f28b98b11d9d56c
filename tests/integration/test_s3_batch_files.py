"""Batch files under an ``s3://`` CDC_BATCH_ROOT, as a deployment across hosts runs them, against moto's S3.

ObjectStoragePath reaches S3 through the Amazon provider's fsspec filesystem (s3fs), which takes its
endpoint, region and credentials from the AWS connection: nothing here points s3fs at moto but the
connection's ``extra.endpoint_url``.
"""

from __future__ import annotations

import dataclasses
import uuid

import boto3
import pytest

from claims_cdc import batch_files

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


def test_batch_files_are_written_read_and_removed_on_s3(s3_settings):
    settings, s3, bucket = s3_settings
    uri = batch_files.batch_uri(settings, "manual__2025-01-01T00:00:00+00:00", "b1")
    docs = [{"claimId": "CLM-1", "n": 1}, {"claimId": "CLM-2", "n": 2}]

    assert batch_files.write_jsonl(settings, f"{uri}/records.jsonl", docs) == 2
    assert batch_files.write_jsonl(settings, f"{uri}/rows.jsonl", docs[:1]) == 1
    assert _keys(s3, bucket) == [
        "batches/manual__2025-01-01T00_00_00_00_00/b1/records.jsonl",
        "batches/manual__2025-01-01T00_00_00_00_00/b1/rows.jsonl",
    ]
    assert list(batch_files.read_jsonl(settings, f"{uri}/records.jsonl")) == docs

    batch_files.remove_batch(settings, "manual__2025-01-01T00:00:00+00:00", "b1")
    assert _keys(s3, bucket) == []
    # A retried merge removes again: already gone is fine.
    batch_files.remove_batch(settings, "manual__2025-01-01T00:00:00+00:00", "b1")
