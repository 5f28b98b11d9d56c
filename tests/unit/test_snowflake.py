"""Session.execute on an in-process fakesnow connection: a missing object fails with a message naming the
settings to check and the statement, never the database's own message text (it can echo values)."""

from __future__ import annotations

import pytest

from claims_cdc.snowflake import Session, SnowflakeObjectMissing, Statement, StatementFailed

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output:UserWarning")  # fakesnow's, on every SELECT


@pytest.fixture
def connection():
    import fakesnow
    import snowflake.connector

    with fakesnow.patch():
        conn = snowflake.connector.connect(database="CDC_DB", schema="CDC_SCHEMA")
        conn.cursor().execute("CREATE SCHEMA IF NOT EXISTS CDC_DB.CDC_SCHEMA")
        yield conn
        conn.close()


def test_a_missing_table_fails_naming_the_statement_and_the_settings_without_the_database_message(connection):
    missing = Statement("read_checkpoints", "SELECT * FROM CDC_DB.CDC_SCHEMA.claim_ssn_123_45_6789", None)
    with pytest.raises(SnowflakeObjectMissing) as failure:
        Session(connection).execute(missing)
    message = str(failure.value)
    assert "'read_checkpoints'" in message and "errno 2003" in message and "SQLSTATE 42S02" in message
    assert "CDC_SNOWFLAKE_DATABASE" in message and "CDC_SNOWFLAKE_SCHEMA" in message
    assert "python -m claims_cdc.admin setup" in message
    # The database's own text (which names the object, and can echo values) stays out, also as a cause.
    assert "CLAIM_SSN_123_45_6789" not in message.upper()
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_a_missing_database_fails_the_same_way(connection):
    with pytest.raises(SnowflakeObjectMissing, match="errno 2003"):
        Session(connection).execute(Statement("merge_destination", "SELECT * FROM NO_DB.NO_SCHEMA.t", None))


def test_other_snowflake_errors_keep_their_retries_and_withhold_the_message(connection):
    """Only 'does not exist or not authorized' is final; anything else is retried (StatementFailed, not an
    AirflowFailException), named by statement and error number, the database's text withheld."""
    with pytest.raises(StatementFailed) as failure:
        Session(connection).execute(Statement("broken", "SELEC 'MARKER-42'", None))
    assert not isinstance(failure.value, SnowflakeObjectMissing)
    assert (failure.value.statement, failure.value.errno) == ("broken", 1003)
    assert "MARKER-42" not in str(failure.value) and failure.value.__suppress_context__
