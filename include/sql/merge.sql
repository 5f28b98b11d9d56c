-- Merging staged changes into the destination (cleanup.sql then removes exactly the rows merged).
-- A merge first claims the staged rows present when it starts (cdc_merge_id); rows staged later stay
-- unclaimed and wait for the next merge. Every statement is safe to repeat: a change is applied only if
-- it is newer (by cdc_change_order: the change's own time, then its sequence number) than what the
-- destination or the tombstones hold, and a retry re-claims the rows of an interrupted merge.
-- fakesnow cannot run MERGE inside an explicit transaction (nor FLATTEN inside MERGE ... USING), so the
-- steps run one by one, each idempotent, with the merge set named by a bound id.

-- name: claim_staged
UPDATE {{ database }}.{{ schema }}.{{ cdc_table }} SET cdc_merge_id = ?;

-- name: merge_tombstones
-- Idempotent: a tombstone only ever moves to a newer REMOVE. It is the claim's latest REMOVE, also when a
-- later INSERT in the same merge re-creates the claim (that INSERT is newer, so it still wins below).
MERGE INTO {{ database }}.{{ schema }}.{{ tombstone_table }} t
USING (
    SELECT claimId, cdc_change_order, eventName
    FROM {{ database }}.{{ schema }}.{{ cdc_table }}
    WHERE cdc_merge_id = ? AND eventName = 'REMOVE'
    QUALIFY ROW_NUMBER() OVER (PARTITION BY claimId ORDER BY cdc_change_order DESC) = 1
) s
ON t.claimId = s.claimId
WHEN MATCHED AND s.eventName = 'REMOVE' AND s.cdc_change_order > t.cdc_change_order THEN
    UPDATE SET t.cdc_change_order = s.cdc_change_order, t.deleted_at = SYSDATE()
WHEN NOT MATCHED AND s.eventName = 'REMOVE' THEN
    INSERT (claimId, cdc_change_order, deleted_at)
    VALUES (s.claimId, s.cdc_change_order, SYSDATE());

-- name: merge_destination
-- Idempotent: the latest claimed change per claim is applied only if newer than the destination's row.
-- An INSERT or MODIFY no newer than the claim's tombstone (latest REMOVE) is dropped before ranking, so a
-- late, older change cannot bring a deleted claim back. A MODIFY with no destination row is inserted
-- (it carries the claim's full new image), not dropped.
MERGE INTO {{ database }}.{{ schema }}.{{ dest_table }} tgt
USING (
    SELECT c.*
    FROM {{ database }}.{{ schema }}.{{ cdc_table }} c
    LEFT JOIN {{ database }}.{{ schema }}.{{ tombstone_table }} t ON t.claimId = c.claimId
    WHERE c.cdc_merge_id = ?
      AND (c.eventName = 'REMOVE' OR t.claimId IS NULL OR c.cdc_change_order > t.cdc_change_order)
    QUALIFY ROW_NUMBER() OVER (PARTITION BY c.claimId ORDER BY c.cdc_change_order DESC) = 1
) src
ON tgt.claimId = src.claimId
WHEN MATCHED AND src.eventName = 'REMOVE' AND src.cdc_change_order > tgt.cdc_change_order THEN DELETE
WHEN MATCHED AND src.eventName <> 'REMOVE' AND src.cdc_change_order > tgt.cdc_change_order THEN UPDATE SET
    {%- for c in all_columns %}
    tgt.{{ c }} = src.{{ c }}{{ "," if not loop.last }}
    {%- endfor %}
WHEN NOT MATCHED AND src.eventName <> 'REMOVE' THEN INSERT ({{ all_columns | join(", ") }})
    VALUES ({% for c in all_columns %}src.{{ c }}{{ ", " if not loop.last }}{% endfor %});
