"""Benchmark: freshness, from a claim's write to DynamoDB to its row being visible in the destination.

    make bench-freshness     # BENCH_SECONDS=180 of writes at BENCH_RATE=1 claim/s by default

Runs against the Airflow deployment of ``make up`` (started and stopped by the make target): claims are
written with plain boto3 at a steady rate, with no manual trigger anywhere; a watcher polls
``openflow_insclaim_dest_tbl`` every ``BENCH_POLL`` seconds (default 0.25) and notes when each claim's
row appears. Prints p50, p95 and max seconds, and fails if a claim never appears. Then prints where the
runs' time went (:mod:`claims_cdc_dev.run_breakdown`, from Airflow's REST API): per task the scheduling
delay, the start-up (queued to running) and the running time, the run's length and the gap between runs.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from claims_cdc.settings import Settings, load_settings
from claims_cdc_dev.run_breakdown import fetch_breakdown, format_breakdown


def plain_boto3_table(table_name: str) -> Any:
    """The DynamoDB table through plain boto3 (endpoint and credentials from the standard AWS_* variables)."""
    import boto3

    return boto3.resource("dynamodb").Table(table_name)


def write_claim(table: Any, claim_id: str, seed: int) -> None:
    """Write one fake claim (the generator's shape) under ``claim_id``."""
    from faker import Faker

    from claims_cdc_dev.generator import make_claim

    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    claim = make_claim(fake, rng)
    claim["claim_id"] = claim_id
    table.put_item(Item=claim)


@contextmanager
def destination_session(settings: Settings) -> Iterator[Any]:
    from claims_cdc.snowflake import session

    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        yield snow


def visible_claims(snow: Any, settings: Settings, prefix: str) -> set[str]:
    """Claim ids starting with ``prefix`` that are in the destination table now."""
    cursor = snow.connection.cursor()
    cursor.execute(
        f"SELECT claimId FROM {settings.database}.{settings.schema}.{settings.dest_table} "  # noqa: S608 - names from settings
        "WHERE claimId LIKE ?",
        [f"{prefix}%"],
    )
    return {r[0] for r in cursor.fetchall()}


@dataclass
class Watcher:
    """Polls the destination and records when each claim id with ``prefix`` first appears."""

    settings: Settings
    prefix: str
    poll: float = 0.25
    seen: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with destination_session(self.settings) as snow:
            while not self._stop.is_set():
                now = time.time()
                for claim_id in visible_claims(snow, self.settings, self.prefix) - self.seen.keys():
                    self.seen[claim_id] = now
                self._stop.wait(self.poll)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="freshness-watcher", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(share * len(ordered))) - 1)]


def wait_until_visible(settings: Settings, prefix: str, ids: set[str], seconds: float) -> set[str]:
    """Wait up to ``seconds`` for the ``ids`` to be in the destination; returns those that are."""
    deadline = time.monotonic() + seconds
    with destination_session(settings) as snow:
        while time.monotonic() < deadline:
            if ids <= visible_claims(snow, settings, prefix):
                return ids
            time.sleep(0.5)
        return visible_claims(snow, settings, prefix) & ids


def main() -> int:
    import logging

    for noisy in ("snowflake.connector", "botocore", "airflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    seconds = float(os.getenv("BENCH_SECONDS", "180"))
    rate = float(os.getenv("BENCH_RATE", "1"))
    drain = float(os.getenv("BENCH_DRAIN_SECONDS", "120"))
    settings = load_settings()
    table = plain_boto3_table(settings.dynamodb_table)
    run = time.strftime("%H%M%S")

    # Warm-up: one claim through the whole deployment, so the figures measure the steady state.
    warm = f"WARMUP-{run}"
    write_claim(table, warm, 0)
    if not wait_until_visible(settings, warm, {warm}, 180):
        raise SystemExit("the warm-up claim never reached the destination: is `make up` running and unpaused?")

    measured_from = datetime.now(UTC)
    prefix = f"FRESH-{run}-"
    watcher = Watcher(settings, prefix, poll=float(os.getenv("BENCH_POLL", "0.25")))
    watcher.start()
    written: dict[str, float] = {}
    count = int(seconds * rate)
    started = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        claim_id = f"{prefix}{i:05d}"
        write_claim(table, claim_id, i + 1)
        written[claim_id] = time.time()
    deadline = time.monotonic() + drain
    while time.monotonic() < deadline and not written.keys() <= watcher.seen.keys():
        time.sleep(0.5)
    watcher.stop()

    latencies = [watcher.seen[c] - t for c, t in written.items() if c in watcher.seen]
    missing = len(written) - len(latencies)
    result = {
        "claims": len(written),
        "rate_per_s": rate,
        "seconds": seconds,
        "p50_s": round(statistics.median(latencies), 1) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 1) if latencies else None,
        "max_s": round(max(latencies), 1) if latencies else None,
        "missing": missing,
    }
    print(f"freshness over {len(written)} claims written at {rate:g}/s for {seconds:.0f}s: "
          f"p50 {result['p50_s']} s, p95 {result['p95_s']} s, max {result['max_s']} s, missing {missing}")
    result["breakdown"] = run_breakdown(measured_from)
    print(json.dumps(result))
    return 1 if missing else 0


def run_breakdown(since: datetime) -> dict[str, Any] | None:
    """Prints where the time of the runs that started after ``since`` went; returns the medians (None when the
    deployment's REST API is not known: stack.env of ``make up`` names it)."""
    from claims_cdc_dev.stack import UI_PASSWORD, UI_USER

    api_url = os.getenv("AIRFLOW__API__BASE_URL")
    if not api_url:
        print("no AIRFLOW__API__BASE_URL: the runs' breakdown needs the deployment of `make up`")
        return None
    breakdown = fetch_breakdown(api_url, UI_USER, UI_PASSWORD, since)
    print(format_breakdown(breakdown))
    return breakdown.summary()


if __name__ == "__main__":
    raise SystemExit(main())
