"""Alerts: failures and operational incidents, each sent once when it opens and once when it recovers.

An *incident* has a kind (``failure``, ``retention_gap``, ``paused``, ``overrun``, ``lag``, ``dead_letters``,
``drift``). Opening one sends an alert; while it is open, the same kind is not sent again (under
``@continuous`` a broken dependency fails run after run: no alert storm); closing it sends one recovery
message. Open incidents live in Airflow Variables (``claims_cdc_alert_<kind>``), in Airflow's metadata
database, not in Snowflake: the state must survive Snowflake being down, and Variables are reachable from
every place an alert starts (task callbacks on the worker, DAG callbacks in the dag-processor, Deadline
Alert callbacks in the triggerer) through ``airflow.sdk.Variable``.

Alerts go out through the providers' notifiers: the Amazon provider's ``SnsNotifier`` (``CDC_ALERT_SNS_TOPIC_ARN``,
through the pipeline's AWS connection), and, when configured, the Slack provider's ``SlackWebhookNotifier``
(``CDC_ALERT_SLACK_CONN_ID``) and the SMTP provider's ``SmtpNotifier`` (``CDC_ALERT_EMAIL_TO``).

What this module must never do: put a record's value into an alert, a log line or an exception. An alert
carries ids (DAG, task, run, shard, batch), the try number, an error's class and the first line of its
message (quoted text removed unless the error is this package's own, whose messages are value-free),
counts, positions, reasons (which never quote a value) and the log URL.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from claims_cdc.settings import Settings

log = logging.getLogger(__name__)

#: Every kind of incident, in the order ``open_alerts`` lists them.
KINDS = ("failure", "retention_gap", "paused", "overrun", "lag", "dead_letters", "drift")
#: The kinds a successful run closes: they are about runs failing, pausing or overrunning.
RUN_KINDS = ("failure", "retention_gap", "paused", "overrun")
VARIABLE_PREFIX = "claims_cdc_alert_"
#: Consecutive failed runs, counted by the DAG's failure callback and reset by a run that succeeds.
FAILED_RUNS_VARIABLE = "claims_cdc_failed_runs"
#: How long an opener waits before reading its claim back (see :meth:`Incidents.open`).
SETTLE_SECONDS = 1.0
#: The longest reason an alert carries (the first line of an error's message).
MAX_REASON = 240
_QUOTED = re.compile(r"""'[^']*'|"[^"]*"|`[^`]*`""")
_HEADLINES = {
    "failure": "a task failed after its retries",
    "retention_gap": "records may have expired from the stream unread (retention gap)",
    "paused": "the DAG paused itself after consecutive failed runs",
    "overrun": "a run is past its deadline",
    "lag": "changes wait longer than CDC_LAG_ALERT_SECONDS",
    "dead_letters": "new dead-lettered records",
    "drift": "reconciliation keeps finding a difference",
}


# --- where open incidents are kept ---


class Store(Protocol):
    """A small key-value store of JSON documents (Airflow Variables in production, a dict in tests)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, value: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> None: ...


class VariableStore:
    """Airflow Variables: through the Task SDK where Airflow runs this code under a supervisor (worker,
    dag-processor, triggerer), and straight from the metadata database in a command-line tool or in
    ``dag.test()``'s own process, where the Task SDK can read a Variable but not write one."""

    @staticmethod
    def _supervised() -> bool:
        from airflow.sdk.execution_time import task_runner

        return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None

    def get(self, key: str) -> dict[str, Any] | None:
        if self._supervised():
            from airflow.sdk import Variable

            value = Variable.get(key, default=None)
        else:
            from airflow.models.variable import Variable as StoredVariable

            value = StoredVariable.get(key, default_var=None)
        if value is None:
            return None
        return json.loads(value) if isinstance(value, str) else value

    def set(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, sort_keys=True)
        if self._supervised():
            from airflow.sdk import Variable

            Variable.set(key, text)
        else:
            from airflow.models.variable import Variable as StoredVariable

            StoredVariable.set(key, text)

    def delete(self, key: str) -> None:
        if self._supervised():
            from airflow.sdk import Variable

            Variable.delete(key)
        else:
            from airflow.models.variable import Variable as StoredVariable

            StoredVariable.delete(key)


# --- the message ---


def _now() -> datetime:
    return datetime.now(UTC)


def one_line_reason(error: BaseException | None) -> str:
    """An error's first message line, short, for an alert. Quoted text is removed unless the error (or the
    error it wraps) is this package's own, whose messages name settings, shards and rules, never values."""
    if error is None:
        return ""
    lines = str(error).strip().splitlines()
    line = lines[0].strip() if lines else ""
    if not _own_error(error):
        line = _QUOTED.sub("'…'", line)
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"


def _own_error(error: BaseException) -> bool:
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        if type(current).__module__.startswith("claims_cdc."):
            return True
        current = current.__cause__
        seen += 1
    return False


def _caused_by(error: BaseException | None, name: str) -> bool:
    seen = 0
    while error is not None and seen < 5:
        if type(error).__name__ == name:
            return True
        error = error.__cause__
        seen += 1
    return False


def render(kind: str, state: str, fields: Mapping[str, Any], summary: str) -> tuple[str, str]:
    """The subject (one line, at most 100 characters: SNS' limit) and the body (``key: value`` lines)."""
    what = "RECOVERED" if state == "recovered" else "ALERT"
    subject = f"[claims-cdc] {what} {kind}: {summary}"
    subject = subject if len(subject) <= 100 else subject[:99] + "…"
    lines = [f"{what} {kind}: {summary}", f"kind: {kind}", f"state: {state}"]
    lines += [f"{key}: {value}" for key, value in fields.items() if value not in (None, "")]
    return subject, "\n".join(lines) + "\n"


# --- the channels: the providers' notifiers ---


def send(settings: Settings, subject: str, body: str) -> list[str]:
    """Send through every configured channel; returns the channels that took it. A channel that fails is
    logged (its error's class only) and the others are still tried."""
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    notifiers: list[tuple[str, Any]] = []
    if settings.alert_sns_topic_arn:
        notifiers.append(("sns", SnsNotifier(aws_conn_id=settings.aws_conn_id, target_arn=settings.alert_sns_topic_arn,
                                             message=body, subject=subject)))
    if settings.alert_slack_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        notifiers.append(("slack", SlackWebhookNotifier(slack_webhook_conn_id=settings.alert_slack_conn_id,
                                                        text=f"*{subject}*\n```{body}```")))
    if settings.alert_email_to:
        from html import escape

        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(("email", SmtpNotifier(to=list(settings.alert_email_to), subject=subject,
                                                html_content=f"<pre>{escape(body)}</pre>",
                                                smtp_conn_id=settings.alert_smtp_conn_id)))
    if not notifiers:
        log.warning("alert not sent: no channel configured (CDC_ALERT_SNS_TOPIC_ARN, CDC_ALERT_SLACK_CONN_ID, "
                    "CDC_ALERT_EMAIL_TO): %s", subject)
        return []
    sent = []
    for name, notifier in notifiers:
        # notify(), not __call__: the text is final, so nothing in it is rendered as a Jinja template.
        try:
            notifier.notify({})
            sent.append(name)
        except Exception as error:  # noqa: BLE001 - one channel down must not stop the others
            log.warning("alert channel %s failed (%s): %s", name, type(error).__name__, subject)
    return sent


# --- incidents ---


class Incidents:
    """Open, suppress and close incidents, sending one alert when one opens and one when it recovers."""

    def __init__(self, settings: Settings, store: Store | None = None,
                 sender: Callable[[Settings, str, str], list[str]] | None = None, settle: float = SETTLE_SECONDS):
        self.settings = settings
        self.store = store if store is not None else VariableStore()
        self.sender = sender if sender is not None else send
        self.settle = settle

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.store.get(VARIABLE_PREFIX + kind)

    def open(self, kind: str, summary: str, fields: Mapping[str, Any] | None = None) -> bool:
        """Open ``kind`` and send its alert, unless it is open already (then nothing is sent).

        Race-safe enough for one scheduler: two openers at once (two mapped tasks failing together) each
        write a claim with a token of their own, wait ``settle`` seconds and read it back; only the one
        whose token is still there sends. (Variables have no compare-and-set; the last write wins and both
        read the same winner, as long as neither took longer than ``settle`` between its look and its write.)
        If no channel takes the alert, the claim is withdrawn so that the next failure tries again.
        """
        key = VARIABLE_PREFIX + kind
        if self.store.get(key) is not None:
            log.info("alert %s is open already: not sent again", kind)
            return False
        token = uuid.uuid4().hex
        opened_at = _now().isoformat(timespec="seconds")
        fields = {**(fields or {}), "opened_at": opened_at}
        self.store.set(key, {"kind": kind, "opened_at": opened_at, "summary": summary, "token": token,
                             "fields": {k: str(v) for k, v in fields.items() if v not in (None, "")}})
        if self.settle:
            time.sleep(self.settle)
        claim = self.store.get(key)
        if not claim or claim.get("token") != token:
            log.info("alert %s was opened by another process at the same time: not sent twice", kind)
            return False
        subject, body = render(kind, "open", fields, summary)
        if self.sender(self.settings, subject, body) or not self.settings.alert_channels():
            log.warning("alert opened: %s", subject)
            return True
        self.store.delete(key)
        return False

    def close(self, kind: str, summary: str, fields: Mapping[str, Any] | None = None) -> bool:
        """Close ``kind`` if it is open, sending its recovery message; False when it was not open."""
        key = VARIABLE_PREFIX + kind
        incident = self.store.get(key)
        if incident is None:
            return False
        self.store.delete(key)
        recovered_at = _now().isoformat(timespec="seconds")
        subject, body = render(kind, "recovered", {**(fields or {}), "opened_at": incident.get("opened_at"),
                                                   "recovered_at": recovered_at}, summary)
        self.sender(self.settings, subject, body)
        log.warning("alert recovered: %s", subject)
        return True

    def count_failed_run(self) -> int:
        """One more failed run in a row; returns how many now."""
        count = int((self.store.get(FAILED_RUNS_VARIABLE) or {}).get("runs", 0)) + 1
        self.store.set(FAILED_RUNS_VARIABLE, {"runs": count})
        return count

    def reset_failed_runs(self) -> None:
        if self.store.get(FAILED_RUNS_VARIABLE) is not None:
            self.store.delete(FAILED_RUNS_VARIABLE)


def open_alerts(settings: Settings, store: Store | None = None) -> list[dict[str, Any]]:
    """The incidents open now: ``kind``, ``opened_at`` (ISO 8601, UTC) and a value-free ``summary``."""
    incidents = Incidents(settings, store)
    found = []
    for kind in KINDS:
        incident = incidents.get(kind)
        if incident:
            found.append({"kind": kind, "opened_at": incident.get("opened_at"), "summary": incident.get("summary")})
    return found


# --- failure callbacks ---


def _base_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")


def run_url(dag_id: str, run_id: str) -> str:
    from urllib.parse import quote

    return f"{_base_url()}/dags/{dag_id}/runs/{quote(run_id)}"


def failure_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a task-failure alert says: ids, the try, the error's class and one line, the log URL."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    map_index = getattr(ti, "map_index", -1)
    task_id = getattr(ti, "task_id", None)
    return {
        "dag": getattr(ti, "dag_id", None),
        "task": f"{task_id}[{map_index}]" if map_index is not None and map_index >= 0 else task_id,
        "run": getattr(ti, "run_id", None) or context.get("run_id"),
        "try": getattr(ti, "try_number", None),
        "error": type(error).__name__ if isinstance(error, BaseException) else (str(error) if error else None),
        "reason": one_line_reason(error) if isinstance(error, BaseException) else None,
        "log": getattr(ti, "log_url", None),
    }


def task_failed(settings: Settings, context: Mapping[str, Any], incidents: Incidents | None = None) -> bool:
    """A task's ``on_failure_callback`` (Airflow calls it once the task's retries are spent)."""
    incidents = incidents or Incidents(settings)
    fields = failure_fields(context)
    error = context.get("exception")
    if _caused_by(error if isinstance(error, BaseException) else None, "CheckpointGap"):
        return incidents.open("retention_gap", f"{fields['task']}: records may have expired unread",
                              {**fields, "next": "python -m claims_cdc.admin accept-gap SHARD_ID (see the README)"})
    return incidents.open("failure", f"{fields['task']} failed ({fields['error']})", fields)


def run_failed(settings: Settings, context: Mapping[str, Any], max_failed_runs: int,
               incidents: Incidents | None = None) -> None:
    """The DAG's ``on_failure_callback`` (run in the dag-processor): counts failed runs in a row, opens the
    failure incident if no task opened one (a run that timed out, say), and the ``paused`` incident when
    the count reaches ``max_consecutive_failed_dag_runs``, after which Airflow pauses the DAG."""
    incidents = incidents or Incidents(settings)
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or "claims_cdc"
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or ""
    failed = incidents.count_failed_run()
    fields = {"dag": dag_id, "run": run_id, "reason": str(context.get("reason") or "")[:MAX_REASON],
              "failed_runs_in_a_row": failed, "log": run_url(dag_id, run_id)}
    if incidents.get("failure") is None and incidents.get("retention_gap") is None:
        incidents.open("failure", f"run {run_id} failed", fields)
    if failed >= max_failed_runs:
        incidents.open("paused", f"{failed} failed runs in a row: the DAG pauses itself; unpause it once "
                       "the cause is fixed", fields)


def side_run_failed(context: Mapping[str, Any]) -> list[str]:
    """The ``on_failure_callback`` of the DAGs people trigger by hand or daily (snapshot, replay, audit, the
    downstream summary): one alert per failed run, not an incident (those runs do not repeat on their own,
    so they cannot storm; and their recovery is a person's next run). Returns the channels that took it."""
    from claims_cdc.settings import load_settings

    settings = load_settings()
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or ""
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or ""
    fields = {"dag": dag_id, "run": run_id, "reason": str(context.get("reason") or "")[:MAX_REASON],
              "log": run_url(dag_id, run_id)}
    subject, body = render("failure", "open", fields, f"{dag_id} run {run_id} failed")
    return send(settings, subject, body)


async def run_overran(context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """The Deadline Alert's callback (an ``AsyncCallback``, run in the triggerer): opens ``overrun``.

    The triggerer passes a small context: the run (as the REST API shows it) and the deadline.
    """
    from asgiref.sync import sync_to_async

    from claims_cdc.settings import load_settings

    context = context or {}
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id, run_id = dag_run.get("dag_id", "claims_cdc"), dag_run.get("dag_run_id", "")
    fields = {"dag": dag_id, "run": run_id, "deadline": deadline.get("deadline_time"),
              "log": run_url(dag_id, run_id)}

    def opened() -> bool:
        settings = load_settings()
        return Incidents(settings).open(
            "overrun", f"run {run_id} is still going after CDC_RUN_DEADLINE_SECONDS="
            f"{settings.run_deadline_seconds}", fields)

    await sync_to_async(opened)()


# --- operational checks, once per run (the DAG's alerts_checked task) ---


def check_run(settings: Settings, dag_run_id: str, batch: Mapping[str, Any] | None, *,
              now: datetime | None = None, incidents: Incidents | None = None,
              measure: Callable[[Settings], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Open or close each operational incident for this run, and close the run incidents (the run got here,
    so it is succeeding). Returns what it measured and did: numbers and kinds only."""
    incidents = incidents or Incidents(settings)
    now = now or _now()
    measured = (measure or measure_warehouse)(settings)
    run_fields = {"dag": "claims_cdc", "run": dag_run_id, "log": run_url("claims_cdc", dag_run_id)}
    opened, closed = [], []

    def track(kind: str, is_open: bool, summary: str, fields: Mapping[str, Any]) -> None:
        if is_open:
            if incidents.open(kind, summary, {**run_fields, **fields}):
                opened.append(kind)
        elif incidents.close(kind, summary, {**run_fields, **fields}):
            closed.append(kind)

    for kind in RUN_KINDS:
        if incidents.close(kind, f"run {dag_run_id} succeeded", run_fields):
            closed.append(kind)
    incidents.reset_failed_runs()

    shards = list((batch or {}).get("shards") or [])
    behind = [(s.get("millis_behind_latest") or 0) / 1000 for s in shards]
    kinesis_lag = max(behind, default=0.0)
    oldest = measured.get("oldest_unmerged_micros")
    staging_lag = max(0.0, now.timestamp() - oldest / 1_000_000) if oldest else 0.0
    lag = round(max(kinesis_lag, staging_lag), 3)
    track("lag", lag > settings.lag_alert_seconds,
          f"oldest unmerged change is {lag:.0f} s old (limit {settings.lag_alert_seconds} s)",
          {"lag_seconds": lag, "kinesis_seconds_behind": round(kinesis_lag, 3),
           "staging_seconds": round(staging_lag, 3), "staging_rows": measured.get("unmerged_rows", 0)})

    waiting: dict[str, int] = measured.get("dead_letters_waiting", {})
    new = int((batch or {}).get("rows_rejected") or 0)
    total = sum(waiting.values())
    reasons = "; ".join(f"{n} {reason}" for reason, n in waiting.items())
    if new and total:
        track("dead_letters", True, f"{new} record(s) dead-lettered in batch {batch.get('batch_id')}; "
              f"{total} wait for a re-drive", {"new": new, "waiting": total, "reasons": reasons})
    elif not total:
        track("dead_letters", False, "no dead letter waits for a re-drive", {"waiting": 0})

    statuses: list[str] = measured.get("recent_reconciliations", [])
    runs = settings.drift_alert_runs
    mismatched = 0
    for status in statuses:
        if status == "MATCH":
            break
        mismatched += 1
    if mismatched > runs:
        track("drift", True, f"the last {mismatched} reconciliations differ (limit {runs})",
              {"reconciliations_differing": mismatched})
    elif statuses and statuses[0] == "MATCH":
        track("drift", False, "the last reconciliation matches", {"reconciliations_differing": 0})

    result = {"lag_seconds": lag, "dead_letters_waiting": total, "reconciliations_differing": mismatched,
              "opened": opened, "closed": closed, "open": [a["kind"] for a in open_alerts(settings, incidents.store)]}
    log.info("alerts checked: %s", result)
    return result


def measure_warehouse(settings: Settings) -> dict[str, Any]:
    """What the operational checks read from Snowflake (one short session, three read-only statements)."""
    from claims_cdc.mapping import load_mapping
    from claims_cdc.snowflake import session
    from claims_cdc.sql import load

    stmts = load("alerts", settings, load_mapping(settings.mapping_path))
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        oldest, rows = snow.fetchall(stmts["oldest_unmerged_change"])[0]
        waiting = {str(reason): int(n) for reason, n in snow.fetchall(stmts["dead_letters_waiting"])}
        statuses = [str(status) for (status,) in snow.fetchall(stmts["recent_reconciliations"])]
    return {"oldest_unmerged_micros": int(str(oldest).split(".")[0]) if oldest else None,
            "unmerged_rows": int(rows or 0), "dead_letters_waiting": waiting, "recent_reconciliations": statuses}
