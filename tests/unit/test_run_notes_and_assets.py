"""A run's note and the destination's Asset: what they say, and that neither carries a record's value."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from claims_cdc import run_notes
from claims_cdc.assets import destination_asset, merge_event_extra
from claims_cdc.settings import load_settings

STAGED = {"batch_id": "b", "records": 12, "rows_staged": 9, "duplicates_dropped": 2, "rows_rejected": 1}
MERGED = {"batches": 1, "inserted": 6, "updated": 2, "deleted": 1, "rows_cleaned": 9}
LAG = {"records_behind": 4, "bounded": False, "seconds_behind": 7.6}


def test_the_note_says_records_merged_dead_lettered_and_lag():
    assert run_notes.compose(STAGED, MERGED, LAG) == (
        "records 12 · merged +6 inserted, ~2 updated, -1 deleted · dead-lettered 1 · lag 8 s (4 records behind)")


@pytest.mark.parametrize(("staged", "merged", "lag", "expected"), [
    (None, None, {"records_behind": 0, "bounded": False, "seconds_behind": 0.0},
     "no records (the stream stayed idle, or the run stopped before staging) · lag 0 s (0 records behind)"),
    (STAGED, None, None, "records 12 · not merged · dead-lettered 1 · lag unknown"),
    (STAGED, MERGED, {"records_behind": 1000, "bounded": True, "seconds_behind": 61.2},
     "records 12 · merged +6 inserted, ~2 updated, -1 deleted · dead-lettered 1 · lag 61 s (>=1000 records behind)"),
])
def test_the_note_of_an_idle_a_failed_or_a_lagging_run(staged, merged, lag, expected):
    assert run_notes.compose(staged, merged, lag) == expected


def test_the_note_is_built_from_counts_alone_whatever_else_an_xcom_holds():
    staged = {**STAGED, "claimId": "CLM-SECRET", "patientFirstName": "Ada"}  # never read
    assert "SECRET" not in run_notes.compose(staged, MERGED, LAG) and "Ada" not in run_notes.compose(staged, MERGED, LAG)


@pytest.mark.parametrize(("conn", "base"), [
    (SimpleNamespace(host="127.0.0.1", port=8080, schema=None), "http://127.0.0.1:8080"),
    (SimpleNamespace(host="airflow.example.org", port=None, schema="https"), "https://airflow.example.org"),
    (SimpleNamespace(host="https://airflow.example.org/", port=None, schema=""), "https://airflow.example.org"),
])
def test_the_api_address_comes_from_the_connection(conn, base):
    assert run_notes._api_base(conn) == base


def test_without_the_api_connection_the_note_is_not_written(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API", raising=False)
    settings = load_settings({"CDC_AIRFLOW_API_CONN_ID": "no_such_connection_here"})
    assert run_notes.write(settings, "claims_cdc", "manual__1", "records 1") is False


def _api(monkeypatch, answers):
    """The note's API calls answered from ``answers`` (status codes, or an exception to raise), in order."""
    import httpx

    calls = []

    def handler(request):
        calls.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"access_token": "t"} if request.url.path == "/auth/token" else {})

    real_client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(handler), **kw))
    monkeypatch.setattr(run_notes.time, "sleep", lambda seconds: calls.append(f"sleep {seconds}"))
    monkeypatch.setenv("AIRFLOW_CONN_NOTE_API", "http://admin:admin@127.0.0.1:8080")
    return load_settings({"CDC_AIRFLOW_API_CONN_ID": "note_api"}), calls


def test_the_note_is_tried_again_at_once_after_a_server_error_or_a_dropped_connection(monkeypatch):
    """The API server answers 500 while its (SQLite) metadata database stays locked: the note's calls are
    tried again within the task, not after the task's retry delay while the next run waits."""
    import httpx

    settings, calls = _api(monkeypatch, [httpx.ConnectError("refused"), 201, 500, 200])
    assert run_notes.write(settings, "claims_cdc", "manual__1", "records 1") is True
    assert calls == ["POST /auth/token", "sleep 0.5", "POST /auth/token",
                     "PATCH /api/v2/dags/claims_cdc/dagRuns/manual__1", "sleep 0.5",
                     "PATCH /api/v2/dags/claims_cdc/dagRuns/manual__1"]


def test_a_lasting_server_error_fails_the_task(monkeypatch):
    settings, calls = _api(monkeypatch, [201, 500, 500, 500])
    with pytest.raises(RuntimeError, match="answered HTTP 500"):
        run_notes.write(settings, "claims_cdc", "manual__1", "records 1")
    assert calls.count("PATCH /api/v2/dags/claims_cdc/dagRuns/manual__1") == 3
    assert [c for c in calls if c.startswith("sleep")] == ["sleep 0.5", "sleep 1.0"]


def test_a_refused_login_is_not_tried_again(monkeypatch):
    settings, calls = _api(monkeypatch, [401])
    with pytest.raises(RuntimeError, match="HTTP 401"):
        run_notes.write(settings, "claims_cdc", "manual__1", "records 1")
    assert calls == ["POST /auth/token"]


def test_the_destination_asset_follows_the_snowflake_providers_uri_convention():
    settings = load_settings({"CDC_SNOWFLAKE_ACCOUNT": "acme-prod", "CDC_DEST_TABLE": "claims"})
    asset = destination_asset(settings)
    assert asset.uri == "snowflake://acme-prod/CDC_DB/CDC_SCHEMA/claims"
    from urllib.parse import urlsplit

    from airflow.providers.snowflake.assets.snowflake import sanitize_uri

    assert sanitize_uri(urlsplit(asset.uri)).path == "/CDC_DB/CDC_SCHEMA/claims"


def test_the_asset_events_extra_is_the_merges_counts_and_run():
    assert merge_event_extra({**MERGED, "note": "x"}, "manual__1") == {
        "inserted": 6, "updated": 2, "deleted": 1, "batches": 1, "dag_run_id": "manual__1"}
