"""The status at a glance, formatted: every section says what it must, and nothing shows a record's value.

The sections' data are built here as the collectors return them; tests/integration/test_status_command.py
reads them from a real run on the local stack.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from claims_cdc import status
from claims_cdc.settings import load_settings
from claims_cdc.snowflake import StatementFailed

NOW = datetime(2026, 11, 26, 2, 30, tzinfo=UTC)


def _status(**sections):
    return {"generated_at": NOW, "stream": "InsuranceClaimsStream", "records_bound": 10_000,
            "destination": "CDC_DB.CDC_SCHEMA.openflow_insclaim_dest_tbl", "sections": sections}


SHARDS = [
    {"shard_id": "shardId-000000000000", "state": "open", "position": "49657000000000000000000000000000000002",
     "records_behind": 3, "records_behind_bounded": False, "seconds_behind": 12.4, "millis_behind_latest": 900,
     "oldest_unread_arrival": NOW - timedelta(seconds=12.4)},
    {"shard_id": "shardId-000000000001", "state": "open", "position": None, "records_behind": 10_000,
     "records_behind_bounded": True, "seconds_behind": 3600.0, "millis_behind_latest": 0,
     "oldest_unread_arrival": NOW - timedelta(hours=1)},
    {"shard_id": "shardId-000000000002", "state": "retired", "position": "4965", "records_behind": 0,
     "records_behind_bounded": False, "seconds_behind": 0.0, "millis_behind_latest": None,
     "oldest_unread_arrival": None},
]
BATCH = {"batch_id": "20261126T022900000000-abc", "dag_run_id": "scheduled__2026-11-26T02:29:00+00:00",
         "status": "MERGED", "staged_at": NOW - timedelta(minutes=1), "merged_at": NOW - timedelta(seconds=50),
         "records_read": 12, "rows_staged": 9, "duplicates_dropped": 2, "rows_rejected": 1, "history_rows": 9}
BACKLOG = {"rows": 4, "claimed_by_merge": 1, "oldest_change_at": NOW - timedelta(seconds=95),
           "oldest_change_age_seconds": 95.0, "oldest_staged_at": NOW - timedelta(seconds=30)}
LETTERS = [{"reason": "claimStatus: expected S, got N", "records": 3, "waiting": 2}]
RECONCILIATION = {"checked_at": NOW - timedelta(minutes=4), "dag_run_id": "manual__1", "dynamodb_count": 19,
                  "snowflake_count": 18, "difference": -1, "status": "MISMATCH"}


def test_every_section_shows_its_numbers():
    text = status.format_status(_status(shards=SHARDS, last_batch=BATCH, staging_backlog=BACKLOG,
                                        dead_letters=LETTERS, last_reconciliation=RECONCILIATION))
    lines = text.splitlines()
    shard0 = next(line for line in lines if "shardId-000000000000" in line)
    assert shard0.split()[:4] == ["shardId-000000000000", "open", "3", "12.4"]
    assert shard0.endswith("49657000000000000000000000000000000002")
    shard1 = next(line for line in lines if "shardId-000000000001" in line)
    assert ">=10000" in shard1 and "none yet (reads from TRIM_HORIZON)" in shard1
    assert next(line for line in lines if "shardId-000000000002" in line).split()[1] == "retired"
    assert "records behind counted up to 10000 per shard" in lines[0]
    assert "20261126T022900000000-abc (MERGED), run scheduled__2026-11-26T02:29:00+00:00" in text
    assert "staged 2026-11-26 02:29:00 UTC, merged 2026-11-26 02:29:10 UTC" in text
    assert "records read 12 = staged 9 + re-deliveries dropped 2 + dead-lettered 1; new history rows 9" in text
    assert "4 rows waiting to be merged (1 claimed by a merge in progress)" in text
    assert "oldest change 2026-11-26 02:28:25 UTC (95.0 s ago)" in text
    assert "       3        2  claimStatus: expected S, got N" in text
    assert ("2026-11-26 02:26:00 UTC: MISMATCH, destination 18 rows, DynamoDB 19 items (difference -1), "
            "run manual__1") in text


def test_a_batch_of_dead_letters_alone_has_no_rows_to_merge_rather_than_waiting_for_a_merge():
    only_dead = {**BATCH, "status": "STAGED", "merged_at": None, "records_read": 1, "rows_staged": 0,
                 "duplicates_dropped": 0, "rows_rejected": 1, "history_rows": 0}
    assert "staged 2026-11-26 02:29:00 UTC, no rows to merge" in status.format_last_batch(only_dead)[1]
    waiting = {**BATCH, "status": "STAGED", "merged_at": None}
    assert status.format_last_batch(waiting)[1].endswith("not merged yet")


def test_an_idle_empty_pipeline_says_so_rather_than_showing_blanks():
    text = status.format_status(_status(shards=[], last_batch=None,
                                        staging_backlog={"rows": 0, "claimed_by_merge": 0, "oldest_change_at": None,
                                                         "oldest_change_age_seconds": None, "oldest_staged_at": None},
                                        dead_letters=[], last_reconciliation=None))
    assert "no shard listed and no checkpoint stored" in text
    assert text.count("none yet") == 2
    assert "0 rows waiting to be merged" in text
    assert "dead letters by reason\n  none" in text


def test_json_output_is_the_same_data_with_times_as_iso_text():
    doc = json.loads(status.to_json(_status(shards=SHARDS, last_batch=BATCH)))
    assert doc["sections"]["shards"][0]["records_behind"] == 3
    assert doc["sections"]["last_batch"]["merged_at"] == "2026-11-26T02:29:10+00:00"
    assert doc["generated_at"] == "2026-11-26T02:30:00+00:00"


def test_change_time_is_read_from_the_order_key():
    from claims_cdc.transform import change_order

    micros = 1_764_124_200_123_456
    assert status.change_time(change_order(micros, "4965")) == datetime(2025, 11, 26, 2, 30, 0, 123456, tzinfo=UTC)
    assert status.change_time(None) is None


def test_a_section_that_cannot_be_read_is_shown_unavailable_and_the_others_still_are():
    def broken(ctx):
        raise StatementFailed("last_batch", 100038, "22018", "01b-query")

    def leaky(ctx):
        raise ValueError("Numeric value 'Ada Lovelace' is not recognized")  # a foreign error may quote a value

    sections = {"last_batch": status.Section("last batch", broken, status.format_last_batch),
                "other": status.Section("other", leaky, status.format_last_batch),
                "dead_letters": status.Section("dead letters", lambda ctx: [], status.format_dead_letters)}
    ctx = status.StatusContext(settings=None, mapping=None, open_snow=None, kinesis=None, now=NOW)  # type: ignore[arg-type]
    ctx.settings = type("S", (), {"kinesis_stream": "s", "database": "d", "schema": "c", "dest_table": "t"})()
    current = status.collect(ctx, sections)
    text = status.format_status(current, sections)
    assert status.unavailable_sections(current) == ["last_batch", "other"]
    assert "unavailable: StatementFailed (statement last_batch failed in Snowflake: error 100038" in text
    assert "unavailable: ValueError" in text and "Ada" not in text
    assert "dead letters\n  none" in text


def test_when_snowflake_cannot_be_reached_its_sections_are_unavailable_and_kinesis_alone_still_shows():
    opened = []

    def open_snow():
        opened.append(1)
        raise ConnectionRefusedError("could not reach host")

    def kinesis_only(ctx):
        return [{"shard_id": "shardId-000000000000", "state": "open", "position": None, "records_behind": 2,
                 "records_behind_bounded": False, "seconds_behind": 5.0}]

    sections = {"stream": status.Section("stream", kinesis_only, status.format_shards),
                "last_batch": status.Section("last batch", status.collect_last_batch, status.format_last_batch),
                "dead_letters": status.Section("dead letters", status.collect_dead_letters,
                                               status.format_dead_letters)}
    ctx = status.StatusContext(settings=load_settings({}), mapping=None, open_snow=open_snow, kinesis=None,  # type: ignore[arg-type]
                               now=NOW)
    current = status.collect(ctx, sections)
    assert status.unavailable_sections(current) == ["last_batch", "dead_letters"]
    assert opened == [1], "one attempt, not one per section"
    text = status.format_status(current, sections)
    assert text.count("unavailable: ConnectionRefusedError") == 2 and "could not reach host" not in text
    assert "shardId-000000000000" in text


def test_open_alerts_format_kind_time_and_summary():
    lines = status.format_open_alerts([{"kind": "lag", "opened_at": "2026-11-26T02:00:00+00:00",
                                        "summary": "oldest unmerged change 640 s old (limit 300 s)"}])
    assert lines == ["  lag            since 2026-11-26T02:00:00+00:00  oldest unmerged change 640 s old (limit 300 s)"]
    assert status.format_open_alerts([]) == ["  none"]
