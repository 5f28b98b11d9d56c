"""Benchmark: bulk staging and merge throughput against the local fakesnow server.

    make bench-load            # BENCH_ROWS=5000 by default

Stages BENCH_ROWS generated rows (mapped columns, no images) as one batch as ``warehouse.stage_batch`` does
(a Parquet file, PUT, COPY INTO the landing table, the staging and history rows filled from it, one
transaction), then merges them, and prints rows per second for each step. Run on a clean local stack.
"""

from __future__ import annotations

import os
import time

from claims_cdc import warehouse
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import load_settings
from claims_cdc.snowflake import session
from claims_cdc.transform import change_order, content_hash


def main() -> int:
    rows_wanted = int(os.getenv("BENCH_ROWS", "5000"))
    settings = load_settings()
    mapping = load_mapping(settings.mapping_path)
    base = 1_790_000_000_000_000
    rows = []
    for i in range(rows_wanted):
        row = {name: None for name in mapping.names}
        row.update(eventName="INSERT", eventCreationUnixTime=str(base + i), claimId=f"BENCH-{i:08d}",
                   claimStatus="Submitted", totalCharge=100.0 + i, patientZip=10_000 + i % 80_000,
                   createdTimeStamp="2026-01-01T00:00:00.000000", diagnosisCodes='["I10"]',
                   cdc_event_id=f"bench-{i}", cdc_shard_id="shardId-bench", cdc_sequence_number=str(i + 1),
                   cdc_change_order=change_order(base + i, str(i + 1)))
        row["cdc_content_hash"] = content_hash(row, mapping)
        rows.append(row)
    shards = [{"shard_id": "shardId-bench", "parent_shard_ids": [], "start": None, "end": str(rows_wanted),
               "records": rows_wanted, "drained": False}]
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        started = time.perf_counter()
        warehouse.stage_batch(snow, settings, mapping, batch_id=f"bench-{int(time.time())}", dag_run_id="bench",
                              shards=shards, records_read=rows_wanted, rows=rows, rejected=[])
        staged = time.perf_counter() - started
        started = time.perf_counter()
        counts = warehouse.merge_pending(snow, settings, mapping, f"bench-{int(time.time())}")
        merged = time.perf_counter() - started
    print(f"staged {rows_wanted} rows (CDC + history tables, one transaction) in {staged:.2f}s: "
          f"{rows_wanted / staged:,.0f} rows/s")
    print(f"merged {counts.inserted} rows (dedupe, tombstones, MERGE, clean-up) in {merged:.2f}s: "
          f"{rows_wanted / merged:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
