"""The overrun alert under a running deployment (`make up` on free ports): Airflow's Deadline Alert on each
run (``DeadlineReference.DAGRUN_QUEUED_AT`` + ``CDC_RUN_DEADLINE_SECONDS``), its ``AsyncCallback`` run by
the triggerer, which opens the incident through Airflow Variables and publishes to SNS; the run's end closes
it. Here the deadline (21 s) is one second past the sensor's wait (20 s), so an idle stream's runs overrun.
"""

from __future__ import annotations

import itertools
import time

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.deployment]

DEPLOYMENT_ENV = {"CDC_SENSOR_TIMEOUT": "20", "CDC_RUN_DEADLINE_SECONDS": "21"}


def test_a_run_past_its_deadline_opens_the_overrun_alert_from_the_triggerer_and_its_end_recovers_it(deployment):
    deadline = time.monotonic() + 240
    messages: list[dict] = []
    while time.monotonic() < deadline:
        messages = deployment.alert_inbox()
        if any(m["subject"].startswith("[claims-cdc] RECOVERED overrun") for m in messages):
            break
        time.sleep(3)
    subjects = [m["subject"] for m in messages]
    assert subjects[:2] and subjects[0].startswith("[claims-cdc] ALERT overrun: run scheduled__"), subjects
    opened = messages[0]["message"]
    run_id = next(line for line in opened.splitlines() if line.startswith("run: "))[len("run: "):]
    assert "is still going after CDC_RUN_DEADLINE_SECONDS=21" in opened and "\ndeadline: " in opened
    recovered = [m for m in messages if m["subject"].startswith("[claims-cdc] RECOVERED overrun")]
    assert recovered and f"run: {run_id}\n" in recovered[0]["message"], subjects
    # Once per incident: between an alert and its recovery, no second alert of the kind.
    kinds = [s.split()[1] for s in subjects if " overrun: " in s]
    assert all(a != b for a, b in itertools.pairwise(kinds)), kinds
