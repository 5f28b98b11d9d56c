-- Drops what setup.sql created (the seed's clean-up step). Destroys data: run only on purpose.

-- name: drop_tables
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ dest_table }};

-- name: drop_cdc_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ cdc_table }};

-- name: drop_landing_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ landing_table }};

-- name: drop_history_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ history_table }};

-- name: drop_checkpoint_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ checkpoint_table }};

-- name: drop_batch_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ batch_table }};

-- name: drop_reconciliation_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ reconciliation_table }};

-- name: drop_rejected_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ rejected_table }};

-- name: drop_tombstone_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ tombstone_table }};

-- name: drop_summary_table
-- The example downstream DAG's summary (claims_by_status creates it).
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ summary_table }};

-- name: drop_audit_keys_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ audit_keys_table }};

-- name: drop_audit_divergence_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ audit_divergence_table }};

-- name: drop_audit_table
DROP TABLE IF EXISTS {{ database }}.{{ schema }}.{{ audit_table }};
