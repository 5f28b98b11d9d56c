"""How often a run reconciles (claims_cdc.cadence): offline, on times, run types and a stand-in task instance."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.api.datamodels._generated import DagRunType

from claims_cdc.cadence import reconciliation_skip_reason, skip_reconciliation_reason
from claims_cdc.settings import Settings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EVERY_5_MIN = dataclasses.replace(Settings(), reconcile_every_seconds=300)


def test_a_scheduled_run_soon_after_a_reconciliation_skips_naming_the_setting():
    reason = reconciliation_skip_reason(EVERY_5_MIN, DagRunType.SCHEDULED, NOW - timedelta(seconds=42), NOW)
    assert reason is not None
    assert "42s ago" in reason and "CDC_RECONCILE_EVERY_SECONDS=300" in reason


@pytest.mark.parametrize("ago", [300, 301, 3_600])
def test_a_scheduled_run_reconciles_once_the_interval_has_passed(ago):
    assert reconciliation_skip_reason(EVERY_5_MIN, "scheduled", NOW - timedelta(seconds=ago), NOW) is None


def test_the_first_reconciliation_is_never_skipped():
    assert reconciliation_skip_reason(EVERY_5_MIN, DagRunType.SCHEDULED, None, NOW) is None


@pytest.mark.parametrize("run_type", [DagRunType.MANUAL, DagRunType.BACKFILL, DagRunType.ASSET_TRIGGERED,
                                      "manual", None])
def test_a_run_that_was_not_scheduled_always_reconciles(run_type):
    assert reconciliation_skip_reason(EVERY_5_MIN, run_type, NOW - timedelta(seconds=1), NOW) is None


def test_zero_reconciles_in_every_run():
    every_run = dataclasses.replace(Settings(), reconcile_every_seconds=0)
    assert reconciliation_skip_reason(every_run, DagRunType.SCHEDULED, NOW - timedelta(seconds=1), NOW) is None


class _TaskInstance:
    """Stands in for the running task instance: answers get_previous_ti as Airflow's API would."""

    def __init__(self, previous):
        self.previous = previous
        self.asked = []

    def get_previous_ti(self, state=None):
        self.asked.append(state)
        return self.previous


def _context(run_type, previous):
    return {"dag_run": SimpleNamespace(run_type=run_type), "ti": _TaskInstance(previous)}


def test_the_last_reconciliation_is_the_previous_successful_task_instance():
    context = _context(DagRunType.SCHEDULED, SimpleNamespace(end_date=NOW - timedelta(seconds=10), start_date=None))
    assert "10s ago" in skip_reconciliation_reason(EVERY_5_MIN, context, NOW)
    assert [str(s.value) for s in context["ti"].asked] == ["success"]  # skipped ones do not count


def test_a_previous_instance_without_an_end_counts_from_its_start():
    context = _context(DagRunType.SCHEDULED, SimpleNamespace(end_date=None, start_date=NOW - timedelta(seconds=20)))
    assert "20s ago" in skip_reconciliation_reason(EVERY_5_MIN, context, NOW)


def test_no_previous_successful_reconciliation_reconciles():
    assert skip_reconciliation_reason(EVERY_5_MIN, _context(DagRunType.SCHEDULED, None), NOW) is None


def test_a_manual_run_does_not_even_ask_for_the_previous_reconciliation():
    context = _context(DagRunType.MANUAL, SimpleNamespace(end_date=NOW, start_date=NOW))
    assert skip_reconciliation_reason(EVERY_5_MIN, context, NOW) is None
    assert context["ti"].asked == []
