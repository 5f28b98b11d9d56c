"""Against a running deployment (`make up`, started on free ports by the ``deployment`` fixture):

- a claim written with plain boto3 reaches the destination on its own: no trigger, no `dags test`, only
  the scheduler's continuous runs and the triggerer's deferred sensor;
- the Airflow UI in a real browser: headless Chromium (Debian's package, installed by `make test`'s
  set-up) driven by Playwright logs in, opens claims_cdc, checks the trigger form, triggers a run and waits
  for it to succeed, having merged a claim written while it ran. Screenshots go to .local/test-artifacts/.

One module, so the deployment starts once and stops when the module ends.
"""

from __future__ import annotations

import shutil
import time
from decimal import Decimal

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.deployment]


def _destination_row(deployment, claim_id: str) -> tuple | None:
    with deployment.snowflake() as snow:
        cursor = snow.connection.cursor()
        cursor.execute(
            "SELECT claimId, claimStatus, totalCharge, patientZip, eventName "
            "FROM CDC_DB.CDC_SCHEMA.openflow_insclaim_dest_tbl WHERE claimId = ?",
            [claim_id],
        )
        rows = cursor.fetchall()
    return rows[0] if rows else None


def _wait_for_row(deployment, claim_id: str, seconds: float = 120) -> tuple | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = _destination_row(deployment, claim_id)
        if row is not None:
            return row
        time.sleep(1)
    return None


def test_claim_written_with_plain_boto3_appears_with_no_manual_action(deployment):
    claim_id = f"LIVE-{int(time.time())}"
    runs_before = {r["dag_run_id"] for r in deployment.api("/dags/claims_cdc/dagRuns?limit=100")["dag_runs"]}
    table = deployment.dynamodb_table()
    table.put_item(Item={
        "claim_id": claim_id,
        "claimStatus": "Submitted",
        "totalCharge": Decimal("1234.56"),
        "patient": {"address": {"zip": Decimal(94107), "state": "CA"}},
        "createdTimeStamp": "2026-11-24T10:00:00.000000",
    })

    row = _wait_for_row(deployment, claim_id)

    assert row is not None, "the claim never reached openflow_insclaim_dest_tbl"
    assert row[0] == claim_id and row[1] == "Submitted" and float(row[2]) == 1234.56 and int(row[3]) == 94107

    # A change to it follows on its own, too.
    table.update_item(Key={"claim_id": claim_id}, UpdateExpression="SET claimStatus = :s",
                      ExpressionAttributeValues={":s": "Approved"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (_destination_row(deployment, claim_id) or ("", ""))[1] != "Approved":
        time.sleep(1)
    assert _destination_row(deployment, claim_id)[1] == "Approved"

    runs = [r for r in deployment.api("/dags/claims_cdc/dagRuns?limit=100")["dag_runs"]
            if r["dag_run_id"] not in runs_before]
    assert runs, "no DAG run since the write"
    assert {r["run_type"] for r in runs} == {"scheduled"}, "something triggered a run by hand"
    assert all(r["state"] in {"success", "running", "queued"} for r in runs), [r["state"] for r in runs]


def test_scheduled_runs_reconcile_once_then_skip_until_the_interval_has_passed(deployment):
    """CDC_RECONCILE_EVERY_SECONDS (300 s by default): of the scheduled runs that merged (the claim and its
    change above, a few seconds apart), the first reconciles and the next ones end `reconciliation` skipped,
    so that the run after them is not held up by a DynamoDB count."""
    deadline = time.monotonic() + 180
    states: list[str] = []
    while time.monotonic() < deadline:
        runs = deployment.api("/dags/claims_cdc/dagRuns?run_type=scheduled&order_by=start_date&limit=100")
        states = []
        for run in runs["dag_runs"]:
            if run["state"] != "success":
                continue
            tis = {ti["task_id"]: ti["state"] for ti in deployment.api(
                f"/dags/claims_cdc/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]}
            if tis.get("merged_counts") == "success":
                states.append(tis.get("reconciliation"))
        if len(states) >= 2:
            break
        time.sleep(2)
    assert len(states) >= 2, f"fewer than two scheduled runs merged: {states}"
    assert states[0] == "success" and set(states[1:]) == {"skipped"}, states


def test_the_waiting_sensor_is_deferred_to_the_triggerer(deployment):
    """While the stream is idle the sensor holds no worker slot: its task instance is DEFERRED."""
    deadline = time.monotonic() + 120
    states: list[str] = []
    while time.monotonic() < deadline:
        runs = deployment.api("/dags/claims_cdc/dagRuns?state=running&limit=5")["dag_runs"]
        for run in runs:
            ti = deployment.api(f"/dags/claims_cdc/dagRuns/{run['dag_run_id']}/taskInstances/stream_has_records")
            states.append(ti["state"])
            if ti["state"] == "deferred":
                return
        time.sleep(1)
    pytest.fail(f"the sensor was never seen deferred; states seen: {sorted(set(states))}")


# --- the browser ---

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, as root, on a machine with no route out: no sandbox and no background calls to Google.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page(deployment, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(30_000)
        opened = context.new_page()
        try:
            yield opened
        finally:
            # The last thing the browser showed, pass or fail (a failure's evidence).
            opened.screenshot(path=str(deployment.artifacts / "browser-last-page.png"), full_page=True)
            browser.close()


def test_log_in_open_claims_cdc_trigger_a_run_and_see_it_succeed(deployment, page):
    from playwright.sync_api import expect

    page.goto(deployment.ui_url, wait_until="networkidle")
    page.get_by_label("Username").fill(deployment.user)
    page.get_by_label("Password").fill(deployment.password)
    page.get_by_role("button", name="Sign in").click()
    # The UI loads its data after the page (a progress bar while it does): under a loaded machine (CI runs
    # this beside the whole suite) that takes longer than expect()'s 5 s default.
    loaded = 30_000
    expect(page.get_by_role("link", name="Dags").first).to_be_visible(timeout=loaded)  # signed-in navigation

    page.goto(f"{deployment.ui_url}/dags/claims_cdc", wait_until="networkidle")
    expect(page.get_by_role("heading", name="claims_cdc")).to_be_visible(timeout=loaded)
    expect(page.get_by_text("@continuous")).to_be_visible(timeout=loaded)

    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Trigger Dag - claims_cdc")).to_be_visible()
    # Every Param shows its title and description in the form.
    params = deployment.api("/dags/claims_cdc/details")["params"]
    assert set(params) == {"max_records", "sensor_timeout"}
    for param in params.values():
        expect(form.get_by_text(param["schema"]["title"]).first).to_be_visible()
        expect(form.get_by_text(param["description"]).first).to_be_visible()
    form.get_by_role("spinbutton").nth(1).fill("90")  # seconds to wait for records
    page.screenshot(path=str(deployment.artifacts / "browser-trigger-form.png"))
    before = {r["dag_run_id"] for r in deployment.api("/dags/claims_cdc/dagRuns?limit=100")["dag_runs"]}
    form.get_by_role("button", name="Trigger", exact=True).click()

    run = _wait_for_new_manual_run(deployment, before)
    assert run["conf"].get("sensor_timeout") == 90
    run_path = f"/dags/claims_cdc/dagRuns/{run['dag_run_id']}"

    # Queued behind the continuous run in progress (max_active_runs=1). Once it runs, it alone reads the
    # stream: a claim written now is this run's work.
    _wait_for_state(deployment, run_path, {"running"}, seconds=180)
    claim_id = f"BROWSER-{int(time.time())}"
    deployment.dynamodb_table().put_item(Item={"claim_id": claim_id, "claimStatus": "Submitted"})
    assert _wait_for_state(deployment, run_path, {"success", "failed"}, seconds=180) == "success"
    merged = deployment.api(f"{run_path}/taskInstances/merged_counts")
    assert merged["state"] == "success"
    with deployment.snowflake() as snow:
        cursor = snow.connection.cursor()
        cursor.execute("SELECT claimStatus FROM CDC_DB.CDC_SCHEMA.openflow_insclaim_dest_tbl WHERE claimId = ?",
                       [claim_id])
        assert cursor.fetchall() == [("Submitted",)]

    page.goto(f"{deployment.ui_url}/dags/claims_cdc/runs/{run['dag_run_id']}", wait_until="networkidle")
    # The run page loads its task table (now with one mapped task per shard) after "networkidle": on the busy
    # 2-core machine that took more than Playwright's default 5 s once (the page still showing its progress bar).
    expect(page.get_by_text("success").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(deployment.artifacts / "browser-run-succeeded.png"), full_page=True)


def _wait_for_state(deployment, run_path: str, states: set[str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    state = None
    while time.monotonic() < deadline:
        state = deployment.api(run_path)["state"]
        if state in states:
            return state
        time.sleep(1)
    pytest.fail(f"the run stayed {state!r}, not {sorted(states)}, for {seconds:.0f}s")


def _wait_for_new_manual_run(deployment, before: set[str]) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for run in deployment.api("/dags/claims_cdc/dagRuns?limit=100")["dag_runs"]:
            if run["dag_run_id"] not in before and run["run_type"] == "manual":
                return run
        time.sleep(1)
    pytest.fail("the UI's Trigger button created no manual run")
