-- Reconciliation of the destination's row count against DynamoDB's.

-- name: count_destination
SELECT COUNT(*) FROM {{ database }}.{{ schema }}.{{ dest_table }};

-- name: insert_reconciliation
INSERT INTO {{ database }}.{{ schema }}.{{ reconciliation_table }}
    (dag_run_id, checked_at, dynamodb_table, dynamodb_count, snowflake_count, difference, status)
SELECT ?, SYSDATE(), ?, ?, ?, ?, ?;
