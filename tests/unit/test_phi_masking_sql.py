"""The PHI masking of setup.sql (real Snowflake only; skipped visibly on fakesnow), checked offline against
the forms Snowflake documents: CREATE TAG, CREATE MASKING POLICY, ALTER TAG ... SET MASKING POLICY and
ALTER TABLE ... MODIFY COLUMN ... SET TAG. sqlglot cannot parse these statements whole (it falls back to a
bare command), so their frame is matched here and the policies' bodies are parsed as Snowflake SQL."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from claims_cdc import sql
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR, load_settings

SETTINGS = load_settings({})
MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
SETUP = sql.load("setup", SETTINGS, MAPPING)
QUALIFIED = rf"{SETTINGS.database}\.{SETTINGS.schema}\.(\w+)"
PHI_COLUMNS = {"memberId", "patientFirstName", "patientLastName", "patientDOB", "patientStreet", "patientCity",
               "patientState", "patientZip", "patientPhone", "patientEmail"}


def _ddl_types(table_statement: str) -> dict[str, str]:
    body = SETUP[table_statement].text.split("(", 1)[1].rsplit(")", 1)[0]
    return {line.split()[0]: line.split()[1].rstrip(",").upper() for line in body.splitlines()
            if line.strip() and not line.strip().startswith("--")}


def test_the_names_dates_of_birth_addresses_phone_email_and_member_id_are_marked_phi():
    assert {c.column for c in MAPPING.columns if c.phi} == PHI_COLUMNS


def test_masking_statements_are_skipped_on_the_emulator_and_only_there():
    for name in ("create_phi_tag", "create_phi_mask_string", "set_phi_tag_policies", "tag_phi_dest_columns"):
        assert SETUP[name].snowflake_only


def test_the_tag_and_one_policy_per_data_type_follow_snowflakes_grammar():
    tag = SETUP["create_phi_tag"].text
    assert re.fullmatch(rf"CREATE TAG IF NOT EXISTS {QUALIFIED}\s+ALLOWED_VALUES\s+'\w+'(\s*,\s*'\w+')*", tag)
    kinds = set(re.findall(r"'(\w+)'", tag))
    assert {c.phi for c in MAPPING.columns if c.phi} | {"record"} <= kinds

    for data_type in ("STRING", "NUMBER", "VARIANT"):
        text = SETUP[f"create_phi_mask_{data_type.lower()}"].text
        match = re.fullmatch(rf"CREATE MASKING POLICY IF NOT EXISTS {QUALIFIED} AS \(val {data_type}\) "
                             rf"RETURNS {data_type} ->\s+(?P<body>.+)", text, flags=re.DOTALL)
        assert match, text
        body = sqlglot.parse_one(match["body"], read="snowflake", error_level=sqlglot.ErrorLevel.RAISE)
        assert isinstance(body, exp.Case)
        # Unmasked only for the pipeline's role; everyone else gets NULL.
        assert f"IS_ROLE_IN_SESSION('{SETTINGS.role}')" in match["body"]
        assert isinstance(body.args["default"], exp.Null)

    policies = SETUP["set_phi_tag_policies"].text
    assert re.fullmatch(rf"ALTER TAG {QUALIFIED} SET\s+MASKING POLICY {QUALIFIED},\s+MASKING POLICY {QUALIFIED},"
                        rf"\s+MASKING POLICY {QUALIFIED}\s+FORCE", policies)


def test_every_phi_column_of_every_claims_table_is_tagged_and_covered_by_a_policy_of_its_type():
    types = _ddl_types("create_dest_table")
    policy_for = {"STRING": "STRING", "INTEGER": "NUMBER", "VARCHAR(1)": "STRING"}
    for statement, table in (("tag_phi_dest_columns", SETTINGS.dest_table),
                             ("tag_phi_staging_columns", SETTINGS.cdc_table),
                             ("tag_phi_history_columns", SETTINGS.history_table)):
        text = SETUP[statement].text
        head, *clauses = re.split(r"\s+COLUMN\s+", text)
        assert head == f"ALTER TABLE {SETTINGS.database}.{SETTINGS.schema}.{table} MODIFY"
        tagged = {}
        for clause in clauses:
            match = re.fullmatch(rf"(\w+) SET TAG {QUALIFIED} = '(\w+)',?", clause.strip())
            assert match, clause
            tagged[match[1]] = match[3]
        assert set(tagged) == PHI_COLUMNS
        assert all(types[column] in policy_for for column in tagged)  # a policy exists for each type
    for statement in ("tag_phi_history_images", "tag_phi_dead_letters"):
        assert re.search(r"SET TAG \w+\.\w+\.phi = 'record'", SETUP[statement].text)
