-- Staging one batch: checkpoints, CDC rows, history rows, rejected records and the batch log entry,
-- all in ONE transaction (the task opens it), so a batch is staged exactly once or not at all. The rows
-- and dead letters come in by COPY INTO from the load stage (load.sql); only small lists (positions,
-- re-driven keys) are bound as JSON.

-- name: read_checkpoints
SELECT shard_id, sequence_number, shard_closed, verified_at, verified_at IS NULL
FROM {{ database }}.{{ schema }}.{{ checkpoint_table }}
WHERE stream_name = ?;

-- name: read_batch
SELECT status, rows_staged, history_rows, rows_rejected, duplicates_dropped
FROM {{ database }}.{{ schema }}.{{ batch_table }}
WHERE batch_id = ?;

-- name: insert_staging
-- The batch's rows, just landed by COPY INTO (load.sql), into the staging table with their load time:
-- every column but the images, which the merge does not need.
INSERT INTO {{ database }}.{{ schema }}.{{ cdc_table }} (
    {%- for c in all_columns %}{{ c }}{{ ", " if not loop.last }}{% endfor -%})
SELECT
    {%- for c in all_columns %}
    {% if c == "cdc_loaded_at" %}SYSDATE(){% else %}l.{{ c }}{% endif %}{{ "," if not loop.last }}
    {%- endfor %}
FROM {{ database }}.{{ schema }}.{{ landing_table }} l
WHERE l.cdc_batch_id = ?;

-- name: insert_history
-- Filled server-side from the rows just landed, never by sending the batch again. Idempotent: each
-- distinct change once. A copy of a change already kept (the same claim and content hash: the same time,
-- event, values and images) is dropped, whether it is a re-delivery under the same eventID or a re-send
-- under a new one. Two different changes that share an eventID are both kept.
INSERT INTO {{ database }}.{{ schema }}.{{ history_table }} (
    {%- for c in columns %}{{ c.column }}, {% endfor -%}
    cdc_event_id, cdc_shard_id, cdc_sequence_number, cdc_change_order, cdc_content_hash, cdc_batch_id,
    cdc_loaded_at, cdc_new_image, cdc_old_image, cdc_unmapped_attributes)
SELECT
    {%- for c in columns %}
    l.{{ c.column }},
    {%- endfor %}
    l.cdc_event_id, l.cdc_shard_id, l.cdc_sequence_number, l.cdc_change_order, l.cdc_content_hash, l.cdc_batch_id,
    SYSDATE(), PARSE_JSON(l.cdc_new_image), PARSE_JSON(l.cdc_old_image), l.cdc_unmapped_attributes
FROM {{ database }}.{{ schema }}.{{ landing_table }} l
WHERE l.cdc_batch_id = ?
  AND NOT EXISTS (
    SELECT 1 FROM {{ database }}.{{ schema }}.{{ history_table }} h
    WHERE h.claimId = l.claimId AND h.cdc_content_hash = l.cdc_content_hash
)
-- Shards are de-duplicated one by one: a copy of a change on two shards of one batch (a re-send across a
-- reshard) is kept once.
QUALIFY ROW_NUMBER() OVER (PARTITION BY l.claimId, l.cdc_content_hash ORDER BY l.cdc_change_order) = 1;

-- name: delete_landed
-- The batch's landed rows, once in the staging and history tables, deleted in the same transaction: the
-- landing table is empty again at the commit, and no landed row outlives a rolled-back batch either.
DELETE FROM {{ database }}.{{ schema }}.{{ landing_table }} WHERE cdc_batch_id = ?;

-- name: stamp_rejected
-- The batch's dead letters, just loaded by COPY INTO (load.sql), get their time.
UPDATE {{ database }}.{{ schema }}.{{ rejected_table }} SET rejected_at = SYSDATE()
WHERE batch_id = ? AND rejected_at IS NULL;

-- name: read_dead_letters
-- The dead letters not re-driven yet, oldest first (a re-drive reads their exact bytes back).
SELECT batch_id, shard_id, sequence_number, payload_base64, arrival_micros
FROM {{ database }}.{{ schema }}.{{ rejected_table }}
WHERE redriven_at IS NULL AND payload_base64 IS NOT NULL
ORDER BY rejected_at, batch_id, shard_id, sequence_number
LIMIT ?;

-- name: mark_redriven
-- Idempotent: marks (never deletes) the dead letters one re-drive took, by their batch and position.
UPDATE {{ database }}.{{ schema }}.{{ rejected_table }}
SET redriven_at = SYSDATE(), redrive_batch_id = ?
WHERE redriven_at IS NULL
  AND (batch_id, shard_id, sequence_number) IN (
      SELECT p.value:"batch_id"::STRING, p.value:"shard_id"::STRING, p.value:"sequence_number"::STRING
      FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p);

-- name: delete_checkpoints
-- With insert_checkpoints, an upsert that fakesnow runs inside a transaction (MERGE it cannot).
DELETE FROM {{ database }}.{{ schema }}.{{ checkpoint_table }}
WHERE stream_name = ?
  AND shard_id IN (SELECT p.value:"shard_id"::STRING FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p);

-- name: insert_checkpoints
INSERT INTO {{ database }}.{{ schema }}.{{ checkpoint_table }}
    (stream_name, shard_id, sequence_number, parent_shard_ids, shard_closed, batch_id, updated_at, verified_at)
SELECT ?, p.value:"shard_id"::STRING, p.value:"end"::STRING, p.value:"parent_shard_ids"::STRING,
       p.value:"drained"::BOOLEAN, ?, SYSDATE(), p.value:"verified_at"::TIMESTAMP_NTZ(9)
FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) p;

-- name: insert_batch
INSERT INTO {{ database }}.{{ schema }}.{{ batch_table }}
    (batch_id, dag_run_id, stream_name, records_read, rows_staged, history_rows, rows_rejected, positions,
     status, staged_at, duplicates_dropped)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, SYSDATE(), ?;

-- name: log_gap_accepted
-- An operator accepted a retention gap on a shard (admin accept-gap): kept in the batch log for audit.
INSERT INTO {{ database }}.{{ schema }}.{{ batch_table }}
    (batch_id, dag_run_id, stream_name, records_read, rows_staged, history_rows, rows_rejected, positions,
     status, staged_at)
SELECT ?, ?, ?, 0, 0, 0, 0, ?, 'GAP_ACCEPTED', SYSDATE();
