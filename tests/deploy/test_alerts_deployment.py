"""The alerting done-when, under a running deployment (`make up`, started on free ports by the ``deployment``
fixture, with short retries so that the test stays short): Snowflake (fakesnow) stopped until a task has
spent its retries leaves exactly one failure alert in claims-cdc-alerts-inbox, however many runs fail
meanwhile under @continuous; fakesnow back, exactly one recovery message follows; neither carries a
record's value. The inbox is read as `make alerts` reads it (claims_cdc_dev.alerts_inbox), and printed to
.local/test-artifacts/alerts-inbox.txt.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.deployment]

#: One retry, five seconds after the first try: a task spends its retries in seconds, not minutes (and
#: a failed run takes about ten, so the test restarts fakesnow before five runs fail and the DAG pauses).
DEPLOYMENT_ENV = {"CDC_TASK_RETRIES": "1", "CDC_RETRY_DELAY_SECONDS": "5"}


def _inbox(deployment) -> list[dict]:
    return deployment.alert_inbox()


def _wait_for_messages(deployment, count: int, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    messages = _inbox(deployment)
    while len(messages) < count and time.monotonic() < deadline:
        time.sleep(2)
        messages = _inbox(deployment)
    return messages


def _stack(deployment):
    from claims_cdc_dev import stack as local_stack

    return local_stack, local_stack.StackConfig(state_dir=deployment.state_dir, fakesnow_port=deployment.fakesnow_port)


def _failed_runs(deployment) -> list[dict]:
    return deployment.api("/dags/claims_cdc/dagRuns?state=failed&limit=100")["dag_runs"]


def _put_claim(deployment, claim_id: str, marker: str) -> None:
    deployment.dynamodb_table().put_item(Item={
        "claim_id": claim_id, "claimStatus": f"Submitted {marker}", "totalCharge": Decimal("12.5"),
        "patient": {"lastName": marker, "address": {"zip": Decimal(94107), "state": "CA"}},
        "createdTimeStamp": "2026-11-24T10:00:00.000000",
    })


def test_snowflake_down_until_retries_are_spent_gives_one_alert_and_back_up_one_recovery(deployment):
    local_stack, cfg = _stack(deployment)
    marker = f"PHIMARK{uuid.uuid4().hex[:10]}"
    assert _inbox(deployment) == []

    local_stack.stop_fakesnow(cfg)
    try:
        # A claim arrives while Snowflake is down: the run the stream wakes needs Snowflake and fails.
        _put_claim(deployment, f"CLM-DOWN-{uuid.uuid4().hex[:6]}", marker)
        messages = _wait_for_messages(deployment, 1, seconds=240)
        assert len(messages) == 1, "no failure alert within four minutes of Snowflake going down"
        # Snowflake stays down until a second run has failed too (under @continuous the next run starts at
        # once): no second alert. (Not five: the DAG would pause itself, which is the `paused` alert.)
        deadline = time.monotonic() + 120
        while len(_failed_runs(deployment)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(_failed_runs(deployment)) >= 2, "a second run did not fail while Snowflake was down"
        assert len(_inbox(deployment)) == 1
    finally:
        local_stack.restart_fakesnow(cfg, deployment.env)

    messages = _wait_for_messages(deployment, 2, seconds=240)
    time.sleep(10)  # nothing more follows
    messages = _inbox(deployment)
    (deployment.artifacts / "alerts-inbox.txt").write_text("\n\n".join(
        f"== {m['timestamp']}  {m['subject']}\n{m['message']}" for m in messages))

    subjects = [m["subject"] for m in messages]
    assert len(messages) == 2, subjects
    assert subjects[0].startswith("[claims-cdc] ALERT failure: "), subjects
    assert subjects[1].startswith("[claims-cdc] RECOVERED failure: "), subjects
    alert = messages[0]["message"]
    for key in ("dag: claims_cdc", "task: ", "run: ", "try: 2", "error: ", "reason: ", "log: http://127.0.0.1:"):
        assert key in alert, (key, alert)
    for message in messages:
        assert marker not in message["subject"] and marker not in message["message"]
    assert not deployment.api("/dags/claims_cdc")["is_paused"]
