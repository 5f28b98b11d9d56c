"""Where the time of a ``claims_cdc`` run goes, from Airflow's own records of its runs (REST API v2).

    breakdown = fetch_breakdown(api_url, user, password, since=started_at)
    print(format_breakdown(breakdown))

Per finished run that merged something, and per task (a mapped task counts from its first instance's
queueing to its last instance's end):

- **scheduling**: from the moment the task's upstream tasks were all done (the run's start, for a first
  task) to the scheduler queueing it;
- **start-up**: queued to running (the executor picks it up and forks the task process);
- **running**: running to done (in the task process: the DAG file's parse, imports, the work; for the
  sensor also any wait for records, deferred ones included).

A run's critical path is the chain of tasks that ended last, walked back from the run's last task; its
length splits into those three parts, and the gap *between runs* is from one run's end to the next one's
start (under ``@continuous`` a run starts only when the previous one has ended). Medians over the runs.
Reads ids, states and times only.
"""

from __future__ import annotations

import json
import statistics
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PARTS = ("scheduling", "start-up", "running")
#: The task whose end makes a run's changes visible in the destination.
VISIBLE_TASK = "merged_counts"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class TaskTimes:
    """One task of one run: seconds of each part (see the module's docstring)."""

    task_id: str
    state: str
    ready: datetime
    queued: datetime
    start: datetime
    end: datetime

    @property
    def parts(self) -> dict[str, float]:
        return {
            "scheduling": max(0.0, (self.queued - self.ready).total_seconds()),
            "start-up": max(0.0, (self.start - self.queued).total_seconds()),
            "running": max(0.0, (self.end - self.start).total_seconds()),
        }


@dataclass
class RunTimes:
    run_id: str
    start: datetime
    end: datetime
    gap_before: float | None  # seconds since the previous run ended; None for the first run seen
    tasks: dict[str, TaskTimes]
    critical_path: list[str]

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def visible_after(self) -> float | None:
        task = self.tasks.get(VISIBLE_TASK)
        return None if task is None else (task.end - self.start).total_seconds()

    def critical_parts(self) -> dict[str, float]:
        return {part: sum(self.tasks[t].parts[part] for t in self.critical_path) for part in PARTS}


@dataclass
class Breakdown:
    runs: list[RunTimes]
    other_runs: int  # finished runs that merged nothing (the sensor skipped, or a failure)
    task_order: list[str] = field(default_factory=list)

    def median(self, values: Iterable[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), 2) if known else None

    def summary(self) -> dict[str, Any]:
        """Medians, in seconds, as JSON."""
        return {
            "runs": len(self.runs),
            "other_runs": self.other_runs,
            "run_s": self.median(r.seconds for r in self.runs),
            "visible_after_s": self.median(r.visible_after for r in self.runs),
            "between_runs_s": self.median(r.gap_before for r in self.runs),
            "critical_path_s": {part: self.median(r.critical_parts()[part] for r in self.runs) for part in PARTS},
            "tasks_s": {
                task: {part: self.median(r.tasks[task].parts[part] for r in self.runs if task in r.tasks)
                       for part in PARTS}
                for task in self.task_order
            },
            "slowest_run": self.slowest(),
        }

    def slowest(self) -> dict[str, Any] | None:
        """The longest run, with each task of its critical path: a freshness tail is one or two such runs."""
        if not self.runs:
            return None
        run = max(self.runs, key=lambda r: r.seconds)
        return {"run_id": run.run_id, "run_s": round(run.seconds, 2), "gap_before_s": run.gap_before,
                "critical_path_s": {task: {part: round(value, 2) for part, value in run.tasks[task].parts.items()}
                                    for task in run.critical_path}}


def breakdown(runs: list[Mapping[str, Any]], task_instances: list[Mapping[str, Any]],
              upstream: Mapping[str, Iterable[str]]) -> Breakdown:
    """The breakdown of finished ``runs`` (REST API dag runs) from their ``task_instances`` (REST API task
    instances, each with its ``dag_run_id``) and each task's upstream task ids."""
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for ti in task_instances:
        by_run.setdefault(ti["dag_run_id"], []).append(ti)
    finished = sorted((r for r in runs if r.get("end_date") and r.get("start_date")),
                      key=lambda r: _time(r["start_date"]))
    result, other, previous_end, order = [], 0, None, {}
    for run in finished:
        start, end = _time(run["start_date"]), _time(run["end_date"])
        gap = None if previous_end is None else (start - previous_end).total_seconds()
        previous_end = end
        tasks = _task_times(start, by_run.get(run["dag_run_id"], []), upstream)
        if VISIBLE_TASK not in tasks or tasks[VISIBLE_TASK].state != "success":
            other += 1
            continue
        for position, task_id in enumerate(sorted(tasks, key=lambda t: tasks[t].start)):
            order.setdefault(task_id, position)
        result.append(RunTimes(run["dag_run_id"], start, end, gap, tasks, _critical_path(tasks, upstream)))
    return Breakdown(result, other, sorted(order, key=order.get))


def _task_times(run_start: datetime, tis: list[Mapping[str, Any]],
                upstream: Mapping[str, Iterable[str]]) -> dict[str, TaskTimes]:
    spans: dict[str, dict[str, Any]] = {}
    for ti in tis:
        queued, start, end = _time(ti.get("queued_when")), _time(ti.get("start_date")), _time(ti.get("end_date"))
        if queued is None or start is None or end is None:
            continue  # never ran (skipped by the scheduler, or still running)
        span = spans.setdefault(ti["task_id"], {"queued": queued, "start": start, "end": end, "state": ti["state"]})
        span["queued"], span["start"] = min(span["queued"], queued), min(span["start"], start)
        span["end"] = max(span["end"], end)
    times: dict[str, TaskTimes] = {}
    for task_id, span in spans.items():
        ends = [spans[u]["end"] for u in upstream.get(task_id, ()) if u in spans]
        ready = max(ends) if ends else run_start
        times[task_id] = TaskTimes(task_id, span["state"], min(ready, span["queued"]), span["queued"],
                                   span["start"], span["end"])
    return times


def _critical_path(tasks: Mapping[str, TaskTimes], upstream: Mapping[str, Iterable[str]]) -> list[str]:
    """From the task that ended last, back through the upstream task that ended last, to a first task."""
    path = [max(tasks, key=lambda t: tasks[t].end)]
    while True:
        ran = [u for u in upstream.get(path[-1], ()) if u in tasks]
        if not ran:
            return path[::-1]
        path.append(max(ran, key=lambda t: tasks[t].end))


def format_breakdown(result: Breakdown) -> str:
    summary = result.summary()
    if not result.runs:
        return f"where the time went: no finished run merged anything ({result.other_runs} other runs)"
    critical = summary["critical_path_s"]
    lines = [
        (f"where the time went: {summary['runs']} runs that merged (and {summary['other_runs']} that did not); "
         "medians, seconds"),
        (f"  a run {summary['run_s']} (visible after {summary['visible_after_s']}), between runs "
         f"{summary['between_runs_s']}; its critical path: scheduling {critical['scheduling']}, start-up "
         f"{critical['start-up']}, running {critical['running']}"),
        f"  {'task':24s}{'scheduling':>12s}{'start-up':>10s}{'running':>10s}",
    ]
    for task, parts in summary["tasks_s"].items():
        lines.append(f"  {task:24s}" + "".join(f"{_fmt(parts[p]):>{w}s}" for p, w in zip(PARTS, (12, 10, 10),
                                                                                       strict=True)))
    slowest = summary["slowest_run"]
    lines.append(f"  the slowest run, {slowest['run_id']}: {slowest['run_s']:.2f}; its critical path (scheduling / "
                 "start-up / running): " + ", ".join(
                     f"{task} {' / '.join(_fmt(parts[p]) for p in PARTS)}"
                     for task, parts in slowest["critical_path_s"].items()))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# --- reading Airflow's REST API ---------------------------------------------------------------------------------


def _request(url: str, token: str | None = None, body: dict | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers=headers, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def fetch_breakdown(api_url: str, user: str, password: str, since: datetime, dag_id: str = "claims_cdc",
                    ) -> Breakdown:
    """The breakdown of ``dag_id``'s runs that started at or after ``since`` (an aware datetime)."""
    token = _request(f"{api_url}/auth/token", body={"username": user, "password": password})["access_token"]
    base = f"{api_url}/api/v2/dags/{urllib.parse.quote(dag_id)}"
    query = urllib.parse.urlencode({"start_date_gte": since.isoformat(), "limit": 100, "order_by": "start_date"})
    runs = _request(f"{base}/dagRuns?{query}", token)["dag_runs"]
    tis = []
    for run in runs:
        if run.get("end_date"):
            tis += _request(f"{base}/dagRuns/{urllib.parse.quote(run['dag_run_id'])}/taskInstances?limit=100",
                            token)["task_instances"]
    tasks = _request(f"{base}/tasks", token)["tasks"]
    upstream: dict[str, set[str]] = {t["task_id"]: set() for t in tasks}
    for task in tasks:
        for downstream in task.get("downstream_task_ids") or ():
            upstream.setdefault(downstream, set()).add(task["task_id"])
    return breakdown(runs, tis, upstream)
