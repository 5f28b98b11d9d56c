-- The status at a glance (python -m claims_cdc.admin status, make status): read-only, so every statement
-- is safe to repeat at any time. Ids, times, counts and reasons only, never a record's value.

-- name: last_batch
-- The batch log's latest entry (a staged, merged or re-driven batch, or an accepted retention gap).
-- merged_at IS NULL is read as well: the fakesnow server returns a NULL timestamp as 1970-01-01.
SELECT batch_id, dag_run_id, status, staged_at, merged_at, records_read, rows_staged, duplicates_dropped,
       rows_rejected, history_rows, merged_at IS NULL
FROM {{ database }}.{{ schema }}.{{ batch_table }}
ORDER BY staged_at DESC, batch_id DESC
LIMIT 1;

-- name: staging_backlog
-- Rows staged and not merged yet (a merge deletes the rows it merged), how many a merge in progress has
-- claimed, the oldest change's order key (its own time in microseconds, then its sequence number) and the
-- oldest load time.
SELECT COUNT(*), COUNT_IF(cdc_merge_id IS NOT NULL), MIN(cdc_change_order), MIN(cdc_loaded_at)
FROM {{ database }}.{{ schema }}.{{ cdc_table }};

-- name: last_reconciliation
SELECT checked_at, dag_run_id, dynamodb_count, snowflake_count, difference, status
FROM {{ database }}.{{ schema }}.{{ reconciliation_table }}
ORDER BY checked_at DESC
LIMIT 1;
