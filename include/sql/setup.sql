-- Creates the seed's database, schema, warehouse, role and tables, and the pipeline's bookkeeping tables.
-- Safe to run again: every object is created IF NOT EXISTS, so re-running never drops data.
-- Statements marked "snowflake-only" are skipped, with a log line, on the local fakesnow emulator.

-- name: create_role
-- snowflake-only: fakesnow has no roles
CREATE ROLE IF NOT EXISTS {{ role }};

-- name: create_database
CREATE DATABASE IF NOT EXISTS {{ database }};

-- name: use_database
USE DATABASE {{ database }};

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {{ database }}.{{ schema }};

-- name: use_schema
USE SCHEMA {{ database }}.{{ schema }};

-- name: create_warehouse
-- snowflake-only: fakesnow has no warehouses
CREATE WAREHOUSE IF NOT EXISTS {{ warehouse }} WITH WAREHOUSE_SIZE = 'SMALL' AUTO_SUSPEND = 60 AUTO_RESUME = TRUE;

-- name: grant_warehouse
-- snowflake-only: fakesnow has no grants
GRANT USAGE ON WAREHOUSE {{ warehouse }} TO ROLE {{ role }};

-- name: grant_database
-- snowflake-only: fakesnow has no grants
GRANT USAGE ON DATABASE {{ database }} TO ROLE {{ role }};

-- name: grant_schema
-- snowflake-only: fakesnow has no grants
GRANT USAGE, CREATE TABLE ON SCHEMA {{ database }}.{{ schema }} TO ROLE {{ role }};

-- name: create_dest_table
-- The seed's 32 columns first, verbatim, so the seed's verification queries run as written; the
-- pipeline's own columns after them.
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ dest_table }} (
    eventName STRING,
    eventCreationUnixTime STRING,
    claimId STRING,
    diagnosisCodes STRING,
    dateOfService STRING,
    totalCharge FLOAT,
    procedureDetails STRING,
    memberId STRING,
    insurancePlan STRING,
    patientZip INTEGER,
    patientState STRING,
    patientCity STRING,
    patientStreet STRING,
    patientGender VARCHAR(1),
    patientDOB STRING,
    patientLastName STRING,
    patientPhone STRING,
    patientFirstName STRING,
    patientEmail STRING,
    claimStatus STRING,
    createdTimeStamp timestamp_ntz(9),
    providerName STRING,
    providerNPI STRING,
    providerZip INTEGER,
    providerState STRING,
    providerCity STRING,
    providerStreet STRING,
    billSubmitDate STRING,
    payerName STRING,
    payerId STRING,
    payerContactNumber STRING,
    paymentStatus STRING,
    cdc_event_id STRING,
    cdc_shard_id STRING,
    cdc_sequence_number STRING,
    cdc_change_order STRING,
    cdc_content_hash STRING,
    cdc_batch_id STRING,
    cdc_loaded_at TIMESTAMP_NTZ(9),
    cdc_merge_id STRING
);

-- name: create_history_table
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ history_table }} LIKE {{ database }}.{{ schema }}.{{ dest_table }};

-- name: create_cdc_table
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ cdc_table }} LIKE {{ database }}.{{ schema }}.{{ dest_table }};

-- name: create_checkpoint_table
-- One row per shard: the last sequence number staged. Moved only in the staging transaction.
-- All timestamps of the pipeline's tables are UTC (SYSDATE()).
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ checkpoint_table }} (
    stream_name STRING NOT NULL,
    shard_id STRING NOT NULL,
    sequence_number STRING,
    parent_shard_ids STRING,
    shard_closed BOOLEAN,
    batch_id STRING,
    updated_at TIMESTAMP_NTZ(9),
    -- When a read last found nothing after sequence_number (UTC): the retention check's evidence.
    verified_at TIMESTAMP_NTZ(9)
);

-- name: create_batch_table
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ batch_table }} (
    batch_id STRING NOT NULL,
    dag_run_id STRING,
    stream_name STRING,
    records_read INTEGER,
    rows_staged INTEGER,
    history_rows INTEGER,
    rows_rejected INTEGER,
    positions STRING,
    status STRING,
    staged_at TIMESTAMP_NTZ(9),
    merged_at TIMESTAMP_NTZ(9)
);

-- name: create_reconciliation_table
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ reconciliation_table }} (
    dag_run_id STRING,
    checked_at TIMESTAMP_NTZ(9),
    dynamodb_table STRING,
    dynamodb_count INTEGER,
    snowflake_count INTEGER,
    difference INTEGER,
    status STRING
);

-- name: create_rejected_table
-- Records that could not become rows, kept whole with their reason (PHI: it stays in the warehouse).
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ rejected_table }} (
    batch_id STRING,
    shard_id STRING,
    sequence_number STRING,
    reason STRING,
    payload STRING,
    rejected_at TIMESTAMP_NTZ(9)
);

-- name: create_tombstone_table
-- The latest REMOVE per claim, so that a late, older INSERT or MODIFY cannot bring a deleted claim back.
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ tombstone_table }} (
    claimId STRING NOT NULL,
    cdc_change_order STRING NOT NULL,
    deleted_at TIMESTAMP_NTZ(9)
);
