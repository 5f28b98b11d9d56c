"""Every setting of the pipeline, read in one place, typed and validated.

Settings come from ``CDC_*`` environment variables (Airflow Variables are not used, so a DAG file parses
with no metadata-database access). Secrets are never settings: they live in the Airflow connections named
by ``CDC_AWS_CONN_ID``, ``CDC_SNOWFLAKE_CONN_ID`` and, for alerts, ``CDC_ALERT_SLACK_CONN_ID`` and
``CDC_ALERT_SMTP_CONN_ID``. A bad value fails at once, naming the variable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

#: The repository root: plugins/claims_cdc/settings.py -> three levels up.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
INCLUDE_DIR = PROJECT_ROOT / "include"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")
#: A Snowflake account identifier as it appears in an account URL: orgname-account_name, or a locator with region.
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


def _identifier(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default)
    if not _IDENTIFIER.match(value):
        raise ConfigError(f"{name}={value!r} is not a plain Snowflake identifier (letters, digits, _ or $)")
    return value


def _account(env: Mapping[str, str], default: str) -> str:
    value = env.get("CDC_SNOWFLAKE_ACCOUNT") or default
    if not _ACCOUNT.match(value):
        raise ConfigError(f"CDC_SNOWFLAKE_ACCOUNT={value!r} is not a Snowflake account identifier "
                          "(letters, digits, '_', '-' or '.', as in <orgname>-<account_name>)")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is outside {minimum}..{maximum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is outside {minimum}..{maximum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


@dataclass(frozen=True)
class Settings:
    """The pipeline's configuration. Build it with :func:`load_settings`; tests use ``dataclasses.replace``."""

    aws_conn_id: str = "aws_default"
    snowflake_conn_id: str = "snowflake_default"
    dynamodb_table: str = "InsuranceClaims"
    kinesis_stream: str = "InsuranceClaimsStream"

    database: str = "CDC_DB"
    schema: str = "CDC_SCHEMA"
    warehouse: str = "CDC_WH"
    role: str = "CDC_RL"
    dest_table: str = "openflow_insclaim_dest_tbl"
    cdc_table: str = "openflow_insclaim_cdc_tbl"
    history_table: str = "openflow_insclaim_event_hist_tbl"
    checkpoint_table: str = "cdc_shard_checkpoints"
    batch_table: str = "cdc_batch_log"
    reconciliation_table: str = "cdc_reconciliation"
    rejected_table: str = "cdc_rejected_records"
    tombstone_table: str = "cdc_claim_tombstones"
    #: Where COPY INTO lands a batch's rows, images included, inside the stage transaction: the staging and
    #: history rows are filled from it and its rows deleted before the commit, so it is empty between batches
    #: (include/sql/stage.sql says why).
    landing_table: str = "cdc_batch_landing"
    #: The claims-by-status summary the example downstream DAG ``claims_by_status`` rebuilds after each merge.
    summary_table: str = "claims_by_status"
    #: The Snowflake account identifier (``<orgname>-<account_name>``) that names the destination in its Airflow
    #: Asset URI, ``snowflake://<account>/<database>/<schema>/<table>`` (the Snowflake provider's convention),
    #: on which downstream DAGs schedule. Only a name: the connection still decides where data goes.
    snowflake_account: str = "local"
    #: The Airflow connection (HTTP: the API server's address, a user and password) through which a run writes
    #: its note in the UI (Airflow's REST API). When it is not defined, runs get no note.
    airflow_api_conn_id: str = "airflow_api"
    #: The internal stage batches are PUT to and loaded from with COPY INTO (created by setup.sql).
    load_stage: str = "claims_cdc_load_stage"
    #: An external stage (created by an operator, with a storage integration) whose URL is ``CDC_BATCH_ROOT``:
    #: when set, COPY INTO reads each batch's files where the shard tasks wrote them, with no download and no
    #: PUT. Empty: the files are PUT to the internal ``load_stage``.
    external_stage: str = ""

    #: Most records one DAG run reads from the stream, over all shards. Memory does not grow with it (shards
    #: stream through page by page); it bounds one staging transaction and one run's length.
    max_records: int = 200_000
    #: Records asked for per GetRecords call (Kinesis allows at most 10,000).
    get_records_limit: int = 10_000
    #: When runs start: ``@continuous`` (a new run as soon as the last one ends), a cron expression or
    #: preset, or ``None`` for manual runs only (``CDC_SCHEDULE=none``).
    schedule: str | None = "@continuous"
    #: How the sensor waits: ``deferrable`` (in the triggerer, no worker slot held), ``reschedule`` or ``poke``.
    sensor_mode: str = "deferrable"
    #: Seconds the sensor waits for a first record before the run ends as skipped. Under ``@continuous``
    #: an idle stream makes one skipped run per this many seconds.
    sensor_timeout: int = 600
    #: Seconds between two looks at the stream while waiting (Kinesis allows 5 reads per second per shard).
    poke_interval: float = 2.0
    #: Where batch files go: ``file://`` or ``s3://`` (through the AWS connection). PHI: keep it private.
    batch_root: str = field(default_factory=lambda: f"file://{PROJECT_ROOT / '.local' / 'batches'}")
    #: Hours after its plan when a batch's files are removed whatever became of its run (the sweeper).
    batch_file_max_age_hours: int = 24
    #: The mapping from DynamoDB attributes to Snowflake columns (the seed's FlattenJson + Jolt step).
    mapping_path: Path = INCLUDE_DIR / "mapping" / "claims.json"
    #: Set to ``fakesnow`` on the local stack: statements that only real Snowflake runs are skipped, loudly.
    snowflake_emulator: str = ""
    #: How far a change's own time (ApproximateCreationDateTime) may lie after Kinesis received it, for
    #: clock skew. A later one, or one older than the stream's retention, is dead-lettered, never ordered by.
    max_clock_skew_seconds: int = 60
    #: Fail the reconciliation task when counts differ (off: record and warn, since writes may be in flight).
    fail_on_mismatch: bool = False
    #: Seconds after a reconciliation before a scheduled run reconciles again (0: every run). It counts the
    #: whole DynamoDB table, and under ``@continuous`` the next run waits for it; in between, the task ends
    #: skipped at once. A run started by hand always reconciles.
    reconcile_every_seconds: int = 300

    #: Task retries (and the first delay, doubled each try up to 5 minutes): an alert is sent only once a
    #: task's retries are spent.
    task_retries: int = 3
    retry_delay_seconds: int = 10
    #: The SNS topic alerts go to (empty: no SNS), through the AWS connection (``CDC_AWS_CONN_ID``).
    alert_sns_topic_arn: str = ""
    #: A Slack incoming-webhook connection (``slackwebhook``) alerts also go to (empty: no Slack).
    alert_slack_conn_id: str = ""
    #: Addresses alerts are e-mailed to (empty: no e-mail), through the SMTP connection below.
    alert_email_to: tuple[str, ...] = ()
    alert_smtp_conn_id: str = "smtp_default"
    #: Age in seconds of the oldest change not yet merged (Kinesis MillisBehindLatest, the staging table)
    #: above which the lag alert opens.
    lag_alert_seconds: int = 900
    #: Reconciliations in a row that may differ before the drift alert opens (a mismatch lasting more).
    drift_alert_runs: int = 3
    #: Seconds after a run was queued by which it must have ended (Airflow Deadline Alert); 0: none. Under
    #: @continuous a run waits up to its sensor_timeout for records, so this must be longer.
    run_deadline_seconds: int = 3_600

    # --- Snapshot, replay and audit (the claims_cdc_snapshot, claims_cdc_replay and claims_cdc_audit DAGs) ---
    #: The S3 bucket DynamoDB exports the table to for a snapshot (ExportTableToPointInTime); empty: the
    #: export method refuses to start (the Scan method needs none).
    snapshot_bucket: str = ""
    #: The key prefix of the exports; each snapshot run writes under ``<prefix>/<run id>``.
    snapshot_prefix: str = "claims-cdc/snapshots"
    #: Seconds a snapshot waits for its export to complete (AWS takes minutes, more for large tables).
    snapshot_export_timeout: int = 3_600
    #: The audit's tables: each run's scanned keys and content hashes, the divergent keys, the counts.
    audit_keys_table: str = "cdc_audit_keys"
    audit_divergence_table: str = "cdc_audit_divergence"
    audit_table: str = "cdc_audit_runs"

    def alert_channels(self) -> list[str]:
        """The channels alerts go to, by name (for logs and the README's table)."""
        return [name for name, on in (("sns", self.alert_sns_topic_arn), ("slack", self.alert_slack_conn_id),
                                      ("email", self.alert_email_to)) if on]

    def task_defaults(self) -> dict[str, Any]:
        """Every DAG's ``default_args``: the owner, and ``CDC_TASK_RETRIES`` retries with back-off from
        ``CDC_RETRY_DELAY_SECONDS`` (doubled each try, at most 5 minutes)."""
        return {"owner": "data-engineering", "retries": self.task_retries,
                "retry_delay": timedelta(seconds=self.retry_delay_seconds), "retry_exponential_backoff": True,
                "max_retry_delay": timedelta(minutes=5)}

    def table_names(self) -> dict[str, str]:
        """Names available to the SQL templates in ``include/sql``."""
        return {
            "database": self.database,
            "schema": self.schema,
            "warehouse": self.warehouse,
            "role": self.role,
            "dest_table": self.dest_table,
            "cdc_table": self.cdc_table,
            "history_table": self.history_table,
            "checkpoint_table": self.checkpoint_table,
            "batch_table": self.batch_table,
            "reconciliation_table": self.reconciliation_table,
            "rejected_table": self.rejected_table,
            "tombstone_table": self.tombstone_table,
            "landing_table": self.landing_table,
            "load_stage": self.load_stage,
            "summary_table": self.summary_table,
            "external_stage": self.external_stage,
            "audit_keys_table": self.audit_keys_table,
            "audit_divergence_table": self.audit_divergence_table,
            "audit_table": self.audit_table,
        }


#: Schedules Airflow takes as they are (not cron): ``@continuous`` and ``@once``.
_SCHEDULE_KEYWORDS = {"@continuous", "@once"}
#: Airflow's cron presets (airflow.sdk.definitions.timetables._cron.CRON_PRESETS), which it expands itself.
_CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}
_SENSOR_MODES = ("deferrable", "reschedule", "poke")


def _schedule(env: Mapping[str, str], default: str | None) -> str | None:
    """``CDC_SCHEDULE`` as Airflow's ``schedule``: checked with croniter, the library Airflow's cron timetables use."""
    from croniter import CroniterError, croniter

    raw = env.get("CDC_SCHEDULE")
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if value.lower() in {"none", "manual"}:
        return None
    if value in _SCHEDULE_KEYWORDS or value in _CRON_PRESETS:
        return value
    expected = (f"@continuous, @once, none, a preset ({', '.join(_CRON_PRESETS)}) "
                "or a five-field cron expression (minute hour day-of-month month day-of-week)")
    try:
        fields = len(croniter(value).expanded)
    except (CroniterError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"CDC_SCHEDULE={raw!r} is not a valid schedule ({err}); expected {expected}") from None
    if fields != 5:
        # croniter also reads a sixth (seconds) and seventh (year) field; Airflow's cron timetables do not
        # describe or document them, so they are refused rather than half-supported.
        raise ConfigError(f"CDC_SCHEDULE={raw!r} has {fields} fields; expected {expected}")
    return value


#: Airflow's JSON connection format: ``{"conn_type": ..., ...}``; its URI format: ``conn-type://...``.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONNECTION_FIELDS = {"conn_type", "description", "host", "login", "password", "schema", "port", "extra"}


def _connection_problem(value: str) -> str | None:
    """What is wrong with an ``AIRFLOW_CONN_*`` value as Airflow reads it, in words that never quote it."""
    if not value.startswith("{"):
        if not _URI_SCHEME.match(value):
            return "is neither JSON (it does not start with '{') nor a URI with a scheme (conn-type://...)"
        if value.count("://") > 2:
            return "is not a valid connection URI: it has more than two '://'"
        return None
    try:
        doc = json.loads(value)
    except json.JSONDecodeError as err:  # its msg, line and column only: err.doc is the value
        return f"is not valid JSON ({err.msg}: line {err.lineno} column {err.colno})"
    if not isinstance(doc.get("conn_type"), str) or not doc["conn_type"].strip():
        return 'has no conn_type (a string, such as "aws" or "snowflake")'
    unknown = sorted(set(doc) - _CONNECTION_FIELDS)
    if unknown:
        return (f"has unknown field(s) {', '.join(unknown)}; Airflow's connection fields are "
                f"{', '.join(sorted(_CONNECTION_FIELDS))}")
    extra = doc.get("extra")
    if extra is not None and not isinstance(extra, dict | str):
        return "has an extra that is not a JSON object (or a string holding one)"
    port = doc.get("port")
    if port is not None and not (isinstance(port, int) or (isinstance(port, str) and port.strip().isdigit())):
        return "has a port that is not a whole number"
    return None


def check_connection_env(env: Mapping[str, str], setting: str, conn_id: str) -> None:
    """Fail when the ``AIRFLOW_CONN_<CONN_ID>`` variable for ``conn_id`` is set but malformed.

    Airflow reads it as JSON when it starts with ``{`` and as a URI otherwise; a malformed one is reported
    by Airflow only later, and misleadingly ("isn't defined"), or ignored (the AWS hook then falls back to
    default credentials). Unset or empty: Airflow looks in its other secrets backends, and so do we.
    The value holds secrets: the message names the variable and the problem, never the value.
    """
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = (env.get(variable) or "").strip()
    problem = _connection_problem(value) if value else None
    if problem:
        raise ConfigError(f"{variable} {problem}; it defines the connection {setting} names ({conn_id!r})")


_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+$")


def _alert_settings(env: Mapping[str, str], defaults: Settings, sensor_timeout: int) -> dict:
    """The alerting settings (topic, connections, recipients, thresholds), validated."""
    topic = (env.get("CDC_ALERT_SNS_TOPIC_ARN") or "").strip()
    if topic and not _SNS_TOPIC_ARN.match(topic):
        raise ConfigError(f"CDC_ALERT_SNS_TOPIC_ARN={topic!r} is not an SNS topic ARN "
                          "(arn:aws:sns:<region>:<account>:<topic>)")
    recipients = tuple(a.strip() for a in (env.get("CDC_ALERT_EMAIL_TO") or "").split(",") if a.strip())
    bad = [a for a in recipients if not _EMAIL.match(a)]
    if bad:
        raise ConfigError(f"CDC_ALERT_EMAIL_TO: {len(bad)} address(es) are not name@domain (comma-separated)")
    slack = (env.get("CDC_ALERT_SLACK_CONN_ID") or "").strip()
    smtp = (env.get("CDC_ALERT_SMTP_CONN_ID") or "").strip() or defaults.alert_smtp_conn_id
    if slack:
        check_connection_env(env, "CDC_ALERT_SLACK_CONN_ID", slack)
    if recipients:
        check_connection_env(env, "CDC_ALERT_SMTP_CONN_ID", smtp)
    deadline = _int(env, "CDC_RUN_DEADLINE_SECONDS", defaults.run_deadline_seconds, 0, 7 * 86_400)
    if deadline and deadline <= sensor_timeout:
        raise ConfigError(f"CDC_RUN_DEADLINE_SECONDS={deadline} must be longer than CDC_SENSOR_TIMEOUT="
                          f"{sensor_timeout} (a run may wait that long for records), or 0 for no deadline")
    return {
        "task_retries": _int(env, "CDC_TASK_RETRIES", defaults.task_retries, 0, 20),
        "retry_delay_seconds": _int(env, "CDC_RETRY_DELAY_SECONDS", defaults.retry_delay_seconds, 1, 3_600),
        "alert_sns_topic_arn": topic,
        "alert_slack_conn_id": slack,
        "alert_email_to": recipients,
        "alert_smtp_conn_id": smtp,
        "lag_alert_seconds": _int(env, "CDC_LAG_ALERT_SECONDS", defaults.lag_alert_seconds, 1, 7 * 86_400),
        "drift_alert_runs": _int(env, "CDC_DRIFT_ALERT_RUNS", defaults.drift_alert_runs, 1, 99),
        "run_deadline_seconds": deadline,
    }


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: the process environment), failing on the first bad one."""
    env = os.environ if env is None else env
    defaults = Settings()
    batch_root = env.get("CDC_BATCH_ROOT") or defaults.batch_root
    if not batch_root.startswith(("file://", "s3://")):
        raise ConfigError(f"CDC_BATCH_ROOT={batch_root!r} must start with file:// or s3://")
    mapping_path = Path(env.get("CDC_MAPPING_PATH") or defaults.mapping_path)
    if not mapping_path.is_file():
        raise ConfigError(f"CDC_MAPPING_PATH={str(mapping_path)!r} is not a file")
    emulator = env.get("CDC_SNOWFLAKE_EMULATOR", "")
    if emulator not in {"", "fakesnow"}:
        raise ConfigError(f"CDC_SNOWFLAKE_EMULATOR={emulator!r} must be empty or 'fakesnow'")
    external_stage = _identifier(env, "CDC_EXTERNAL_STAGE", "") if env.get("CDC_EXTERNAL_STAGE") else ""
    if external_stage and not (batch_root.startswith("s3://") or (emulator and batch_root.startswith("file://"))):
        # Snowflake's external stages are cloud storage (s3:// here). Locally a file:// root is accepted on
        # fakesnow alone, which reads a stage URL with DuckDB and has no S3 access offline.
        raise ConfigError(f"CDC_EXTERNAL_STAGE={external_stage!r} needs an s3:// CDC_BATCH_ROOT (the stage's URL); "
                          f"CDC_BATCH_ROOT is {batch_root!r}")
    sensor_mode = env.get("CDC_SENSOR_MODE") or defaults.sensor_mode
    if sensor_mode not in _SENSOR_MODES:
        raise ConfigError(f"CDC_SENSOR_MODE={sensor_mode!r} must be one of {', '.join(_SENSOR_MODES)}")
    aws_conn_id = env.get("CDC_AWS_CONN_ID") or defaults.aws_conn_id
    snowflake_conn_id = env.get("CDC_SNOWFLAKE_CONN_ID") or defaults.snowflake_conn_id
    check_connection_env(env, "CDC_AWS_CONN_ID", aws_conn_id)
    check_connection_env(env, "CDC_SNOWFLAKE_CONN_ID", snowflake_conn_id)
    sensor_timeout = _int(env, "CDC_SENSOR_TIMEOUT", defaults.sensor_timeout, 1, 86_400)
    check_connection_env(env, "CDC_AIRFLOW_API_CONN_ID", env.get("CDC_AIRFLOW_API_CONN_ID") or defaults.airflow_api_conn_id)
    return Settings(
        aws_conn_id=aws_conn_id,
        snowflake_conn_id=snowflake_conn_id,
        dynamodb_table=env.get("CDC_DYNAMODB_TABLE") or defaults.dynamodb_table,
        kinesis_stream=env.get("CDC_KINESIS_STREAM") or defaults.kinesis_stream,
        database=_identifier(env, "CDC_SNOWFLAKE_DATABASE", defaults.database),
        schema=_identifier(env, "CDC_SNOWFLAKE_SCHEMA", defaults.schema),
        warehouse=_identifier(env, "CDC_SNOWFLAKE_WAREHOUSE", defaults.warehouse),
        role=_identifier(env, "CDC_SNOWFLAKE_ROLE", defaults.role),
        dest_table=_identifier(env, "CDC_DEST_TABLE", defaults.dest_table),
        cdc_table=_identifier(env, "CDC_STAGING_TABLE", defaults.cdc_table),
        history_table=_identifier(env, "CDC_HISTORY_TABLE", defaults.history_table),
        load_stage=_identifier(env, "CDC_LOAD_STAGE", defaults.load_stage),
        summary_table=_identifier(env, "CDC_SUMMARY_TABLE", defaults.summary_table),
        snowflake_account=_account(env, defaults.snowflake_account),
        airflow_api_conn_id=env.get("CDC_AIRFLOW_API_CONN_ID") or defaults.airflow_api_conn_id,
        external_stage=external_stage,
        max_records=_int(env, "CDC_MAX_RECORDS", defaults.max_records, 1, 10_000_000),
        get_records_limit=_int(env, "CDC_GET_RECORDS_LIMIT", defaults.get_records_limit, 1, 10_000),
        schedule=_schedule(env, defaults.schedule),
        sensor_mode=sensor_mode,
        sensor_timeout=sensor_timeout,
        poke_interval=_float(env, "CDC_POKE_INTERVAL", defaults.poke_interval, 0.1, 3_600),
        batch_root=batch_root.rstrip("/"),
        batch_file_max_age_hours=_int(env, "CDC_BATCH_FILE_MAX_AGE_HOURS", defaults.batch_file_max_age_hours,
                                      1, 8_760),
        mapping_path=mapping_path,
        snowflake_emulator=emulator,
        fail_on_mismatch=_bool(env, "CDC_FAIL_ON_MISMATCH", defaults.fail_on_mismatch),
        reconcile_every_seconds=_int(env, "CDC_RECONCILE_EVERY_SECONDS", defaults.reconcile_every_seconds,
                                     0, 86_400),
        max_clock_skew_seconds=_int(env, "CDC_MAX_CLOCK_SKEW_SECONDS", defaults.max_clock_skew_seconds, 0, 86_400),
        **_alert_settings(env, defaults, sensor_timeout),
        # Snapshot, replay and audit
        snapshot_bucket=_bucket(env, "CDC_SNAPSHOT_BUCKET"),
        snapshot_prefix=(env.get("CDC_SNAPSHOT_PREFIX") or defaults.snapshot_prefix).strip("/"),
        snapshot_export_timeout=_int(env, "CDC_SNAPSHOT_EXPORT_TIMEOUT_SECONDS", defaults.snapshot_export_timeout,
                                     60, 86_400),
        audit_keys_table=_identifier(env, "CDC_AUDIT_KEYS_TABLE", defaults.audit_keys_table),
        audit_divergence_table=_identifier(env, "CDC_AUDIT_DIVERGENCE_TABLE", defaults.audit_divergence_table),
        audit_table=_identifier(env, "CDC_AUDIT_TABLE", defaults.audit_table),
    )


#: S3's bucket naming rules: 3-63 lower-case letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _bucket(env: Mapping[str, str], name: str) -> str:
    value = (env.get(name) or "").strip()
    if value and not _BUCKET.match(value):
        raise ConfigError(f"{name}={value!r} is not an S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    return value
