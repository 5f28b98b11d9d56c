-- Read-only reports for operators (python -m claims_cdc.admin): ids, names, reasons and counts only,
-- never a record's value.

-- name: unmapped_attributes
-- Attribute names the mapping does not know, from the history's changes (names only, never values).
SELECT cdc_unmapped_attributes, COUNT(*)
FROM {{ database }}.{{ schema }}.{{ history_table }}
WHERE cdc_unmapped_attributes IS NOT NULL
GROUP BY cdc_unmapped_attributes;

-- name: dead_letter_reasons
-- Dead letters by reason (reasons never quote a value), and how many are still waiting for a re-drive.
SELECT reason, COUNT(*), COUNT_IF(redriven_at IS NULL)
FROM {{ database }}.{{ schema }}.{{ rejected_table }}
GROUP BY reason
ORDER BY 2 DESC;
