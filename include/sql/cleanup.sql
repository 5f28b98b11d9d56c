-- Clean-up after a merge: the batch log records the merge, then exactly the claimed rows leave the
-- staging table. Both statements run in one transaction; both are safe to repeat.

-- name: mark_merged
UPDATE {{ database }}.{{ schema }}.{{ batch_table }}
SET status = 'MERGED', merged_at = SYSDATE()
WHERE batch_id IN (
    SELECT DISTINCT cdc_batch_id FROM {{ database }}.{{ schema }}.{{ cdc_table }} WHERE cdc_merge_id = ?
);

-- name: cleanup_staging
-- Idempotent: deletes exactly the rows this merge claimed, never rows staged after it began.
DELETE FROM {{ database }}.{{ schema }}.{{ cdc_table }} WHERE cdc_merge_id = ?;
