-- The deep audit (claims_cdc_audit): DynamoDB's keys and content hashes against the destination's.
-- Only ids, content hashes and counts are written or read here besides the destination's mapped columns,
-- which the audit hashes in the worker and never logs. Lists are bound as JSON, never rendered.

-- name: clear_old_audit_keys
-- The keys of earlier audits are scratch. Safe to repeat.
DELETE FROM {{ database }}.{{ schema }}.{{ audit_keys_table }} WHERE audit_id <> ?;

-- name: clear_audit_segment
-- Runs with insert_audit_keys in one transaction: a retried segment replaces its own keys, never adds.
DELETE FROM {{ database }}.{{ schema }}.{{ audit_keys_table }} WHERE audit_id = ? AND segment = ?;

-- name: insert_audit_keys
INSERT INTO {{ database }}.{{ schema }}.{{ audit_keys_table }} (audit_id, segment, claimId, item_hash)
SELECT ?, ?, p.value:"k"::STRING, p.value:"h"::STRING
FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p;

-- name: read_audit_keys
SELECT claimId, item_hash FROM {{ database }}.{{ schema }}.{{ audit_keys_table }} WHERE audit_id = ?;

-- name: read_destination
-- Read-only: each row's key and the mapped columns the item fills (the envelope's columns are not compared).
SELECT {{ item_columns | join(", ") }} FROM {{ database }}.{{ schema }}.{{ dest_table }};

-- name: read_destination_keys
SELECT {{ item_columns | join(", ") }} FROM {{ database }}.{{ schema }}.{{ dest_table }}
WHERE {{ key_column }} IN (SELECT p.value::STRING FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p);

-- name: clear_divergence
-- With insert_divergence, in one transaction: a retried comparison replaces its own findings.
DELETE FROM {{ database }}.{{ schema }}.{{ audit_divergence_table }} WHERE audit_id = ?;

-- name: insert_divergence
INSERT INTO {{ database }}.{{ schema }}.{{ audit_divergence_table }} (audit_id, claimId, kind, found_at)
SELECT ?, p.value:"k"::STRING, p.value:"kind"::STRING, SYSDATE()
FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p;

-- name: read_divergence
SELECT claimId, kind FROM {{ database }}.{{ schema }}.{{ audit_divergence_table }} WHERE audit_id = ? ORDER BY claimId;

-- name: mark_after_repair
-- Idempotent: sets what a divergent key was after the repair (NULL: it now matches).
UPDATE {{ database }}.{{ schema }}.{{ audit_divergence_table }}
SET repaired_at = SYSDATE(), after_repair = ?
WHERE audit_id = ? AND claimId IN (SELECT p.value::STRING FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p);

-- name: clear_audit
-- With insert_audit, in one transaction: one row per audit, replaced by a retry.
DELETE FROM {{ database }}.{{ schema }}.{{ audit_table }} WHERE audit_id = ?;

-- name: insert_audit
INSERT INTO {{ database }}.{{ schema }}.{{ audit_table }}
    (audit_id, dag_run_id, checked_at, dynamodb_items, destination_rows, missing, extra, different, repaired,
     missing_after, extra_after, different_after, status)
SELECT ?, ?, SYSDATE(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?;
