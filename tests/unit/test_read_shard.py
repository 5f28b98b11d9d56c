"""A shard's task: read and transformed page by page into the batch's Parquet files, every record accounted
for; on in-process moto (no Snowflake: the plan's checkpoints are handed in)."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from claims_cdc import pipeline
from claims_cdc.settings import Settings
from helpers import RECENT_MICROS, kinesis_doc


@pytest.fixture
def settings(tmp_path, aws_mock) -> Settings:
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName="Claims", ShardCount=1)
    return Settings(aws_conn_id="aws_mock", kinesis_stream="Claims", batch_root=f"file://{tmp_path}/batches",
                    get_records_limit=3)


def _put(records: list[bytes]) -> list[str]:
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    return [kinesis.put_record(StreamName="Claims", PartitionKey="k", Data=data)["SequenceNumber"]
            for data in records]


def _plan(settings: Settings, monkeypatch, max_records: int = 100) -> list[dict]:
    monkeypatch.setattr(pipeline, "stored_checkpoints", lambda _settings: {})  # no Snowflake here
    return pipeline.plan(settings, "run-1", max_records, None)


def _claim(claim: str, status: str, micros: int, event_id: str | None = None) -> bytes:
    return kinesis_doc("INSERT", {"claim_id": claim, "claimStatus": status}, micros, event_id or str(uuid.uuid4()))


def test_every_record_is_a_row_a_dropped_re_delivery_or_a_dead_letter(settings, monkeypatch):
    first = _claim("CLM-1", "Submitted", RECENT_MICROS, "e1")
    sent = _put([first, _claim("CLM-2", "Submitted", RECENT_MICROS + 1), first, b"not json",
          _claim("CLM-1", "Approved", RECENT_MICROS + 2), _claim("CLM-3", "Paid", RECENT_MICROS + 3), b"{}"])
    [shard] = _plan(settings, monkeypatch)

    done = pipeline.read_shard(settings, shard)  # pages of 3 records: the re-delivery is on another page

    assert (done["records"], done["rows"], done["duplicates_dropped"], done["rejected"]) == (7, 4, 1, 2)
    batch = Path(shard["uri"].removeprefix("file://"))
    rows = pq.read_table(batch / "rows" / f"{shard['shard_id']}.parquet").to_pylist()
    assert [(r["claimId"], r["claimStatus"]) for r in rows] == [
        ("CLM-1", "Submitted"), ("CLM-2", "Submitted"), ("CLM-1", "Approved"), ("CLM-3", "Paid")]
    assert {r["cdc_batch_id"] for r in rows} == {shard["batch_id"]}
    rejected = pq.read_table(batch / "rejected" / f"{shard['shard_id']}.parquet").to_pylist()
    assert [r["reason"] for r in rejected] == ["record data is not JSON",
                                               "eventName is missing or not INSERT, MODIFY or REMOVE"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in batch.rglob("*.parquet")} == {0o600}
    assert (done["start"], done["end"]) == (None, sent[-1])  # the checkpoint moves past the dead letters too


def test_a_shard_stops_at_its_share_and_a_retry_rewrites_the_same_files(settings, monkeypatch):
    _put([_claim(f"CLM-{i}", "Submitted", RECENT_MICROS + i) for i in range(5)])
    [shard] = _plan(settings, monkeypatch, max_records=4)

    first = pipeline.read_shard(settings, shard)
    again = pipeline.read_shard(settings, shard)  # a retried task: same position, files written anew

    assert first == again
    assert (first["records"], first["rows"], first["drained"], first["verified_at"]) == (4, 4, False, None)
    path = Path(shard["uri"].removeprefix("file://")) / "rows" / f"{shard['shard_id']}.parquet"
    assert pq.read_metadata(path).num_rows == 4
    assert not (path.parent.parent / "rejected").exists()  # no dead letters, no file


def test_a_shard_with_nothing_new_leaves_no_files_and_is_verified(settings, monkeypatch):
    [shard] = _plan(settings, monkeypatch)
    done = pipeline.read_shard(settings, shard)
    assert (done["records"], done["rows"], done["rejected"]) == (0, 0, 0)
    assert done["verified_at"] is not None
    assert not Path(shard["uri"].removeprefix("file://")).exists()


def test_read_ahead_keeps_the_order_raises_the_readers_error_in_place_and_stops_when_left():
    assert list(pipeline._read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ConnectionError("Kinesis went away")

    pages = pipeline._read_ahead(failing())
    assert next(pages) == 1
    with pytest.raises(ConnectionError, match="went away"):
        next(pages)

    produced = []

    def endless():
        for n in range(10**9):
            produced.append(n)
            yield n

    left = pipeline._read_ahead(endless())
    assert next(left) == 0
    left.close()  # the consumer stopped (an error in the transform): the reading thread ends too
    settled = len(produced)
    assert settled <= 3
