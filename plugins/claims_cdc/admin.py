"""Operator commands: create or drop the Snowflake objects, or print the SQL for review.

    python -m claims_cdc.admin render setup     # print include/sql/setup.sql rendered for these settings
    python -m claims_cdc.admin setup            # run it through the snowflake_default connection
    python -m claims_cdc.admin teardown --yes   # drop the tables (the seed's clean-up step)
    python -m claims_cdc.admin accept-gap SHARD_ID  # after a CheckpointGap: restart the shard at TRIM_HORIZON
    python -m claims_cdc.admin report           # dead letters by reason, attributes the mapping does not know
    python -m claims_cdc.admin redrive          # after a fix: re-process the dead letters (marked, never deleted)
    python -m claims_cdc.admin status [--json]  # shards, last batch, backlog, dead letters, last reconciliation

Settings come from the CDC_* environment variables, the connection from AIRFLOW_CONN_SNOWFLAKE_DEFAULT
(or whatever secrets backend Airflow is configured with).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
from collections.abc import Iterator

from claims_cdc import pipeline, sql, status, warehouse
from claims_cdc.mapping import Mapping, load_mapping
from claims_cdc.settings import Settings, load_settings
from claims_cdc.snowflake import session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="claims-cdc Snowflake administration")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print a SQL file of include/sql, rendered")
    render.add_argument("file", choices=[p.stem for p in sql.files()])
    sub.add_parser("setup", help="create the database, schema, tables (idempotent)")
    teardown = sub.add_parser("teardown", help="drop the tables")
    teardown.add_argument("--yes", action="store_true", help="confirm: this destroys data")
    gap = sub.add_parser("accept-gap", help="restart a shard at TRIM_HORIZON after a retention gap")
    gap.add_argument("shard_id")
    gap.add_argument("--operator", default=getpass.getuser(), help="who accepts the gap (audit)")
    sub.add_parser("report", help="dead letters by reason and unmapped attributes, with counts (no values)")
    redrive = sub.add_parser("redrive", help="re-process dead-lettered records through the pipeline's path")
    redrive.add_argument("--limit", type=int, default=10_000, help="most dead letters to take (oldest first)")
    redrive.add_argument("--operator", default=getpass.getuser(), help="who re-drives (kept in the batch log)")
    shown = sub.add_parser("status", help="the pipeline at a glance: shards and their lag, last batch, staging "
                           "backlog, dead letters, last reconciliation (no values)")
    shown.add_argument("--json", action="store_true", help="print JSON instead of text")
    shown.add_argument("--bound", type=int, default=status.RECORDS_BEHIND_BOUND,
                       help="most records counted behind each shard's position")
    args = parser.parse_args(argv)

    settings = load_settings()
    mapping = load_mapping(settings.mapping_path)
    if args.command == "render":
        names = {"batch_id": "BATCH_ID", "upload_folder": "/LOCAL/FOLDER"} if args.file == "load" else {}
        if names and settings.external_stage:
            names["external_path"] = "RUN_FOLDER/BATCH_ID"  # COPY from the external stage, as the DAG does
        for statement in sql.load(args.file, settings, mapping, **names).values():
            print(f"-- {statement.name}" + (f" (snowflake-only: {statement.snowflake_only})"
                                            if statement.snowflake_only else ""))
            print(statement.text + ";\n")
        return 0
    if args.command == "teardown" and not args.yes:
        parser.error("teardown drops the tables: pass --yes")
    with _log_lines_to_stderr():  # stdout holds the command's output alone
        output, code = _run(args, settings, mapping)
    print(output)
    return code


def _run(args: argparse.Namespace, settings: Settings, mapping: Mapping) -> tuple[str, int]:
    """The command's output (its text, or JSON) and exit status."""
    if args.command == "redrive":
        return json.dumps(pipeline.redrive(settings, limit=args.limit, run_id=f"redrive by {args.operator}"),
                          indent=2), 0
    if args.command == "status":
        with contextlib.ExitStack() as opened:
            current = status.read_status(
                settings, mapping, lambda: opened.enter_context(session(settings.snowflake_conn_id,
                                                                         settings.snowflake_emulator)),
                records_bound=args.bound)
        return (status.to_json(current) if args.json else status.format_status(current),
                1 if status.unavailable_sections(current) else 0)
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        if args.command == "report":
            return format_report(warehouse.report(snow, settings, mapping)), 0
        if args.command == "accept-gap":
            batch_id = warehouse.accept_gap(snow, settings, mapping, shard_id=args.shard_id, operator=args.operator)
            return f"shard {args.shard_id} restarts at TRIM_HORIZON (logged as {batch_id})", 0
        if args.command == "setup":
            skipped = warehouse.run_setup(snow, settings, mapping)
            return "setup done" + (f"; skipped on the emulator: {', '.join(skipped)}" if skipped else ""), 0
        warehouse.run_teardown(snow, settings, mapping)
        return "teardown done", 0


@contextlib.contextmanager
def _log_lines_to_stderr() -> Iterator[None]:
    """Log lines go to stderr, so that stdout holds the command's output alone (``status --json`` parses,
    ``report`` pipes).

    Platform surprise: Airflow's logging set-up (airflow._shared.logging.structlog.configure_logging) writes
    every log line, the connector's and the hooks' included, to stdout: its root handler holds the stdout of
    the moment, and its structlog loggers take sys.stdout when they are made.
    """
    moved = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and h.stream is sys.stdout]
    for handler in moved:
        handler.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler in moved:
            handler.setStream(sys.stdout)


def format_report(report: dict) -> str:
    lines = ["dead letters by reason (records, waiting for a re-drive):"]
    lines += [f"  {r['records']:>8} {r['waiting']:>8}  {r['reason']}" for r in report["dead_letters"]] or ["  none"]
    lines.append("attributes the mapping does not know (changes that carried them; kept in the history's images):")
    lines += [f"  {n:>8}  {name}" for name, n in report["unmapped_attributes"].items()] or ["  none"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
