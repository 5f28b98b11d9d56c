"""Benchmark: the transform's cost per record against the floor of a plain JSON decode of the same records.

    PYTHONPATH=plugins:dev .venv/bin/python -m claims_cdc_dev.bench_transform   # BENCH_RECORDS=20000 by default

Builds BENCH_RECORDS records exactly as DynamoDB's Kinesis streaming destination writes them (compact JSON,
NEW_AND_OLD_IMAGES: an INSERT carries the new image, a MODIFY both, a REMOVE the old one), from the claims
generator with a fixed seed, each with a plausible ApproximateCreationDateTime next to its arrival time.
Then, in the same process, it times (a) the floor, the standard library's ``json.loads`` of every record's
bytes, and (b) ``transform_records`` on the same records, best of three repetitions each (per chunk of
2,000 records, alternating; see ``measure``), and prints microseconds per record for both and their
ratio. Issue 10 asks for a ratio of at most 2.

``build_records`` and ``measure`` are importable (the ``make bench`` harness reuses them). Prints figures
only, never a record.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from claims_cdc.mapping import Mapping, load_mapping
from claims_cdc.settings import INCLUDE_DIR
from claims_cdc.transform import SourceRecord, TimeRules, transform_records

SEED = 20_260_110
#: Kinesis arrival time of the first record (microseconds since the epoch); records arrive 1 ms apart.
FIRST_ARRIVAL = 1_795_555_075_257_000
#: The share of each event in the records built: mostly new claims, then status changes, a few deletions.
EVENT_MIX = (("INSERT", 0.7), ("MODIFY", 0.2), ("REMOVE", 0.1))
REPETITIONS = 3
#: Records timed together: a micro-batch, short enough that a burst of load elsewhere spoils one chunk only.
CHUNK = 2000


def _dynamodb_json(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {name: serializer.serialize(value) for name, value in item.items()}


def build_records(count: int, seed: int = SEED, shards: int = 2) -> list[SourceRecord]:
    """``count`` Kinesis records of claims changes, as the streaming destination writes them.

    Deterministic for a seed. A MODIFY changes the status of a claim inserted earlier; a REMOVE deletes one.
    """
    from faker import Faker

    from claims_cdc_dev.generator import CLAIM_STATUSES, PAYMENT_STATUSES, make_claim

    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    events = [name for name, _share in EVENT_MIX]
    weights = [share for _name, share in EVENT_MIX]
    live: list[dict[str, Any]] = []
    records = []
    for i in range(count):
        arrival = FIRST_ARRIVAL + i * 1_000
        event = rng.choices(events, weights)[0] if live else "INSERT"
        old = new = None
        if event == "INSERT":
            new = make_claim(fake, rng)
            new["createdTimeStamp"] = f"2026-11-24T21:{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}417"
            live.append(new)
        elif event == "MODIFY":
            old = rng.choice(live)
            new = {**old, "claimStatus": rng.choice(CLAIM_STATUSES), "paymentStatus": rng.choice(PAYMENT_STATUSES)}
            live[live.index(old)] = new
        else:
            old = live.pop(rng.randrange(len(live)))
        claim = new or old
        change: dict[str, Any] = {
            # Made up to two seconds before Kinesis received it, in microseconds (the forwarder's precision).
            "ApproximateCreationDateTime": arrival - rng.randint(1_000, 2_000_000),
            "Keys": {"claim_id": {"S": claim["claim_id"]}},
        }
        if new is not None:
            change["NewImage"] = _dynamodb_json(new)
        if old is not None:
            change["OldImage"] = _dynamodb_json(old)
        change["SizeBytes"] = len(json.dumps(change.get("NewImage") or change["OldImage"]))
        doc = {
            "awsRegion": "us-east-1",
            "eventID": f"{rng.getrandbits(128):032x}",
            "eventName": event,
            "userIdentity": None,
            "recordFormat": "application/json",
            "tableName": "InsuranceClaims",
            "dynamodb": change,
            "eventSource": "aws:dynamodb",
        }
        data = json.dumps(doc, separators=(",", ":")).encode()
        sequence = f"4965{i % shards:04d}{10**47 + i:048d}"
        records.append(SourceRecord(f"shardId-{i % shards:012d}", sequence, data, arrival))
    return records


def measure(records: Sequence[SourceRecord], mapping: Mapping | None = None, rules: TimeRules | None = None,
            repetitions: int = REPETITIONS, chunk: int = CHUNK) -> dict[str, Any]:
    """Time the JSON-decode floor and the transform on ``records``: microseconds per record, best of
    ``repetitions`` each, and their ratio. Raises if the transform rejects any record (the figure would
    then not be the one of the normal path).

    The records are timed ``chunk`` at a time (a micro-batch), the repetitions alternating (floor,
    transform, floor, ...) within each chunk, and each chunk's best times are added up: a burst of load
    from elsewhere on a shared machine then weighs on both figures alike, and spoils one chunk, not a run.
    """
    mapping = mapping or load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
    rules = rules or TimeRules()
    records = list(records)
    loads = json.loads
    totals = {"floor": 0.0, "transform": 0.0}
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        datas = [record.data for record in part]
        best = {"floor": float("inf"), "transform": float("inf")}
        for _ in range(repetitions):
            result = None  # the previous repetition's rows are not kept alive during this one
            gc.collect()
            started = time.perf_counter()
            for data in datas:
                loads(data)
            best["floor"] = min(best["floor"], time.perf_counter() - started)
            gc.collect()
            started = time.perf_counter()
            result = transform_records(part, mapping, rules)
            best["transform"] = min(best["transform"], time.perf_counter() - started)
            if result.rejected:  # reasons name attributes and rules, never a value
                raise AssertionError("the transform rejected benchmark records: "
                                     f"{sorted({letter['reason'] for letter in result.rejected})}")
        for name, seconds in best.items():
            totals[name] += seconds
    count = len(records)
    return {
        "records": count,
        "mean_bytes": round(sum(len(record.data) for record in records) / count),
        "floor_us": totals["floor"] / count * 1e6,
        "transform_us": totals["transform"] / count * 1e6,
        "ratio": totals["transform"] / totals["floor"],
    }


def main() -> int:
    count = int(os.getenv("BENCH_RECORDS", "20000"))
    if count < 1:
        print("BENCH_RECORDS must be at least 1", file=sys.stderr)
        return 2
    records = build_records(count)
    figures = measure(records)
    mix = ", ".join(f"{share:.0%} {name}" for name, share in EVENT_MIX)
    print(f"{figures['records']} records ({mix}), {figures['mean_bytes']} bytes on average; "
          f"best of {REPETITIONS} per chunk of {CHUNK}")
    print(f"floor     json.loads         {figures['floor_us']:8.2f} us/record")
    print(f"transform transform_records  {figures['transform_us']:8.2f} us/record")
    print(f"ratio     transform / floor  {figures['ratio']:8.2f} (issue 10: at most 2.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
