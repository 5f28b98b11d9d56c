"""Run fakesnow in server mode with its databases persisted on disk.

Workarounds, kept in this one place:

1. ``fakesnow -s`` has no option for a database path in server mode; sessions share an in-memory instance
   unless each client passes ``FAKESNOW_DB_PATH`` as a session parameter. Production clients must not need
   fakesnow-only settings, so this launcher swaps the server's shared instance for one persisted under
   ``--db-path`` before starting uvicorn.
2. fakesnow keeps its stages in an in-memory catalog (``_fs_global``): restarted on the same folder, it has
   the tables but not the load stage, and every PUT fails (tests/platform/test_platform_quirks.py). Real
   Snowflake keeps its stages through an outage, so ``--setup`` runs the pipeline's idempotent set-up
   (include/sql/setup.sql, the CDC_* settings of the environment) on the instance *before* the server
   listens: no client ever sees it without its stage (claims_cdc_dev.stack.restart_fakesnow uses it).
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-path", required=True, help="folder holding one DuckDB file per database")
    parser.add_argument("--setup", action="store_true",
                        help="run the pipeline's idempotent set-up before listening (a restart: workaround 2)")
    args = parser.parse_args(argv)

    import os
    from pathlib import Path

    import fakesnow.server
    import uvicorn
    from fakesnow.instance import FakeSnow

    Path(args.db_path).mkdir(parents=True, exist_ok=True)
    fakesnow.server.shared_fs = FakeSnow(db_path=args.db_path)
    if args.setup:
        _setup(fakesnow.server.shared_fs)
    # fakesnow logs the SQL text *and bound parameters* of failing statements (INFO for SQL errors,
    # ERROR for its own bugs). Bound parameters carry claim content (PHI), so the stack's log stays
    # quiet unless a developer asks for more with FAKESNOW_LOG_LEVEL.
    logging.getLogger("fakesnow.server").setLevel(os.getenv("FAKESNOW_LOG_LEVEL", "CRITICAL"))
    uvicorn.run(fakesnow.server.app, host=args.host, port=args.port, log_level="warning")
    return 0


def _setup(instance) -> None:
    """Workaround 2: the pipeline's set-up, run in this process on the instance the server will share."""
    from claims_cdc import warehouse
    from claims_cdc.mapping import load_mapping
    from claims_cdc.settings import load_settings
    from claims_cdc.snowflake import Session

    settings = load_settings()
    connection = instance.connect(database=settings.database, schema=settings.schema)
    try:
        warehouse.run_setup(Session(connection, "fakesnow"), settings, load_mapping(settings.mapping_path))
    finally:
        connection.close()


if __name__ == "__main__":
    raise SystemExit(main())
