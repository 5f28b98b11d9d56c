-- The claims-by-status summary the example downstream DAG claims_by_status rebuilds from the destination
-- whenever a merge has published the destination's Asset. Counts and sums per status: it stays in the
-- warehouse, next to the claims it summarises.

-- name: create_claims_by_status
-- Idempotent (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS {{ database }}.{{ schema }}.{{ summary_table }} (
    claimStatus STRING,
    claims INTEGER,
    total_charge FLOAT,
    rebuilt_at TIMESTAMP_NTZ(9)
);

-- name: clear_claims_by_status
-- With fill_claims_by_status, in one transaction: a full rebuild from the destination, so repeating it
-- gives the same table (readers see the old summary or the new one, never half of it).
DELETE FROM {{ database }}.{{ schema }}.{{ summary_table }};

-- name: fill_claims_by_status
INSERT INTO {{ database }}.{{ schema }}.{{ summary_table }} (claimStatus, claims, total_charge, rebuilt_at)
SELECT claimStatus, COUNT(*), SUM(totalCharge), SYSDATE()
FROM {{ database }}.{{ schema }}.{{ dest_table }}
GROUP BY claimStatus;
