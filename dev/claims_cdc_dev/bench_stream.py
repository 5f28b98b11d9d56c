"""The benchmark's change stream: a seeded history of claim changes, written to Kinesis exactly as DynamoDB's
Kinesis streaming destination writes it, and the claims' final state written to the DynamoDB table.

The history is planned first (:func:`plan_history`: which claim changes how, in which order; small tuples,
no content), then its records are built one batch at a time while they are put (:func:`records`), so the
bench holds the planned events and one current item per claim, never the whole stream.

Each claim is inserted, modified a few times (its status changes every time), about one in ten is
removed, and about a third of those are inserted again later. Change times
(``ApproximateCreationDateTime``, milliseconds) increase strictly over the whole stream and end before the
records are put, so each lies within the pipeline's plausibility window (arrival minus the stream's
retention .. arrival plus the clock skew). PartitionKey is the claim id: a claim's changes stay on one
shard, in their order.

Values are fake (Faker, seeded); the bench prints ids and counts only.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from claims_cdc_dev.generator import CLAIM_STATUSES, PAYMENT_STATUSES, make_claim

#: Kinesis takes at most 500 records per PutRecords call.
PUT_BATCH = 500
#: Milliseconds between two changes' times: 100,000 changes span about 17 minutes before the put.
CHANGE_STEP_MS = 10
#: Share of claims removed, and of those the share inserted again later.
REMOVE_SHARE = 0.10
REINSERT_SHARE = 0.30
#: MODIFYs after each INSERT: uniform in this range (with the removes, about five changes per claim).
MODIFIES = (1, 6)
#: Distinct Faker-made claims the stream's claims are varied from.
POOL = 500
#: The records' dynamodb.SizeBytes: about a claim item's size (the pipeline does not read it).
ITEM_SIZE_BYTES = 1200


@dataclass(frozen=True)
class Change:
    """One planned change: the claim (by its index) and the event. Its time is its place in the history."""

    claim: int
    event: str  # INSERT, MODIFY or REMOVE


def _claim_events(rng: random.Random) -> list[str]:
    events = ["INSERT"] + ["MODIFY"] * rng.randint(*MODIFIES)
    if rng.random() < REMOVE_SHARE:
        events.append("REMOVE")
        if rng.random() < REINSERT_SHARE:
            events += ["INSERT"] + ["MODIFY"] * rng.randint(0, 2)
    return events


def plan_history(changes: int, seed: int) -> list[Change]:
    """``changes`` changes over as many claims as they need, interleaved in time, each claim's in order.

    Claims are drawn until the budget is spent (the last one's events cut short, so it may end on any
    event); each event gets a random point in time, sorted within its claim, and the whole history is
    ordered by those points.
    """
    if changes < 1:
        raise ValueError("changes must be at least 1")
    rng = random.Random(seed)
    keyed: list[tuple[float, int, int, str]] = []
    claim = 0
    while len(keyed) < changes:
        events = _claim_events(rng)[: changes - len(keyed)]
        points = sorted(rng.random() for _ in events)
        keyed += [(point, claim, i, event) for i, (point, event) in enumerate(zip(points, events, strict=True))]
        claim += 1
    keyed.sort()
    return [Change(claim, event) for _, claim, _, event in keyed]


def expected_final_state(history: Iterable[tuple[str, str, str | None]]) -> dict[str, str]:
    """claim id -> claimStatus that the destination must hold after ``history`` is applied in order.

    ``history`` is (claim id, event, status of the new image; None for a REMOVE), oldest first: an INSERT
    or a MODIFY sets the claim's row, a REMOVE deletes it. Computed from the records' own content, apart
    from the generator's bookkeeping, so it checks the generator too.
    """
    state: dict[str, str] = {}
    for claim_id, event, status in history:
        if event == "REMOVE":
            state.pop(claim_id, None)
        elif event in ("INSERT", "MODIFY"):
            if status is None:
                raise ValueError(f"claim {claim_id}: an {event} without a status")
            state[claim_id] = status
        else:
            raise ValueError(f"claim {claim_id}: unknown event {event!r}")
    return state


def dynamodb_json(value: Any) -> dict[str, Any]:
    """A plain value (str, Decimal, int, bool, None, list, dict) in DynamoDB JSON, as boto3's TypeSerializer
    writes it for these types (five times faster: the bench serialises every image it writes)."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (Decimal, int)):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, dict):
        return {"M": {key: dynamodb_json(inner) for key, inner in value.items()}}
    if isinstance(value, list):
        return {"L": [dynamodb_json(inner) for inner in value]}
    raise TypeError(f"no DynamoDB JSON for a {type(value).__name__}")


def item_image(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB JSON (the NewImage / OldImage of a record)."""
    return {key: dynamodb_json(value) for key, value in item.items()}


def kinesis_data(event: str, key: str, change_ms: int, event_id: str, new: str | None, old: str | None,
                 size_bytes: int) -> bytes:
    """One record's Data as DynamoDB's Kinesis streaming destination writes it (compact JSON).

    ``new`` and ``old`` are the images as DynamoDB-JSON text (each image is encoded once, and the new one is
    the next change's old one); REMOVE has no new image, INSERT no old one.
    """
    head = (f'{{"awsRegion":"us-east-1","eventID":{json.dumps(event_id)},"eventName":{json.dumps(event)},'
            f'"userIdentity":null,"recordFormat":"application/json","tableName":"InsuranceClaims",'
            f'"dynamodb":{{"ApproximateCreationDateTime":{int(change_ms)},'
            f'"Keys":{{"claim_id":{{"S":{json.dumps(key)}}}}}')
    parts = [head]
    if new is not None:
        parts.append(f',"NewImage":{new}')
    if old is not None:
        parts.append(f',"OldImage":{old}')
    parts.append(f',"SizeBytes":{int(size_bytes)}}},"eventSource":"aws:dynamodb"}}')
    return "".join(parts).encode()


def attribute_fragments(item: dict[str, Any]) -> dict[str, str]:
    """Each attribute of ``item`` as its part of the image's DynamoDB-JSON text (``"name":{...}``).

    An image is these parts joined: a changed attribute is encoded again, the rest is reused as text
    (encoding whole images was most of the generator's time).
    """
    return {key: f"{json.dumps(key)}:{json.dumps(dynamodb_json(value), separators=(',', ':'))}"
            for key, value in item.items()}


@dataclass
class Stream:
    """The built stream's bookkeeping: what the destination must hold once it is drained."""

    changes: int
    claims: int
    events: dict[str, int]
    #: claim id -> final claimStatus (claims removed last are absent), by :func:`expected_final_state`.
    final_status: dict[str, str]
    #: claim id -> final item (plain Python, Decimals), for the DynamoDB table.
    final_items: dict[str, dict[str, Any]]
    data_bytes: int


def records(history: list[Change], seed: int, end_ms: int, stream: Stream) -> Iterator[dict[str, Any]]:
    """PutRecords entries (Data, PartitionKey) for ``history``, oldest first; fills ``stream`` as it goes.

    The last change's time is ``end_ms``; earlier ones are :data:`CHANGE_STEP_MS` apart. A new claim is one
    of :data:`POOL` claims made by the generator's ``make_claim`` (Faker is slow: a few milliseconds a
    claim), with its own id, member id, statuses and creation time; a MODIFY changes the claim's status and
    payment status. Each image is encoded once (from the parts of its attributes) and reused as the next change's old image.
    """
    from faker import Faker

    rng = random.Random(seed + 1)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    pool = [make_claim(fake, rng) for _ in range(POOL)]
    pool_fragments = [attribute_fragments(item) for item in pool]
    ids: dict[int, str] = {}
    items: dict[str, dict[str, Any]] = {}          # claim id -> current item (absent when removed)
    fragments: dict[str, dict[str, str]] = {}      # claim id -> its current image, attribute by attribute
    texts: dict[str, str] = {}                     # claim id -> that image, encoded
    seen: list[tuple[str, str, str | None]] = []
    start_ms = end_ms - (len(history) - 1) * CHANGE_STEP_MS
    for position, change in enumerate(history):
        at_ms = start_ms + position * CHANGE_STEP_MS
        if change.event == "REMOVE":
            claim_id = ids[change.claim]
            item, new, old = None, None, texts.pop(claim_id)
            items.pop(claim_id), fragments.pop(claim_id)
        else:
            if change.event == "INSERT":
                template = rng.randrange(POOL)
                claim_id = ids.setdefault(change.claim, f"CLM-{uuid.UUID(int=rng.getrandbits(128)).hex[:12].upper()}")
                base, base_fragments, old = pool[template], pool_fragments[template], None
                created = datetime.fromtimestamp(at_ms / 1000, UTC).replace(tzinfo=None)
                changed = {"claim_id": claim_id, "memberId": f"MBR{rng.randint(10_000_000, 99_999_999)}",
                           "claimStatus": rng.choice(CLAIM_STATUSES),
                           "createdTimeStamp": created.isoformat(timespec="microseconds")}
            else:
                claim_id = ids[change.claim]
                base, base_fragments = items[claim_id], fragments[claim_id]
                old = texts[claim_id]
                changed = {"claimStatus": rng.choice([s for s in CLAIM_STATUSES if s != base["claimStatus"]])}
            changed["paymentStatus"] = rng.choice(PAYMENT_STATUSES)
            item = {**base, **changed}
            image = {**base_fragments, **attribute_fragments(changed)}
            new = "{" + ",".join(image.values()) + "}"
            items[claim_id], fragments[claim_id], texts[claim_id] = item, image, new
        data = kinesis_data(change.event, claim_id, at_ms, uuid.UUID(int=rng.getrandbits(128)).hex, new, old,
                            size_bytes=ITEM_SIZE_BYTES)
        seen.append((claim_id, change.event, None if item is None else item["claimStatus"]))
        stream.events[change.event] = stream.events.get(change.event, 0) + 1
        stream.data_bytes += len(data)
        yield {"Data": data, "PartitionKey": claim_id}
    stream.claims = len(ids)
    stream.final_items = items
    stream.final_status = expected_final_state(seen)


def batches(entries: Iterable[dict[str, Any]], size: int = PUT_BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def put_all(kinesis: Any, stream_name: str, entries: Iterable[dict[str, Any]]) -> int:
    """PutRecords in batches of 500, in order; returns the records put.

    One batch is put at a time, by one thread, while this one builds the next (the build and moto's work
    overlap); a batch with failed entries is re-put from its first failure on before the next batch goes,
    so a claim's changes keep their order on its shard.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    def put(batch: list[dict[str, Any]]) -> int:
        pending = batch
        while pending:
            answer = kinesis.put_records(StreamName=stream_name, Records=pending)
            failed = [i for i, result in enumerate(answer["Records"]) if "ErrorCode" in result]
            pending = pending[failed[0]:] if failed else []
        return len(batch)

    done = 0
    in_flight: list[Future] = []
    with ThreadPoolExecutor(max_workers=1) as putter:  # one worker: batches go in the order they are built
        for batch in batches(entries):
            in_flight.append(putter.submit(put, batch))
            while len(in_flight) > 2:
                done += in_flight.pop(0).result()
        for future in in_flight:
            done += future.result()
    return done


def write_final_state(make_table: Callable[[], Any], items: Iterable[dict[str, Any]], threads: int = 4) -> int:
    """The claims' final state into the DynamoDB table: ``threads`` batch writers (25 items per
    BatchWriteItem), each on its own table resource (``make_table``: boto3 resources are not thread-safe).
    Moto parses and sizes every attribute of every item; several writers keep both sides busy."""
    from concurrent.futures import ThreadPoolExecutor

    everything = list(items)

    def write(chunk: list[dict[str, Any]]) -> int:
        with make_table().batch_writer() as batch:
            for item in chunk:
                batch.put_item(Item=item)
        return len(chunk)

    with ThreadPoolExecutor(max_workers=threads) as writers:
        return sum(writers.map(write, [everything[i::threads] for i in range(threads)]))
