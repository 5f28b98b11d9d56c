"""Where a run's time goes (dev/claims_cdc_dev/run_breakdown.py), on task instances as Airflow's REST API
returns them."""

from __future__ import annotations

from claims_cdc_dev.run_breakdown import breakdown, format_breakdown

UPSTREAM = {"stream_has_records": set(), "shard_batch": {"stream_has_records"},
            "merged_counts": {"shard_batch"}, "reconciliation": {"merged_counts"},
            "removed_batch_files": {"merged_counts"}}


def _at(seconds: float) -> str:
    return f"2026-11-25T12:00:{seconds:06.3f}Z"


def _ti(run: str, task: str, queued: float, start: float, end: float, state: str = "success", map_index=-1):
    return {"dag_run_id": run, "task_id": task, "map_index": map_index, "state": state,
            "queued_when": _at(queued), "start_date": _at(start), "end_date": _at(end)}


RUNS = [
    {"dag_run_id": "r1", "start_date": _at(0), "end_date": _at(10)},
    {"dag_run_id": "r2", "start_date": _at(11), "end_date": _at(20)},
    {"dag_run_id": "idle", "start_date": _at(21), "end_date": _at(30)},
    {"dag_run_id": "running", "start_date": _at(31), "end_date": None},
]
TIS = [
    _ti("r1", "stream_has_records", 0.2, 0.5, 1.5),
    _ti("r1", "shard_batch", 2.0, 2.5, 4.5),
    _ti("r1", "merged_counts", 5.0, 5.5, 7.0),
    _ti("r1", "reconciliation", 7.5, 8.0, 10.0),
    _ti("r1", "removed_batch_files", 7.5, 8.0, 9.0),
    _ti("r2", "stream_has_records", 11.2, 11.5, 12.5),
    # mapped: from the first instance's queueing to the last one's end
    _ti("r2", "shard_batch", 13.0, 13.5, 14.0, map_index=0),
    _ti("r2", "shard_batch", 13.0, 13.6, 15.5, map_index=1),
    _ti("r2", "merged_counts", 16.0, 16.5, 18.0),
    _ti("r2", "reconciliation", 18.5, 19.0, 19.2, state="skipped"),
    _ti("r2", "removed_batch_files", 18.5, 19.0, 20.0),
    _ti("idle", "stream_has_records", 21.2, 21.5, 30.0, state="skipped"),
    {"dag_run_id": "idle", "task_id": "merged_counts", "state": "skipped", "queued_when": None,
     "start_date": _at(30), "end_date": _at(30)},
]


def test_each_task_splits_into_scheduling_start_up_and_running():
    result = breakdown(RUNS, TIS, UPSTREAM)
    first = result.runs[0].tasks
    assert first["shard_batch"].parts == {"scheduling": 0.5, "start-up": 0.5, "running": 2.0}
    assert first["stream_has_records"].parts == {"scheduling": 0.2, "start-up": 0.3, "running": 1.0}
    mapped = result.runs[1].tasks["shard_batch"]
    assert mapped.parts == {"scheduling": 0.5, "start-up": 0.5, "running": 2.0}


def test_runs_that_merged_nothing_or_have_not_ended_are_left_out_but_counted():
    result = breakdown(RUNS, TIS, UPSTREAM)
    assert [r.run_id for r in result.runs] == ["r1", "r2"]
    assert result.other_runs == 1


def test_the_critical_path_ends_with_the_task_that_ended_last_and_adds_up_to_the_run():
    result = breakdown(RUNS, TIS, UPSTREAM)
    first, second = result.runs
    assert first.critical_path == ["stream_has_records", "shard_batch", "merged_counts", "reconciliation"]
    assert second.critical_path[-1] == "removed_batch_files"  # the skipped reconciliation ended first
    assert sum(first.critical_parts().values()) == first.seconds == 10.0
    assert (first.visible_after, second.gap_before) == (7.0, 1.0)


def test_the_summary_holds_medians_per_task_in_the_order_tasks_ran():
    summary = breakdown(RUNS, TIS, UPSTREAM).summary()
    assert (summary["runs"], summary["run_s"], summary["between_runs_s"]) == (2, 9.5, 1.0)
    assert list(summary["tasks_s"])[:3] == ["stream_has_records", "shard_batch", "merged_counts"]
    assert summary["tasks_s"]["merged_counts"] == {"scheduling": 0.5, "start-up": 0.5, "running": 1.5}
    text = format_breakdown(breakdown(RUNS, TIS, UPSTREAM))
    assert "2 runs that merged" in text and "merged_counts" in text


def test_the_slowest_run_is_named_with_its_critical_path():
    summary = breakdown(RUNS, TIS, UPSTREAM).summary()
    first, second = breakdown(RUNS, TIS, UPSTREAM).runs
    slow = max((first, second), key=lambda run: run.seconds)
    assert summary["slowest_run"]["run_id"] == slow.run_id and summary["slowest_run"]["run_s"] == slow.seconds
    assert list(summary["slowest_run"]["critical_path_s"]) == slow.critical_path
    assert f"the slowest run, {slow.run_id}" in format_breakdown(breakdown(RUNS, TIS, UPSTREAM))


def test_no_run_that_merged_says_so():
    assert "no finished run merged" in format_breakdown(breakdown(RUNS[2:], TIS, UPSTREAM))
