-- What the operational alerts look at (claims_cdc.alerts): positions, reasons and counts only, never a
-- record's value. Every statement here is read-only, so it is safe to repeat at will.

-- name: oldest_unmerged_change
-- The oldest change still waiting in the staging table (its change-order key starts with the change's own
-- time in microseconds), and how many wait. Read-only.
SELECT MIN(cdc_change_order), COUNT(*)
FROM {{ database }}.{{ schema }}.{{ cdc_table }};

-- name: dead_letters_waiting
-- Dead letters not re-driven yet, by reason (reasons never quote a value). Read-only.
SELECT reason, COUNT(*)
FROM {{ database }}.{{ schema }}.{{ rejected_table }}
WHERE redriven_at IS NULL
GROUP BY reason
ORDER BY 2 DESC, 1;

-- name: recent_reconciliations
-- The latest reconciliations' outcomes, newest first (CDC_DRIFT_ALERT_RUNS is at most 99). Read-only.
SELECT status
FROM {{ database }}.{{ schema }}.{{ reconciliation_table }}
ORDER BY checked_at DESC
LIMIT 100;
