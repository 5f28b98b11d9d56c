"""The mapping file matches the tables, and configuration errors name the setting."""

from __future__ import annotations

import json
import re

import pytest

from claims_cdc import sql
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR, ConfigError, load_settings

SEED_COLUMNS = [
    "eventName", "eventCreationUnixTime", "claimId", "diagnosisCodes", "dateOfService", "totalCharge",
    "procedureDetails", "memberId", "insurancePlan", "patientZip", "patientState", "patientCity", "patientStreet",
    "patientGender", "patientDOB", "patientLastName", "patientPhone", "patientFirstName", "patientEmail",
    "claimStatus", "createdTimeStamp", "providerName", "providerNPI", "providerZip", "providerState",
    "providerCity", "providerStreet", "billSubmitDate", "payerName", "payerId", "payerContactNumber",
    "paymentStatus",
]


def _dest_table_columns() -> list[tuple[str, str]]:
    setup = (INCLUDE_DIR / "sql" / "setup.sql").read_text()
    body = setup.split("{{ dest_table }} (", 1)[1].split("\n);", 1)[0]
    return [tuple(line.strip().rstrip(",").split(None, 1)) for line in body.strip().splitlines()]


def test_mapping_lists_the_seed_columns_in_table_order():
    mapping = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
    assert mapping.names == SEED_COLUMNS
    assert mapping.key_column == "claimId"


def test_destination_table_starts_with_the_seed_columns_and_types():
    columns = _dest_table_columns()
    mapping = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
    assert [name for name, _ in columns[:32]] == SEED_COLUMNS
    assert [t.upper() for _, t in columns[:32]] == [c.type for c in mapping.columns]
    assert all(name.startswith("cdc_") for name, _ in columns[32:])


def test_mapping_errors_name_the_setting_and_the_problem(tmp_path):
    doc = json.loads((INCLUDE_DIR / "mapping" / "claims.json").read_text())
    doc["columns"][5]["type"] = "GEOGRAPHY"
    bad = tmp_path / "mapping.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"CDC_MAPPING_PATH: column 'totalCharge' has unsupported type 'GEOGRAPHY'"):
        load_mapping(bad)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDC_MAX_RECORDS": "lots"}, "CDC_MAX_RECORDS='lots' is not a whole number"),
        ({"CDC_MAX_RECORDS": "0"}, "CDC_MAX_RECORDS=0 is outside 1..10000000"),
        ({"CDC_SENSOR_TIMEOUT": "-5"}, "CDC_SENSOR_TIMEOUT=-5 is outside 1..86400"),
        ({"CDC_DEST_TABLE": "dest; DROP TABLE x"}, "CDC_DEST_TABLE='dest; DROP TABLE x' is not a plain Snowflake identifier"),
        ({"CDC_BATCH_ROOT": "/tmp/batches"}, "CDC_BATCH_ROOT='/tmp/batches' must start with file:// or s3://"),
        ({"CDC_MAPPING_PATH": "/nowhere.json"}, "CDC_MAPPING_PATH='/nowhere.json' is not a file"),
        ({"CDC_FAIL_ON_MISMATCH": "maybe"}, "CDC_FAIL_ON_MISMATCH='maybe' is not a boolean"),
        ({"CDC_SNOWFLAKE_EMULATOR": "duckdb"}, "CDC_SNOWFLAKE_EMULATOR='duckdb' must be empty or 'fakesnow'"),
        ({"CDC_SCHEDULE": "every minute"}, "CDC_SCHEDULE='every minute' is not a valid schedule"),
        ({"CDC_BATCH_FILE_MAX_AGE_HOURS": "0"}, "CDC_BATCH_FILE_MAX_AGE_HOURS=0 is outside 1..8760"),
        ({"CDC_BATCH_FILE_MAX_AGE_HOURS": "1.5"}, "CDC_BATCH_FILE_MAX_AGE_HOURS='1.5' is not a whole number"),
        ({"CDC_SENSOR_MODE": "async"}, "CDC_SENSOR_MODE='async' must be one of deferrable, reschedule, poke"),
        ({"CDC_RECONCILE_EVERY_SECONDS": "-1"}, "CDC_RECONCILE_EVERY_SECONDS=-1 is outside 0..86400"),
        ({"CDC_RECONCILE_EVERY_SECONDS": "5m"}, "CDC_RECONCILE_EVERY_SECONDS='5m' is not a whole number"),
        ({"CDC_EXTERNAL_STAGE": "batches", "CDC_BATCH_ROOT": "file:///var/batches"},
         "CDC_EXTERNAL_STAGE='batches' needs an s3:// CDC_BATCH_ROOT (the stage's URL)"),
        ({"CDC_EXTERNAL_STAGE": "my-stage", "CDC_BATCH_ROOT": "s3://b/p"},
         "CDC_EXTERNAL_STAGE='my-stage' is not a plain Snowflake identifier"),
    ],
)
def test_bad_settings_fail_early_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env)


def test_environment_settings_reach_the_rendered_sql():
    settings = load_settings({"CDC_SNOWFLAKE_DATABASE": "CLAIMS_DB", "CDC_SNOWFLAKE_SCHEMA": "CDC_TEST",
                              "CDC_DEST_TABLE": "claims_dest", "CDC_MAX_RECORDS": "250", "CDC_POKE_INTERVAL": "0.5"})
    merge = sql.load("merge", settings, load_mapping(settings.mapping_path))["merge_destination"].text
    assert "MERGE INTO CLAIMS_DB.CDC_TEST.claims_dest tgt" in merge
    assert (settings.max_records, settings.poke_interval) == (250, 0.5)


def test_batch_file_max_age_defaults_to_a_day():
    assert load_settings({}).batch_file_max_age_hours == 24
    assert load_settings({"CDC_BATCH_FILE_MAX_AGE_HOURS": "6"}).batch_file_max_age_hours == 6


def test_a_scheduled_run_reconciles_at_most_every_five_minutes_by_default():
    assert load_settings({}).reconcile_every_seconds == 300
    assert load_settings({"CDC_RECONCILE_EVERY_SECONDS": "0"}).reconcile_every_seconds == 0


@pytest.mark.parametrize(
    ("raw", "schedule"),
    [("none", None), ("Manual", None), ("*/5 * * * *", "*/5 * * * *"), ("@hourly", "@hourly")],
)
def test_schedule_setting(raw, schedule):
    assert load_settings({} if raw is None else {"CDC_SCHEDULE": raw}).schedule == schedule


# --- the schedule is checked as Airflow's cron timetables check it (croniter) ---


@pytest.mark.parametrize("raw", ["@continuous", "@once", "@daily", "@quarterly", "0 6 * * MON-FRI", "*/15 * * * *"])
def test_schedules_airflow_accepts_are_accepted(raw):
    from airflow.sdk import DAG

    schedule = load_settings({"CDC_SCHEDULE": raw}).schedule
    DAG(dag_id="probe", schedule=schedule, max_active_runs=1).timetable.validate()  # Airflow takes it as it is


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("61 * * * *", "out of range"),
        ("*/0 * * * *", "step '0'"),
        ("* * * *", "Exactly 5, 6 or 7 columns"),
        ("@fortnightly", "Exactly 5, 6 or 7 columns"),
        ("0 0 * * * 30", "has 6 fields"),
    ],
)
def test_a_schedule_that_is_not_valid_cron_names_the_setting_and_why(raw, why):
    with pytest.raises(ConfigError, match=r"^CDC_SCHEDULE=") as failure:
        load_settings({"CDC_SCHEDULE": raw})
    assert why in str(failure.value)


# --- AIRFLOW_CONN_* for the two connections the settings name ---

SECRET = "hunter2-Sn0wflake-Passphrase"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"conn_type": "snowflake", "password": "' + SECRET + '", bad json', r"is not valid JSON \(.*line 1 column \d+\)"),
        ('{"login": "fake", "password": "' + SECRET + '"}', "has no conn_type"),
        ('{"conn_type": 7, "password": "' + SECRET + '"}', "has no conn_type"),
        ('["snowflake", "' + SECRET + '"]', "neither JSON .* nor a URI with a scheme"),  # Airflow: a URI
        ('{"conn_type": "snowflake", "passwd": "' + SECRET + '"}', "unknown field.*passwd"),
        ('{"conn_type": "snowflake", "password": "' + SECRET + '", "port": "80a"}', "port that is not a whole number"),
        ('{"conn_type": "snowflake", "password": "' + SECRET + '", "extra": ["' + SECRET + '"]}', "extra that is not"),
        ("fake:" + SECRET + "@127.0.0.1:8765", "neither JSON .* nor a URI with a scheme"),
        ("snowflake://a://b://" + SECRET, "more than two '://'"),
    ],
)
def test_a_malformed_connection_variable_names_the_variable_and_never_its_value(value, problem):
    with pytest.raises(ConfigError) as failure:
        load_settings({"AIRFLOW_CONN_SNOWFLAKE_DEFAULT": value})
    message = str(failure.value)
    assert message.startswith("AIRFLOW_CONN_SNOWFLAKE_DEFAULT ")
    assert re.search(problem, message), message
    assert SECRET not in message and value not in message


def test_the_connection_checked_is_the_one_the_setting_names():
    bad = '{"conn_type": "aws", "password": "' + SECRET + '",'
    # An unrelated connection variable is not this pipeline's business.
    load_settings({"AIRFLOW_CONN_SOMETHING_ELSE": bad})
    with pytest.raises(ConfigError, match=r"^AIRFLOW_CONN_CLAIMS_AWS is not valid JSON .*CDC_AWS_CONN_ID names \('claims_aws'\)"):
        load_settings({"CDC_AWS_CONN_ID": "claims_aws", "AIRFLOW_CONN_CLAIMS_AWS": bad})


@pytest.mark.parametrize(
    "value",
    [
        '  {"conn_type": "aws", "login": "k", "password": "s", "extra": {"region_name": "us-east-1"}}',
        '{"conn_type": "snowflake", "port": 8765, "extra": "{\\"account\\": \\"a\\"}"}',
        "aws://AKIA:secret@/?region_name=us-east-1",
        "",  # empty: Airflow looks in its other secrets backends
    ],
)
def test_connection_variables_airflow_reads_are_accepted(value):
    from airflow.sdk.definitions.connection import Connection

    load_settings({"AIRFLOW_CONN_AWS_DEFAULT": value})
    if value:
        Connection.from_json(value.strip(), "x") if value.strip()[0] == "{" else Connection.from_uri(value, "x")


def test_an_external_stage_reads_an_s3_batch_root_and_locally_a_file_root_on_fakesnow_only():
    assert load_settings({"CDC_EXTERNAL_STAGE": "claims_batches", "CDC_BATCH_ROOT": "s3://bucket/cdc/"}
                         ).external_stage == "claims_batches"
    local = load_settings({"CDC_EXTERNAL_STAGE": "claims_batches", "CDC_BATCH_ROOT": "file:///var/cdc",
                           "CDC_SNOWFLAKE_EMULATOR": "fakesnow"})
    assert (local.external_stage, local.batch_root) == ("claims_batches", "file:///var/cdc")
    assert load_settings({}).external_stage == ""
