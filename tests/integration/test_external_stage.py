"""CDC_EXTERNAL_STAGE: COPY INTO reads each batch's files where the shard tasks wrote them, with no PUT.

On real Snowflake the stage is an external S3 stage (an operator creates it with a storage integration, its
URL the s3:// CDC_BATCH_ROOT). fakesnow reads a stage's URL with DuckDB, which has no S3 access offline, so
here the stage points at a file:// batch root: the settings accept that on the emulator only.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from claims_cdc import aws, pipeline
from helpers import RECENT_MICROS, count, destination, kinesis_doc, query, table

pytestmark = pytest.mark.stack

RUN = "manual__2025-01-01T00:00:00+00:00"


@pytest.fixture
def external_settings(settings, snow, tmp_path):
    root = tmp_path / "batches"
    root.mkdir(mode=0o700)
    stage = f"ext_batches_{uuid.uuid4().hex[:8]}"
    # fakesnow-only DDL (real Snowflake needs an s3:// URL and a STORAGE_INTEGRATION): the test's stand-in.
    query(snow, f"CREATE STAGE {table(settings, stage)} URL = 'file://{root}/' FILE_FORMAT = (TYPE = PARQUET)")
    yield dataclasses.replace(settings, batch_root=f"file://{root}", external_stage=stage), root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_a_batch_copies_from_the_external_stage_without_a_put_and_its_files_go_with_the_merge(
        external_settings, snow, clean_pipeline):
    settings, root = external_settings
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    for i, claim in enumerate(("CLM-EXT-A", "CLM-EXT-B")):
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim,
                           Data=kinesis_doc("INSERT", {"claim_id": claim, "claimStatus": "Approved"},
                                            RECENT_MICROS + i, str(uuid.uuid4())))
    kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey="poison", Data=b"{not json")

    shards = pipeline.read_shards(settings, pipeline.plan(settings, RUN, 100, None))
    written = _files(root)
    assert any("/rows/" in f for f in written) and any("/rejected/" in f for f in written)

    staged = pipeline.stage(settings, shards, RUN)
    assert (staged["rows_staged"], staged["rows_rejected"], staged["records"]) == (2, 1, 3)
    # COPY read the files in place: nothing of this batch was PUT to the internal stage (other tests may
    # have left files of their own there), and nothing was purged.
    batch_id = shards[0]["batch_id"]
    internal = query(snow, f"LIST @{table(settings, settings.load_stage)}")
    assert [f for f in internal if batch_id in str(f[0])] == []
    assert _files(root) == written
    # A retried stage task finds the batch in the batch log and stages nothing twice.
    assert pipeline.stage(settings, shards, RUN)["rows_staged"] == 2
    assert count(snow, settings, settings.cdc_table) == 2

    pipeline.merge(settings, staged, RUN)
    assert destination(snow, settings) == {"CLM-EXT-A": ("INSERT", "Approved"), "CLM-EXT-B": ("INSERT", "Approved")}
    assert count(snow, settings, settings.rejected_table) == 1
    assert _files(root) == []  # the merge removes its own batch's files, as on the internal stage


def test_an_external_stage_that_is_not_over_the_batch_root_stages_nothing_and_says_which_setting(
        external_settings, snow, clean_pipeline, tmp_path):
    settings, _root = external_settings
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wrong = f"{settings.external_stage}_wrong"
    query(snow, f"CREATE STAGE {table(settings, wrong)} URL = 'file://{elsewhere}/' FILE_FORMAT = (TYPE = PARQUET)")
    settings = dataclasses.replace(settings, external_stage=wrong)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey="CLM-EXT-W",
                       Data=kinesis_doc("INSERT", {"claim_id": "CLM-EXT-W"}, RECENT_MICROS, str(uuid.uuid4())))
    shards = pipeline.read_shards(settings, pipeline.plan(settings, RUN, 100, None))

    with pytest.raises(Exception, match=f"1 rows and 0 dead letters written, 0 and 0 loaded from the external stage "
                                        f"{wrong} \\(CDC_EXTERNAL_STAGE; its URL must be CDC_BATCH_ROOT\\)"):
        pipeline.stage(settings, shards, RUN)
    assert count(snow, settings, settings.cdc_table) == 0
    assert count(snow, settings, settings.checkpoint_table) == 0  # the checkpoints did not move
