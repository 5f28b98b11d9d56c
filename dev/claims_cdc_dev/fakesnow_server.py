"""Run fakesnow in server mode with its databases persisted on disk.

Workaround, kept in this one place: ``fakesnow -s`` has no option for a database path in server mode;
sessions share an in-memory instance unless each client passes ``FAKESNOW_DB_PATH`` as a session
parameter. Production clients must not need fakesnow-only settings, so this launcher swaps the
server's shared instance for one persisted under ``--db-path`` before starting uvicorn.
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-path", required=True, help="folder holding one DuckDB file per database")
    args = parser.parse_args(argv)

    import os
    from pathlib import Path

    import fakesnow.server
    import uvicorn
    from fakesnow.instance import FakeSnow

    Path(args.db_path).mkdir(parents=True, exist_ok=True)
    fakesnow.server.shared_fs = FakeSnow(db_path=args.db_path)
    # fakesnow logs the SQL text *and bound parameters* of failing statements (INFO for SQL errors,
    # ERROR for its own bugs). Bound parameters carry claim content (PHI), so the stack's log stays
    # quiet unless a developer asks for more with FAKESNOW_LOG_LEVEL.
    logging.getLogger("fakesnow.server").setLevel(os.getenv("FAKESNOW_LOG_LEVEL", "CRITICAL"))
    uvicorn.run(fakesnow.server.app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
