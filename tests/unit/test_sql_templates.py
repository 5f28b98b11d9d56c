"""include/sql: names templated, values bound, snowflake-only statements marked."""

from __future__ import annotations

import re

import pytest

from claims_cdc import sql
from claims_cdc.mapping import PHI_KINDS, load_mapping
from claims_cdc.settings import INCLUDE_DIR, load_settings

SETTINGS = load_settings({"CDC_DEST_TABLE": "my_dest", "CDC_SNOWFLAKE_DATABASE": "MY_DB"})
MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
#: The per-batch names load.sql is rendered with (names, never values).
CALL_NAMES = {"batch_id": "20261125T000000000000-abc", "upload_folder": "/tmp/claims-cdc-load-x"}


def load(stem: str):
    return sql.load(stem, SETTINGS, MAPPING, **(CALL_NAMES if stem == "load" else {}))


MASKING_STATEMENTS = {"create_phi_tag", "create_phi_mask_string", "create_phi_mask_number", "create_phi_mask_variant",
                      "set_phi_tag_policies", "tag_phi_dest_columns", "tag_phi_staging_columns",
                      "tag_phi_landing_columns", "tag_phi_history_columns", "tag_phi_history_images", "tag_phi_dead_letters"}


@pytest.mark.parametrize("path", sql.files(), ids=lambda p: p.name)
def test_every_statement_renders_with_no_template_left(path):
    statements = load(path.stem)
    assert statements, f"{path.name} has no '-- name:' statements"
    for statement in statements.values():
        assert "{{" not in statement.text and "{%" not in statement.text
        assert not statement.text.rstrip().endswith(";")
        assert ";" not in statement.text, f"{statement.name}: one statement per name"


@pytest.mark.parametrize("path", sql.files(), ids=lambda p: p.name)
def test_no_literal_values_only_bound_parameters(path):
    for statement in load(path.stem).values():
        literals = {literal for literal in re.findall(r"'([^']*)'", statement.text)
                    if not literal.startswith(f"file://{CALL_NAMES['upload_folder']}/")}  # PUT's local file
        # Event names, statuses, the warehouse size, and the masking's names: PHI tag values and the role.
        allowed = {"INSERT", "MODIFY", "REMOVE", "STAGED", "MERGED", "GAP_ACCEPTED", "SMALL",
                   *PHI_KINDS, "record", SETTINGS.role}
        assert literals <= allowed, f"{statement.name} has literals {set(literals) - allowed}"


def test_names_come_from_settings():
    merge = sql.load("merge", SETTINGS, MAPPING)["merge_destination"].text
    assert "MERGE INTO MY_DB.CDC_SCHEMA.my_dest tgt" in merge


def test_only_account_level_masking_and_time_travel_statements_are_snowflake_only():
    setup = sql.load("setup", SETTINGS, MAPPING)
    only = {name for name, s in setup.items() if s.snowflake_only}
    assert only == {"create_role", "create_warehouse", "grant_warehouse", "grant_database", "grant_schema",
                    *MASKING_STATEMENTS, "landing_no_time_travel"}


def test_per_batch_names_are_refused_unless_plain_path_characters():
    with pytest.raises(ValueError, match="batch_id must be letters, digits"):
        sql.load("load", SETTINGS, MAPPING, batch_id="b1'; DROP TABLE x; --", upload_folder="/tmp/x")
    put = sql.load("load", SETTINGS, MAPPING, **CALL_NAMES)["put_rows"].text
    assert put.startswith("PUT 'file:///tmp/claims-cdc-load-x/rows/*.parquet' @MY_DB.CDC_SCHEMA.claims_cdc_load_stage/")


def test_batches_copy_from_the_internal_stage_after_a_put_and_are_purged_there():
    loads = sql.load("load", SETTINGS, MAPPING, **CALL_NAMES)
    copy = loads["copy_landing"].text
    assert f"FROM @MY_DB.CDC_SCHEMA.claims_cdc_load_stage/{CALL_NAMES['batch_id']}/rows/" in copy
    assert "PURGE = TRUE" in copy and "PURGE = TRUE" in loads["copy_rejected"].text


def test_with_an_external_stage_batches_copy_from_where_the_shard_tasks_wrote_them_and_are_not_purged():
    external = load_settings({"CDC_SNOWFLAKE_DATABASE": "MY_DB", "CDC_EXTERNAL_STAGE": "claims_batches",
                              "CDC_BATCH_ROOT": "s3://bucket/cdc"})
    loads = sql.load("load", external, MAPPING, **CALL_NAMES, external_path="manual__run/B1")
    assert "FROM @MY_DB.CDC_SCHEMA.claims_batches/manual__run/B1/rows/" in loads["copy_landing"].text
    assert "FROM @MY_DB.CDC_SCHEMA.claims_batches/manual__run/B1/rejected/" in loads["copy_rejected"].text
    # The files stay for a retry after a rollback; the batch-file sweep removes them.
    assert not any("PURGE" in loads[name].text for name in ("copy_landing", "copy_rejected"))
