-- Side runs (claims_cdc_snapshot, claims_cdc_replay, claims_cdc_audit): what they record in the batch log
-- beyond a staged batch, and the rebuild of the destination from the event history.

-- name: log_side_run
-- A side run that staged nothing (a rebuild, an empty replay or re-drive) is still logged: mode, range and
-- counts in positions (ids and counts only). Safe to repeat: one row per run id, never two.
INSERT INTO {{ database }}.{{ schema }}.{{ batch_table }}
    (batch_id, dag_run_id, stream_name, records_read, rows_staged, history_rows, rows_rejected, positions,
     status, staged_at, duplicates_dropped)
SELECT ?, ?, ?, ?, 0, 0, 0, ?, ?, SYSDATE(), 0
WHERE NOT EXISTS (SELECT 1 FROM {{ database }}.{{ schema }}.{{ batch_table }} WHERE batch_id = ?);

-- The rebuild runs these four in ONE transaction (the task opens it): the destination and the tombstones
-- become what the history says as of a time (a change order bound, bound as a value). Safe to repeat:
-- each run replaces both tables' contents with the same result from the same history.

-- name: rebuild_clear_destination
DELETE FROM {{ database }}.{{ schema }}.{{ dest_table }};

-- name: rebuild_destination
-- Each claim's latest change at or before the bound, unless that change is its REMOVE.
INSERT INTO {{ database }}.{{ schema }}.{{ dest_table }} ({{ all_columns | join(", ") }})
SELECT {{ all_columns | join(", ") }}
FROM (
    SELECT h.*, ROW_NUMBER() OVER (PARTITION BY h.claimId ORDER BY h.cdc_change_order DESC) AS cdc_rank
    FROM {{ database }}.{{ schema }}.{{ history_table }} h
    WHERE h.cdc_change_order <= ?
) latest
WHERE latest.cdc_rank = 1 AND latest.eventName <> 'REMOVE';

-- name: rebuild_clear_tombstones
DELETE FROM {{ database }}.{{ schema }}.{{ tombstone_table }};

-- name: rebuild_tombstones
-- Each claim's latest REMOVE at or before the bound (what merge_tombstones would hold then).
INSERT INTO {{ database }}.{{ schema }}.{{ tombstone_table }} (claimId, cdc_change_order, deleted_at)
SELECT claimId, MAX(cdc_change_order), SYSDATE()
FROM {{ database }}.{{ schema }}.{{ history_table }}
WHERE eventName = 'REMOVE' AND cdc_change_order <= ?
GROUP BY claimId;
