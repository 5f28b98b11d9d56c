"""Kinesis faults moto cannot produce (throttling, expired iterators, retention), on a scripted client."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from claims_cdc import kinesis_reader
from claims_cdc.kinesis_reader import Checkpoint, CheckpointGap, check_retention
from helpers import read_run


class Throttled(Exception):
    pass


class Expired(Exception):
    pass


class ScriptedKinesis:
    """One open shard holding ``records`` (sequence numbers); faults are scripted per GetRecords call."""

    class exceptions:
        ProvisionedThroughputExceededException = Throttled
        ExpiredIteratorException = Expired

    def __init__(self, records, faults=(), retention_hours=24, shards=("shardId-000000000000",)):
        self.records = [str(r) for r in records]
        self.faults = list(faults)
        self.retention_hours = retention_hours
        self.shards = shards
        self.iterator_requests = []
        self.get_records_calls = 0

    def list_shards(self, **_):
        return {"Shards": [{"ShardId": s, "SequenceNumberRange": {"StartingSequenceNumber": "0"}}
                           for s in self.shards]}

    def describe_stream_summary(self, **_):
        return {"StreamDescriptionSummary": {"RetentionPeriodHours": self.retention_hours}}

    def get_shard_iterator(self, ShardIteratorType, StartingSequenceNumber=None, **_):
        self.iterator_requests.append((ShardIteratorType, StartingSequenceNumber))
        if ShardIteratorType == "TRIM_HORIZON":
            return {"ShardIterator": "0"}
        position = next(i for i, r in enumerate(self.records) if int(r) > int(StartingSequenceNumber)) \
            if any(int(r) > int(StartingSequenceNumber) for r in self.records) else len(self.records)
        return {"ShardIterator": str(position)}

    def get_records(self, ShardIterator, Limit):
        self.get_records_calls += 1
        if self.faults:
            fault = self.faults.pop(0)
            if fault is not None:
                raise fault
        start = int(ShardIterator)
        page = self.records[start : start + Limit]
        rest = len(self.records) - start - len(page)
        return {
            "Records": [{"SequenceNumber": seq, "Data": b"{}"} for seq in page],
            "NextShardIterator": str(start + len(page)),
            "MillisBehindLatest": 1000 if rest else 0,
        }


@pytest.fixture
def sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(kinesis_reader.time, "sleep", slept.append)
    return slept


def test_throttled_reads_back_off_and_then_succeed(sleeps):
    client = ScriptedKinesis([1, 2, 3], faults=[Throttled(), Throttled(), None])
    result = read_run(client, "s", {}, max_records=10, page_limit=10)
    assert [r.sequence_number for r in result.records] == ["1", "2", "3"]
    assert sleeps[:2] == [0.2, 0.4]


def test_persistent_throttling_gives_up_with_the_throttling_error(sleeps):
    client = ScriptedKinesis([1], faults=[Throttled()] * 10)
    with pytest.raises(Throttled):
        read_run(client, "s", {}, max_records=10, page_limit=10)
    assert len(sleeps) == kinesis_reader.MAX_THROTTLE_RETRIES


def test_reads_of_one_shard_stay_within_five_per_second(monkeypatch):
    clock = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(kinesis_reader.time, "sleep", sleep)
    monkeypatch.setattr(kinesis_reader.time, "monotonic", lambda: clock[0])
    client = ScriptedKinesis(range(1, 11))
    result = read_run(client, "s", {}, max_records=100, page_limit=2)
    assert len(result.records) == 10
    calls = client.get_records_calls
    assert calls >= 5 and sum(slept) >= (calls - 1) * kinesis_reader.MIN_SECONDS_BETWEEN_READS - 1e-9


def test_a_page_short_of_its_limit_at_the_tip_ends_the_read(sleeps):
    """MillisBehindLatest 0 on a page cut short of its limit: caught up, with no further read or wait."""
    client = ScriptedKinesis([1, 2, 3])
    result = read_run(client, "s", {}, max_records=100, page_limit=10)
    assert [r.sequence_number for r in result.records] == ["1", "2", "3"]
    assert client.get_records_calls == 1 and sleeps == []
    lag = kinesis_reader.shard_lag(client, "s", "shardId-000000000000", None, bound=1000)
    assert (lag.records, lag.bounded, client.get_records_calls) == (3, False, 2)


def test_a_page_a_limit_may_have_cut_is_followed_by_one_more_read(sleeps):
    """A page may stop among records as old as the tip's when a limit cut it: one more read decides.
    Limits: the records asked for, and GetRecords' 10 MiB (here, a page of 6 MiB)."""
    client = ScriptedKinesis([1, 2])
    result = read_run(client, "s", {}, max_records=100, page_limit=2)
    assert [r.sequence_number for r in result.records] == ["1", "2"]
    assert client.get_records_calls == 2

    class LargeRecords(ScriptedKinesis):
        def get_records(self, ShardIterator, Limit):
            page = super().get_records(ShardIterator, Limit)
            for record in page["Records"]:
                record["Data"] = b"x" * (3 * 1024 * 1024)
            return page

    client = LargeRecords([1, 2])
    result = read_run(client, "s", {}, max_records=100, page_limit=10)
    assert [r.sequence_number for r in result.records] == ["1", "2"]
    assert client.get_records_calls == 2


def test_expired_iterator_is_reacquired_from_the_last_record_read(sleeps):
    client = ScriptedKinesis(range(1, 7), faults=[None, Expired(), None, None])
    result = read_run(client, "s", {}, max_records=100, page_limit=2)
    assert [r.sequence_number for r in result.records] == ["1", "2", "3", "4", "5", "6"]
    assert ("AFTER_SEQUENCE_NUMBER", "2") in client.iterator_requests


def test_checkpoint_older_than_retention_fails_naming_the_gap():
    client = ScriptedKinesis([100, 101])  # everything up to 99 has expired
    old = Checkpoint("shardId-000000000000", "50", verified_at=datetime(2026, 1, 1))
    with pytest.raises(CheckpointGap) as gap:
        check_retention(client, "s", {old.shard_id: old}, now=datetime(2026, 1, 3))
    message = str(gap.value)
    assert "shardId-000000000000" in message and "checkpoint 50" in message and "oldest record left is 100" in message
    assert "accept-gap shardId-000000000000" in message


def test_checkpoint_verified_within_retention_is_trusted_without_reading():
    client = ScriptedKinesis([100, 101])
    fresh = Checkpoint("shardId-000000000000", "50", verified_at=datetime(2026, 1, 2, 12))
    check_retention(client, "s", {fresh.shard_id: fresh}, now=datetime(2026, 1, 3))
    assert client.get_records_calls == 0


def test_idle_checkpoint_whose_record_is_still_retained_passes():
    client = ScriptedKinesis([40, 50, 60])
    idle = Checkpoint("shardId-000000000000", "50", verified_at=datetime(2025, 1, 1))
    check_retention(client, "s", {idle.shard_id: idle}, now=datetime(2026, 1, 3))
    # It did look: stale, so the shard's oldest record (40, before the checkpoint) was read and compared.
    assert client.iterator_requests == [("TRIM_HORIZON", None)]


def test_a_shard_that_expired_before_it_was_drained_fails():
    client = ScriptedKinesis([1], shards=("shardId-000000000002",))
    gone = Checkpoint("shardId-000000000000", "50", verified_at=datetime(2026, 1, 1) - timedelta(days=3))
    with pytest.raises(CheckpointGap, match="shardId-000000000000.*has expired"):
        check_retention(client, "s", {gone.shard_id: gone}, now=datetime(2026, 1, 3))


def _not_found(operation: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}}, operation)


class MissingStream(ScriptedKinesis):
    """Kinesis' answer for a stream that does not exist (wrong name, account or region)."""

    def list_shards(self, **_):
        raise _not_found("ListShards")

    def describe_stream_summary(self, **_):
        raise _not_found("DescribeStreamSummary")


@pytest.mark.parametrize("look", [
    lambda client: read_run(client, "NoSuchStream", {}, max_records=10, page_limit=10),
    lambda client: kinesis_reader.has_records(client, "NoSuchStream", {}),
    lambda client: check_retention(client, "NoSuchStream", {"shardId-000000000000": Checkpoint(
        "shardId-000000000000", "50", verified_at=datetime(2026, 1, 1))}, now=datetime(2026, 1, 3)),
], ids=["read_run", "has_records", "check_retention"])
def test_a_missing_stream_is_named_with_its_setting(look):
    with pytest.raises(kinesis_reader.StreamNotFound, match=r"^CDC_KINESIS_STREAM: the Kinesis stream 'NoSuchStream'"):
        look(MissingStream([]))


def test_a_shard_gone_since_it_was_listed_is_not_a_missing_stream(sleeps):
    """GetShardIterator's ResourceNotFoundException is about one shard (trimmed meanwhile): a retry fixes it."""
    class ShardTrimmed(ScriptedKinesis):
        def get_shard_iterator(self, **_):
            raise _not_found("GetShardIterator")

    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="GetShardIterator"):  # as it came: the task retries
        read_run(ShardTrimmed([1]), "s", {}, max_records=10, page_limit=10)
