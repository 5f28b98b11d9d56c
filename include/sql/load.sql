-- Bulk loading one batch, as Snowflake documents it: the batch's rows and dead letters are written as
-- Parquet files, one per shard (plugins/claims_cdc/load_files.py), and copied in with COPY INTO, so no
-- statement binds the batch and any batch size loads. By default the files are PUT to the internal load
-- stage under the batch's id; with CDC_EXTERNAL_STAGE (an external stage whose URL is CDC_BATCH_ROOT) COPY
-- reads them where the shard tasks wrote them (external_path: <run folder>/<batch id>), with no PUT.
-- Rendered per batch: the batch id, the paths and the local folder are names (validated), never values. The
-- stage task opens the transaction around the COPYs (stage.sql); PUT is not transactional and runs before it.

-- name: put_rows
-- Every shard's file at once (PUT expands the wildcard). Idempotent: a retry overwrites the same files.
PUT 'file://{{ upload_folder }}/rows/*.parquet' @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rows/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE;

-- name: put_rejected
PUT 'file://{{ upload_folder }}/rejected/*.parquet' @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rejected/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE;

-- name: copy_landing
-- Into the landing table (setup.sql), whole rows with their images; the stage transaction fills the staging
-- and history tables from it (stage.sql). FORCE loads the files even if a rolled-back COPY loaded them
-- before (the batch log, checked in the same transaction, keeps a batch from being staged twice). From the
-- internal stage, PURGE removes the files once loaded; on an external stage they stay until the batch-file
-- sweep (removed_batch_files), so a retry after a rollback still finds them.
COPY INTO {{ database }}.{{ schema }}.{{ landing_table }}
{% if external_path is defined -%}
FROM @{{ database }}.{{ schema }}.{{ external_stage }}/{{ external_path }}/rows/
{%- else -%}
FROM @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rows/
{%- endif %}
FILE_FORMAT = (TYPE = PARQUET)
MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
ON_ERROR = ABORT_STATEMENT
FORCE = TRUE
{%- if external_path is not defined %}
PURGE = TRUE
{%- endif %};

-- name: copy_rejected
COPY INTO {{ database }}.{{ schema }}.{{ rejected_table }}
{% if external_path is defined -%}
FROM @{{ database }}.{{ schema }}.{{ external_stage }}/{{ external_path }}/rejected/
{%- else -%}
FROM @{{ database }}.{{ schema }}.{{ load_stage }}/{{ batch_id }}/rejected/
{%- endif %}
FILE_FORMAT = (TYPE = PARQUET)
MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
ON_ERROR = ABORT_STATEMENT
FORCE = TRUE
{%- if external_path is not defined %}
PURGE = TRUE
{%- endif %};
