"""Operator commands: create or drop the Snowflake objects, or print the SQL for review.

    python -m claims_cdc.admin render setup     # print include/sql/setup.sql rendered for these settings
    python -m claims_cdc.admin setup            # run it through the snowflake_default connection
    python -m claims_cdc.admin teardown --yes   # drop the tables (the seed's clean-up step)
    python -m claims_cdc.admin accept-gap SHARD_ID  # after a CheckpointGap: restart the shard at TRIM_HORIZON
    python -m claims_cdc.admin report           # dead letters by reason, attributes the mapping does not know
    python -m claims_cdc.admin redrive          # after a fix: re-process the dead letters (marked, never deleted)

Settings come from the CDC_* environment variables, the connection from AIRFLOW_CONN_SNOWFLAKE_DEFAULT
(or whatever secrets backend Airflow is configured with).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from claims_cdc import pipeline, sql, warehouse
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import load_settings
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
    if args.command == "redrive":
        result = pipeline.redrive(settings, limit=args.limit, run_id=f"redrive by {args.operator}")
        print(json.dumps(result, indent=2))
        return 0
    if args.command == "teardown" and not args.yes:
        parser.error("teardown drops the tables: pass --yes")
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        if args.command == "report":
            print(format_report(warehouse.report(snow, settings, mapping)))
        elif args.command == "accept-gap":
            batch_id = warehouse.accept_gap(snow, settings, mapping, shard_id=args.shard_id, operator=args.operator)
            print(f"shard {args.shard_id} restarts at TRIM_HORIZON (logged as {batch_id})")
        elif args.command == "setup":
            skipped = warehouse.run_setup(snow, settings, mapping)
            print("setup done" + (f"; skipped on the emulator: {', '.join(skipped)}" if skipped else ""))
        else:
            warehouse.run_teardown(snow, settings, mapping)
            print("teardown done")
    return 0


def format_report(report: dict) -> str:
    lines = ["dead letters by reason (records, waiting for a re-drive):"]
    lines += [f"  {r['records']:>8} {r['waiting']:>8}  {r['reason']}" for r in report["dead_letters"]] or ["  none"]
    lines.append("attributes the mapping does not know (changes that carried them; kept in the history's images):")
    lines += [f"  {n:>8}  {name}" for name, n in report["unmapped_attributes"].items()] or ["  none"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
