-- Bulk loading one batch, as Snowflake documents it: the batch's rows and dead letters are written as
-- Parquet files, one per shard (plugins/claims_cdc/load_files.py), PUT to the load stage under the batch's
-- id, and copied in with COPY INTO, so no statement binds the batch and any batch size loads. Rendered per batch: the
-- batch id and the local folder are names (validated), never values. The stage task opens the transaction
-- around the COPYs (stage.sql); PUT is not transactional and runs before it.

-- name: put_rows
-- Every shard's file at once (PUT expands the wildcard). Idempotent: a retry overwrites the same files.
PUT 'file://{{ upload_folder }}/rows/*.parquet' @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rows/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE;

-- name: put_rejected
PUT 'file://{{ upload_folder }}/rejected/*.parquet' @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rejected/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE;

-- name: copy_staging
-- FORCE loads the file even if a rolled-back COPY loaded it before (the batch log, checked in the same
-- transaction, keeps a batch from being staged twice); PURGE removes it from the stage once loaded.
COPY INTO {{ database }}.{{ schema }}.{{ cdc_table }}
FROM @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rows/
FILE_FORMAT = (TYPE = PARQUET)
MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
ON_ERROR = ABORT_STATEMENT
FORCE = TRUE
PURGE = TRUE;

-- name: copy_rejected
COPY INTO {{ database }}.{{ schema }}.{{ rejected_table }}
FROM @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rejected/
FILE_FORMAT = (TYPE = PARQUET)
MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
ON_ERROR = ABORT_STATEMENT
FORCE = TRUE
PURGE = TRUE;
