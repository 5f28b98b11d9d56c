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
GRANT USAGE, CREATE TABLE, CREATE STAGE ON SCHEMA {{ database }}.{{ schema }} TO ROLE {{ role }};

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

-- name: add_history_new_image
-- The history keeps each change whole: its complete new and old images as DynamoDB JSON, so nothing
-- DynamoDB held is lost, also attributes the mapping does not know (named in cdc_unmapped_attributes).
-- Idempotent (IF NOT EXISTS), and it upgrades a history table made by an earlier version.
ALTER TABLE {{ database }}.{{ schema }}.{{ history_table }} ADD COLUMN IF NOT EXISTS cdc_new_image VARIANT;

-- name: add_history_old_image
ALTER TABLE {{ database }}.{{ schema }}.{{ history_table }} ADD COLUMN IF NOT EXISTS cdc_old_image VARIANT;

-- name: add_history_unmapped_attributes
-- A JSON array of attribute names (never values) that no column of the mapping takes.
ALTER TABLE {{ database }}.{{ schema }}.{{ history_table }} ADD COLUMN IF NOT EXISTS cdc_unmapped_attributes STRING;

-- name: create_cdc_table
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ cdc_table }} LIKE {{ database }}.{{ schema }}.{{ dest_table }};

-- name: drop_staging_new_image
-- The staging table holds what the merge needs and no images: the images go to the history only, by way
-- of the landing table below. Upgrades a staging table made by an earlier version, which carried them
-- (their rows' images are already in the history). Idempotent (IF EXISTS).
ALTER TABLE {{ database }}.{{ schema }}.{{ cdc_table }} DROP COLUMN IF EXISTS cdc_new_image;

-- name: drop_staging_old_image
ALTER TABLE {{ database }}.{{ schema }}.{{ cdc_table }} DROP COLUMN IF EXISTS cdc_old_image;

-- name: drop_staging_unmapped_attributes
ALTER TABLE {{ database }}.{{ schema }}.{{ cdc_table }} DROP COLUMN IF EXISTS cdc_unmapped_attributes;

-- name: create_landing_table
-- Where COPY INTO lands a batch's rows whole, each change's images as JSON text (include/sql/load.sql).
-- Inside the stage transaction the staging rows (without the images) and the history rows (with them,
-- parsed into VARIANT) are filled from it, and the batch's landed rows deleted before the commit
-- (stage.sql): it holds rows only inside an open transaction. So the images are written once into a
-- table, here, and once into the history; the staging table, which the merge's claim UPDATE rewrites,
-- stays narrow. Transient: no Fail-safe for rows that never outlive a transaction.
CREATE TRANSIENT TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ landing_table }} LIKE {{ database }}.{{ schema }}.{{ dest_table }};

-- name: add_landing_new_image
ALTER TABLE {{ database }}.{{ schema }}.{{ landing_table }} ADD COLUMN IF NOT EXISTS cdc_new_image STRING;

-- name: add_landing_old_image
ALTER TABLE {{ database }}.{{ schema }}.{{ landing_table }} ADD COLUMN IF NOT EXISTS cdc_old_image STRING;

-- name: add_landing_unmapped_attributes
ALTER TABLE {{ database }}.{{ schema }}.{{ landing_table }} ADD COLUMN IF NOT EXISTS cdc_unmapped_attributes STRING;

-- name: landing_no_time_travel
-- snowflake-only: fakesnow keeps no Time Travel
-- Deleted landing rows (claim content) are not kept for Time Travel either.
ALTER TABLE {{ database }}.{{ schema }}.{{ landing_table }} SET DATA_RETENTION_TIME_IN_DAYS = 0;

-- name: create_load_stage
-- Where each batch's Parquet files are PUT and loaded from with COPY INTO (include/sql/load.sql); COPY's
-- PURGE empties it as batches load.
CREATE STAGE IF NOT EXISTS {{ database }}.{{ schema }}.{{ load_stage }} FILE_FORMAT = (TYPE = PARQUET);

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
    merged_at TIMESTAMP_NTZ(9),
    -- Every batch balances: records_read = rows_staged + duplicates_dropped + rows_rejected.
    duplicates_dropped INTEGER
);

-- name: add_batch_duplicates_dropped
-- Idempotent; upgrades a batch log made by an earlier version.
ALTER TABLE {{ database }}.{{ schema }}.{{ batch_table }} ADD COLUMN IF NOT EXISTS duplicates_dropped INTEGER;

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
-- The dead letters: records that could not become rows, kept whole with their reason (PHI: it stays in
-- the warehouse). payload is the record as text; payload_base64 its exact bytes (what a re-drive reads).
-- A re-driven record is marked (redriven_at, redrive_batch_id), never deleted.
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ rejected_table }} (
    batch_id STRING,
    shard_id STRING,
    sequence_number STRING,
    reason STRING,
    payload STRING,
    rejected_at TIMESTAMP_NTZ(9),
    payload_base64 STRING,
    arrival_micros INTEGER,
    redriven_at TIMESTAMP_NTZ(9),
    redrive_batch_id STRING
);

-- name: add_rejected_payload_base64
-- Idempotent; these four upgrade a dead-letter table made by an earlier version.
ALTER TABLE {{ database }}.{{ schema }}.{{ rejected_table }} ADD COLUMN IF NOT EXISTS payload_base64 STRING;

-- name: add_rejected_arrival_micros
ALTER TABLE {{ database }}.{{ schema }}.{{ rejected_table }} ADD COLUMN IF NOT EXISTS arrival_micros INTEGER;

-- name: add_rejected_redriven_at
ALTER TABLE {{ database }}.{{ schema }}.{{ rejected_table }} ADD COLUMN IF NOT EXISTS redriven_at TIMESTAMP_NTZ(9);

-- name: add_rejected_redrive_batch_id
ALTER TABLE {{ database }}.{{ schema }}.{{ rejected_table }} ADD COLUMN IF NOT EXISTS redrive_batch_id STRING;

-- name: create_tombstone_table
-- The latest REMOVE per claim, so that a late, older INSERT or MODIFY cannot bring a deleted claim back.
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ tombstone_table }} (
    claimId STRING NOT NULL,
    cdc_change_order STRING NOT NULL,
    deleted_at TIMESTAMP_NTZ(9)
);

-- Masking of PHI on real Snowflake: the columns the mapping file marks "phi" (names, dates of birth,
-- addresses, phone, email, member id), the history's images and the dead letters' payloads get the tag
-- phi; the tag carries one masking policy per data type, so every role but the pipeline's sees NULL.
-- Each statement is idempotent (IF NOT EXISTS; SET TAG overwrites; FORCE re-sets the same policies).

-- name: create_phi_tag
-- snowflake-only: fakesnow has no object tags
CREATE TAG IF NOT EXISTS {{ database }}.{{ schema }}.phi
    ALLOWED_VALUES 'name', 'date_of_birth', 'address', 'phone', 'email', 'member_id', 'record';

-- name: create_phi_mask_string
-- snowflake-only: fakesnow has no masking policies
CREATE MASKING POLICY IF NOT EXISTS {{ database }}.{{ schema }}.phi_mask_string AS (val STRING) RETURNS STRING ->
    CASE WHEN IS_ROLE_IN_SESSION('{{ role }}') THEN val ELSE NULL END;

-- name: create_phi_mask_number
-- snowflake-only: fakesnow has no masking policies
CREATE MASKING POLICY IF NOT EXISTS {{ database }}.{{ schema }}.phi_mask_number AS (val NUMBER) RETURNS NUMBER ->
    CASE WHEN IS_ROLE_IN_SESSION('{{ role }}') THEN val ELSE NULL END;

-- name: create_phi_mask_variant
-- snowflake-only: fakesnow has no masking policies
CREATE MASKING POLICY IF NOT EXISTS {{ database }}.{{ schema }}.phi_mask_variant AS (val VARIANT) RETURNS VARIANT ->
    CASE WHEN IS_ROLE_IN_SESSION('{{ role }}') THEN val ELSE NULL END;

-- name: set_phi_tag_policies
-- snowflake-only: fakesnow has no masking policies
ALTER TAG {{ database }}.{{ schema }}.phi SET
    MASKING POLICY {{ database }}.{{ schema }}.phi_mask_string,
    MASKING POLICY {{ database }}.{{ schema }}.phi_mask_number,
    MASKING POLICY {{ database }}.{{ schema }}.phi_mask_variant
    FORCE;
-- name: tag_phi_dest_columns
-- snowflake-only: fakesnow has no object tags
ALTER TABLE {{ database }}.{{ schema }}.{{ dest_table }} MODIFY
    {%- for c in phi_columns %}
    COLUMN {{ c.column }} SET TAG {{ database }}.{{ schema }}.phi = '{{ c.phi }}'{{ "," if not loop.last }}
    {%- endfor %};

-- name: tag_phi_staging_columns
-- snowflake-only: fakesnow has no object tags
ALTER TABLE {{ database }}.{{ schema }}.{{ cdc_table }} MODIFY
    {%- for c in phi_columns %}
    COLUMN {{ c.column }} SET TAG {{ database }}.{{ schema }}.phi = '{{ c.phi }}'{{ "," if not loop.last }}
    {%- endfor %};

-- name: tag_phi_landing_columns
-- snowflake-only: fakesnow has no object tags
ALTER TABLE {{ database }}.{{ schema }}.{{ landing_table }} MODIFY
    {%- for c in phi_columns %}
    COLUMN {{ c.column }} SET TAG {{ database }}.{{ schema }}.phi = '{{ c.phi }}',
    {%- endfor %}
    COLUMN cdc_new_image SET TAG {{ database }}.{{ schema }}.phi = 'record',
    COLUMN cdc_old_image SET TAG {{ database }}.{{ schema }}.phi = 'record';

-- name: tag_phi_history_columns
-- snowflake-only: fakesnow has no object tags
ALTER TABLE {{ database }}.{{ schema }}.{{ history_table }} MODIFY
    {%- for c in phi_columns %}
    COLUMN {{ c.column }} SET TAG {{ database }}.{{ schema }}.phi = '{{ c.phi }}'{{ "," if not loop.last }}
    {%- endfor %};

-- name: tag_phi_history_images
-- snowflake-only: fakesnow has no object tags
ALTER TABLE {{ database }}.{{ schema }}.{{ history_table }} MODIFY
    COLUMN cdc_new_image SET TAG {{ database }}.{{ schema }}.phi = 'record',
    COLUMN cdc_old_image SET TAG {{ database }}.{{ schema }}.phi = 'record';

-- name: tag_phi_dead_letters
-- snowflake-only: fakesnow has no object tags
ALTER TABLE {{ database }}.{{ schema }}.{{ rejected_table }} MODIFY
    COLUMN payload SET TAG {{ database }}.{{ schema }}.phi = 'record',
    COLUMN payload_base64 SET TAG {{ database }}.{{ schema }}.phi = 'record';

-- The deep audit (claims_cdc_audit): ids, content hashes and counts only, never a value.

-- name: create_audit_keys_table
-- The keys an audit's parallel Scan read, with the content hash of each item's mapped values (scratch: only
-- the latest audit's are kept).
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ audit_keys_table }} (
    audit_id STRING NOT NULL,
    segment INTEGER,
    claimId STRING NOT NULL,
    item_hash STRING NOT NULL
);

-- name: create_audit_divergence_table
-- One row per key an audit found divergent: missing (in DynamoDB, not in the destination), extra (the other
-- way round) or different (content hashes differ); what it was after the repair (none: repaired).
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ audit_divergence_table }} (
    audit_id STRING NOT NULL,
    claimId STRING NOT NULL,
    kind STRING NOT NULL,
    found_at TIMESTAMP_NTZ(9),
    repaired_at TIMESTAMP_NTZ(9),
    after_repair STRING
);

-- name: create_audit_table
-- One row per audit: counts before and after its repair.
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ audit_table }} (
    audit_id STRING NOT NULL,
    dag_run_id STRING,
    checked_at TIMESTAMP_NTZ(9),
    dynamodb_items INTEGER,
    destination_rows INTEGER,
    missing INTEGER,
    extra INTEGER,
    different INTEGER,
    repaired INTEGER,
    missing_after INTEGER,
    extra_after INTEGER,
    different_after INTEGER,
    status STRING
);
