"""Snowflake access: the provider's SnowflakeHook, with server-side binding and an HTTP option.

All statements go through :class:`ClaimsSnowflakeHook`. It differs from the stock hook in two ways only:
it binds values on the server (``paramstyle="qmark"``: the text sent never contains a value), and it
honours ``extra.protocol`` (the stock hook drops it), which the local fakesnow server needs for plain HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
from snowflake.connector.errors import DatabaseError

log = logging.getLogger(__name__)

#: Snowflake's "Object does not exist or not authorized" error number (SQL compilation error).
OBJECT_MISSING_ERRNO = 2003


class SnowflakeObjectMissing(RuntimeError):
    """A statement names a database, schema or table that does not exist (or the role may not use).

    No retry can fix it. The message names the statement, the error number and SQLSTATE, and the settings to
    check, never the database's own message text (which can echo values).
    """

    def __init__(self, statement: str, errno: int | None, sqlstate: str | None, sfqid: str | None):
        super().__init__(
            f"Snowflake statement {statement!r} failed with errno {errno} (SQLSTATE {sqlstate}, query id {sfqid}): "
            "an object it uses does not exist or is not authorized. Check CDC_SNOWFLAKE_DATABASE, "
            "CDC_SNOWFLAKE_SCHEMA and the table settings against the connection's role, and create the objects "
            "with `python -m claims_cdc.admin setup`"
        )


@dataclass(frozen=True)
class Statement:
    """One named statement of ``include/sql``, rendered (:mod:`claims_cdc.sql` builds them)."""

    name: str
    text: str
    #: Why real Snowflake alone can run it, or None.
    snowflake_only: str | None


class StatementFailed(RuntimeError):
    """A statement failed in Snowflake. The message names the statement, the error number and SQLSTATE only:
    a database's own message can quote the value it could not convert (PHI), so it is never repeated here,
    nor chained (``from None``) into the task log. Look the number up in Snowflake's error reference, or
    the query id in the query history (visible to roles allowed to see the data)."""

    def __init__(self, statement: str, errno: int | None, sqlstate: str | None, query_id: str | None):
        super().__init__(f"statement {statement} failed in Snowflake: error {errno}, SQLSTATE {sqlstate}, "
                         f"query id {query_id} (the database's message is withheld: it can quote record values)")
        self.statement, self.errno, self.sqlstate, self.query_id = statement, errno, sqlstate, query_id

    @classmethod
    def from_error(cls, statement: str, err: DatabaseError) -> StatementFailed:
        return cls(statement, getattr(err, "errno", None), getattr(err, "sqlstate", None), getattr(err, "sfqid", None))


class ClaimsSnowflakeHook(SnowflakeHook):
    """SnowflakeHook that binds on the server and passes ``extra.protocol``, ``extra.port`` and the
    connector's timeouts (``extra.network_timeout``, ``extra.login_timeout``, in seconds) on."""

    def _get_conn_params(self) -> dict[str, Any]:
        params = dict(super()._get_conn_params())
        extra = self.get_connection(self.get_conn_id()).extra_dejson
        if extra.get("protocol"):
            params["protocol"] = extra["protocol"]
        if extra.get("port"):
            params["port"] = int(extra["port"])
        for timeout in ("network_timeout", "login_timeout"):
            if extra.get(timeout):
                params[timeout] = int(extra[timeout])
        params["paramstyle"] = "qmark"
        return params


class Session:
    """One Snowflake connection; runs named statements, skipping snowflake-only ones on the emulator."""

    def __init__(self, connection: Any, emulator: str = ""):
        self.connection = connection
        self.emulator = emulator

    def execute(self, statement: Statement, params: Sequence[Any] = ()) -> Any:
        """Run one statement and return its cursor (or None when skipped on the emulator)."""
        if statement.snowflake_only and self.emulator:
            log.warning("skipped on %s (runs on real Snowflake only): %s - %s", self.emulator, statement.name,
                        statement.snowflake_only)
            return None
        cursor = self.connection.cursor()
        try:
            cursor.execute(statement.text, list(params) if params else None)
        except DatabaseError as error:
            if error.errno == OBJECT_MISSING_ERRNO:
                raise SnowflakeObjectMissing(statement.name, error.errno, error.sqlstate, error.sfqid) from None
            raise StatementFailed.from_error(statement.name, error) from None
        return cursor

    def fetchall(self, statement: Statement, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.execute(statement, params)
        return [] if cursor is None else list(cursor.fetchall())

    def rowcount(self, statement: Statement, params: Sequence[Any] = ()) -> int:
        cursor = self.execute(statement, params)
        return 0 if cursor is None or cursor.rowcount is None else int(cursor.rowcount)

    def raw(self, sql: str) -> None:
        """Transaction control only (BEGIN, COMMIT, ROLLBACK): never anything with a value in it."""
        self.connection.cursor().execute(sql)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """BEGIN ... COMMIT; anything that fails, BEGIN and COMMIT included, is rolled back before it propagates.

        (A failed COMMIT left open would hold its locks, and every later writer would wait on them.)
        """
        try:
            self.raw("BEGIN TRANSACTION")
            yield self
            self.raw("COMMIT")
        except BaseException:
            try:
                self.raw("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection may be gone; Snowflake then aborts the transaction
                log.warning("ROLLBACK failed; the session's end will abort the transaction")
            raise


@contextmanager
def session(conn_id: str, emulator: str = "") -> Iterator[Session]:
    """Open a connection through :class:`ClaimsSnowflakeHook` and close it afterwards."""
    hook = ClaimsSnowflakeHook(snowflake_conn_id=conn_id)
    with closing(hook.get_conn()) as connection:
        yield Session(connection, emulator)
