"""Unit tests of the side runs' logic: items as change records, replay plans and times (no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from claims_cdc import dynamodb_reader, kinesis_reader
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR, ConfigError
from claims_cdc.transform import change_order, to_row
from helpers import dynamodb_json

MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
STAMP = 1_795_555_075_257_000
ITEM = dynamodb_json({"claim_id": "CLM-1", "claimStatus": "Paid", "totalCharge": 12, "patient": {"firstName": "Ada"}})


def test_an_item_becomes_the_change_the_stream_would_carry_stamped_with_the_read_time():
    record = dynamodb_reader.item_record(ITEM, "claim_id", STAMP, "snapshot", "InsuranceClaims")
    row = to_row(record, MAPPING)
    assert (row["claimId"], row["claimStatus"], row["totalCharge"], row["patientFirstName"]) == (
        "CLM-1", "Paid", 12.0, "Ada")
    assert row["eventName"] == "INSERT" and row["eventCreationUnixTime"] == str(STAMP)
    assert row["cdc_shard_id"] == "snapshot"
    # sequence 0: a stream change of the very same microsecond orders after it, any later one too
    assert row["cdc_change_order"] == change_order(STAMP, "0") < change_order(STAMP, "1") < change_order(STAMP + 1, "0")
    assert json.loads(row["cdc_new_image"]) == ITEM


def test_the_same_item_read_twice_at_one_time_is_one_change_and_at_another_time_a_newer_one():
    first, again = (to_row(dynamodb_reader.item_record(ITEM, "claim_id", STAMP, "snapshot", "T"), MAPPING)
                    for _ in range(2))
    later = to_row(dynamodb_reader.item_record(ITEM, "claim_id", STAMP + 1, "snapshot", "T"), MAPPING)
    assert first["cdc_content_hash"] == again["cdc_content_hash"] != later["cdc_content_hash"]
    assert later["cdc_change_order"] > first["cdc_change_order"]


def test_a_key_absent_from_the_table_becomes_a_remove_of_that_key_alone():
    record = dynamodb_reader.item_record({"claim_id": {"S": "CLM-9"}}, "claim_id", STAMP, "audit", "T", event="REMOVE")
    row = to_row(record, MAPPING)
    assert (row["eventName"], row["claimId"], row["claimStatus"]) == ("REMOVE", "CLM-9", None)


def test_replay_times_are_iso_8601_utc_and_a_bad_one_names_the_param():
    from claims_cdc.replay import parse_time

    default = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time(None, "from_time", default) == parse_time("", "from_time", default) == default
    assert parse_time("2026-11-26T01:00:00Z", "from_time", default) == datetime(2026, 11, 26, 1, tzinfo=UTC)
    assert parse_time("2026-11-26T01:00:00", "as_of", default) == datetime(2026, 11, 26, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="as_of='yesterday' is not an ISO-8601 time"):
        parse_time("yesterday", "as_of", default)


def test_a_replay_plans_every_shard_or_the_chosen_ones_at_its_time_and_refuses_unknown_ones(aws_mock):
    from claims_cdc import aws

    kinesis = aws.kinesis_client("aws_mock")
    kinesis.create_stream(StreamName="S", ShardCount=3)
    at = "2026-11-26T01:00:00+00:00"
    every = kinesis_reader.plan_replay_shards(kinesis, "S", None, 10, at)
    assert [t.shard_id for t in every] == [f"shardId-00000000000{i}" for i in range(3)]
    assert [t.share for t in every] == [4, 3, 3] and {t.at_timestamp for t in every} == {at}
    assert {t.start for t in every} == {None}  # no checkpoint plays a part
    one = kinesis_reader.plan_replay_shards(kinesis, "S", ["shardId-000000000001"], 10, at)
    assert [(t.shard_id, t.share) for t in one] == [("shardId-000000000001", 10)]
    assert kinesis_reader.ShardTask.from_json(one[0].to_json()) == one[0]
    with pytest.raises(ValueError, match="shardId-000000000009 are not in stream S"):
        kinesis_reader.plan_replay_shards(kinesis, "S", ["shardId-000000000009"], 10, at)


def test_a_replayed_shard_starts_at_its_timestamp_and_continues_after_what_it_read(aws_mock):
    """AT_TIMESTAMP for the first iterator; after a record, AFTER_SEQUENCE_NUMBER (an expired iterator)."""
    from unittest import mock

    client = mock.Mock()
    client.get_shard_iterator.return_value = {"ShardIterator": "it"}
    kinesis_reader._iterator(client, "S", "shardId-0", None, "2026-11-26T01:00:00+00:00")
    assert client.get_shard_iterator.call_args.kwargs["ShardIteratorType"] == "AT_TIMESTAMP"
    assert client.get_shard_iterator.call_args.kwargs["Timestamp"] == datetime(2026, 11, 26, 1, tzinfo=UTC)
    kinesis_reader._iterator(client, "S", "shardId-0", "42", "2026-11-26T01:00:00+00:00")
    assert client.get_shard_iterator.call_args.kwargs["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    kinesis_reader._iterator(client, "S", "shardId-0", None)
    assert client.get_shard_iterator.call_args.kwargs["ShardIteratorType"] == "TRIM_HORIZON"


def test_a_snapshot_by_export_without_a_bucket_is_refused_naming_the_setting():
    from claims_cdc.settings import Settings
    from claims_cdc.snapshot import plan_snapshot

    with pytest.raises(Exception, match="CDC_SNAPSHOT_BUCKET is not set"):
        plan_snapshot(Settings(batch_root="file:///nonexistent-root"), "run", "export", 1, datetime.now(UTC))
    with pytest.raises(Exception, match="snapshot method 'dump' must be one of export, scan"):
        plan_snapshot(Settings(), "run", "dump", 1, datetime.now(UTC))


def test_the_snapshot_bucket_setting_is_checked_when_read():
    from claims_cdc.settings import load_settings

    assert load_settings({"CDC_SNAPSHOT_BUCKET": "claims-exports"}).snapshot_bucket == "claims-exports"
    with pytest.raises(ConfigError, match="CDC_SNAPSHOT_BUCKET='Not A Bucket' is not an S3 bucket name"):
        load_settings({"CDC_SNAPSHOT_BUCKET": "Not A Bucket"})


def test_an_items_hash_equals_the_hash_of_its_row_as_snowflake_returns_it():
    """The audit's comparison: the transform's values and Snowflake's answer (float, Decimal, datetime)
    hash alike; any mapped value that differs changes the hash; the envelope's columns do not count."""
    from decimal import Decimal

    from claims_cdc.audit import item_hash, values_hash

    item = dynamodb_json({"claim_id": "CLM-1", "claimStatus": "Paid", "totalCharge": Decimal("141.22"),
                          "createdTimeStamp": "2026-11-24T21:17:55.171430",
                          "patient": {"firstName": "Ada", "address": {"zip": 27940}}})
    as_snowflake_returns = {"claimId": "CLM-1", "claimStatus": "Paid", "totalCharge": 141.22, "patientZip": Decimal(27940),
                            "createdTimeStamp": datetime(2026, 11, 24, 21, 17, 55, 171430), "patientFirstName": "Ada",
                            "eventName": "MODIFY", "eventCreationUnixTime": "1"}
    assert item_hash(item, MAPPING, "T") == values_hash(as_snowflake_returns, MAPPING)
    for column, other in (("totalCharge", 141.23), ("patientZip", 27941), ("patientFirstName", "Eve"),
                          ("claimId", "CLM-2"), ("payerName", "Someone")):
        assert values_hash({**as_snowflake_returns, column: other}, MAPPING) != item_hash(item, MAPPING, "T"), column


def test_keys_are_missing_extra_or_different():
    from claims_cdc.audit import compare

    assert compare({"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "x", "d": "4"}) == {
        "missing": ["a"], "extra": ["d"], "different": ["c"]}
