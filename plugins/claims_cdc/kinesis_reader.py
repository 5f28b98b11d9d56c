"""Reading Kinesis shards from stored positions, parents before children.

Knows the Kinesis API and nothing of Snowflake: callers pass the stored checkpoints in and take the new
positions out. It never moves a checkpoint itself (that happens in the same Snowflake transaction as the
staged rows), so a read that is thrown away, retried or done twice changes nothing.
Never logs record content: shard ids, sequence numbers and counts only.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from claims_cdc.aws import error_code
from claims_cdc.transform import SourceRecord

log = logging.getLogger(__name__)

#: Kinesis allows 5 GetRecords calls per second per shard.
MIN_SECONDS_BETWEEN_READS = 0.2
MAX_THROTTLE_RETRIES = 6
#: Empty pages followed per shard before we call it caught up (a sparse shard can return empty pages
#: while MillisBehindLatest is still above zero).
MAX_EMPTY_PAGES = 5


class CheckpointGap(RuntimeError):
    """Records after a stored checkpoint may have expired from the stream unread. Never skipped silently."""


class StreamNotFound(RuntimeError):
    """Kinesis says the stream does not exist (ResourceNotFoundException): no retry can fix that."""

    def __init__(self, stream_name: str):
        super().__init__(
            f"CDC_KINESIS_STREAM: the Kinesis stream {stream_name!r} does not exist in the AWS connection's "
            "account and region (ResourceNotFoundException); check the stream name and the connection"
        )
        self.stream_name = stream_name


def _stream_call(method: Any, stream_name: str, **kwargs: Any) -> dict[str, Any]:
    """A call that names the stream: ResourceNotFoundException becomes :class:`StreamNotFound`.

    Only calls about the stream itself (ListShards, DescribeStreamSummary): GetShardIterator says the same
    for a shard trimmed since it was listed, which a retry does fix.
    """
    try:
        return method(**kwargs)
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            raise StreamNotFound(stream_name) from error
        raise


@dataclass(frozen=True)
class Checkpoint:
    """The stored position of one shard: the last sequence number consumed, or None for none yet.

    ``verified_at`` (naive UTC) is when a read last found the shard caught up after that position.
    """

    shard_id: str
    sequence_number: str | None
    closed: bool = False
    verified_at: datetime | None = None


@dataclass
class ShardProgress:
    shard_id: str
    parent_shard_ids: tuple[str, ...]
    start: str | None
    end: str | None
    records: int = 0
    #: The shard is closed (resharded) and this read reached its end.
    drained: bool = False
    #: When this read found nothing more after ``end`` (naive UTC), or None if it stopped early (cap).
    verified_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "shard_id": self.shard_id,
            "parent_shard_ids": list(self.parent_shard_ids),
            "start": self.start,
            "end": self.end,
            "records": self.records,
            "drained": self.drained,
            "verified_at": self.verified_at.isoformat(timespec="microseconds") if self.verified_at else None,
        }


@dataclass
class ReadResult:
    records: list[SourceRecord] = field(default_factory=list)
    shards: list[ShardProgress] = field(default_factory=list)


def list_shards(client: Any, stream_name: str) -> list[dict[str, Any]]:
    """Every shard of the stream the API still lists (open and closed-but-retained), paginated."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        page = _stream_call(client.list_shards, stream_name, **kwargs)
        shards.extend(page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def _parents(shard: dict[str, Any]) -> tuple[str, ...]:
    return tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)


def readable_shards(shards: list[dict[str, Any]], checkpoints: dict[str, Checkpoint]) -> list[dict[str, Any]]:
    """Shards in parent-before-child order, less those already retired as drained.

    Whether a child may be read yet is decided while reading, once we know whether its parents drained.
    """
    by_id = {s["ShardId"]: s for s in shards}
    ordered: list[dict[str, Any]] = []
    placed: set[str] = set()

    def visit(shard_id: str) -> None:
        if shard_id in placed:
            return
        placed.add(shard_id)
        for parent in _parents(by_id[shard_id]):
            if parent in by_id:
                visit(parent)
        ordered.append(by_id[shard_id])

    for shard in sorted(shards, key=lambda s: s["ShardId"]):
        visit(shard["ShardId"])
    return [s for s in ordered if not _checkpoint(checkpoints, s["ShardId"]).closed]


def _closed(shard: dict[str, Any]) -> bool:
    """A shard closed by resharding: ListShards gives it an EndingSequenceNumber."""
    return "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as Snowflake's SYSDATE() stores it


def _checkpoint(checkpoints: dict[str, Checkpoint], shard_id: str) -> Checkpoint:
    return checkpoints.get(shard_id) or Checkpoint(shard_id, None)


def _iterator(client: Any, stream_name: str, shard_id: str, after: str | None) -> str:
    kwargs: dict[str, Any] = {"StreamName": stream_name, "ShardId": shard_id}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
        kwargs["StartingSequenceNumber"] = after
    return client.get_shard_iterator(**kwargs)["ShardIterator"]


def _get_records(client: Any, iterator: str, limit: int) -> dict[str, Any]:
    """GetRecords with back-off on throttling, within Kinesis' 5 reads per second per shard."""
    delay = MIN_SECONDS_BETWEEN_READS
    for attempt in range(MAX_THROTTLE_RETRIES + 1):
        try:
            return client.get_records(ShardIterator=iterator, Limit=limit)
        except client.exceptions.ProvisionedThroughputExceededException:
            if attempt == MAX_THROTTLE_RETRIES:
                raise
            log.warning("GetRecords throttled; retrying in %.1fs (attempt %d)", delay, attempt + 1)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _parents_done(
    shard: dict[str, Any], progress: dict[str, ShardProgress], checkpoints: dict[str, Checkpoint], listed: set[str]
) -> bool:
    for parent in _parents(shard):
        if parent not in listed or _checkpoint(checkpoints, parent).closed:
            continue  # trimmed from the stream, or already retired: nothing left to read there
        if parent in progress and progress[parent].drained:
            continue
        return False
    return True


def _arrival_micros(raw: dict[str, Any]) -> int | None:
    """ApproximateArrivalTimestamp (boto3 gives an aware datetime) in microseconds since the epoch."""
    arrival = raw.get("ApproximateArrivalTimestamp")
    if not isinstance(arrival, datetime):
        return None
    if arrival.tzinfo is None:
        arrival = arrival.replace(tzinfo=UTC)
    return (arrival - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def retention_hours(client: Any, stream_name: str) -> int:
    """The stream's retention period (DescribeStreamSummary), in hours."""
    summary = _stream_call(client.describe_stream_summary, stream_name,
                           StreamName=stream_name)["StreamDescriptionSummary"]
    return int(summary.get("RetentionPeriodHours", 24))


def _arrived_after(raw: dict[str, Any], started_at: datetime | None) -> bool:
    arrival = raw.get("ApproximateArrivalTimestamp")
    return started_at is not None and isinstance(arrival, datetime) and arrival > started_at


def read_batch(
    client: Any,
    stream_name: str,
    checkpoints: dict[str, Checkpoint],
    max_records: int,
    page_limit: int,
    started_at: datetime | None = None,
    max_workers: int = 8,
) -> ReadResult:
    """Read up to ``max_records`` records across shards, each from its checkpoint.

    The shards that may be read (their parents drained) are read concurrently, each in its own thread at
    its own 5 reads per second, and the cap is split fairly between them: each gets an equal share, and
    what a shard that caught up early leaves is shared again among those that stopped at their share.
    Children whose parents drained are read next, from what is left. A shard stops when it is caught up,
    closed and drained, or when records arrived after ``started_at`` (so a run handles what was in the
    stream when it started).
    """
    shards = list_shards(client, stream_name)
    listed = {s["ShardId"] for s in shards}
    result = ReadResult()
    progress: dict[str, ShardProgress] = {}
    read: dict[str, list[SourceRecord]] = {}
    order = readable_shards(shards, checkpoints)
    for shard in order:
        start = _checkpoint(checkpoints, shard["ShardId"]).sequence_number
        progress[shard["ShardId"]] = ShardProgress(shard["ShardId"], _parents(shard), start, start)
    budget = max_records
    finished: set[str] = set()  # caught up, drained, or stopped at the run's start time
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kinesis-shard") as pool:
        while budget > 0:
            wave = [s for s in order if s["ShardId"] not in finished
                    and _parents_done(s, progress, checkpoints, listed)]
            if not wave:
                break
            turns = [(shard, share) for shard, share in zip(wave, _fair_shares(budget, len(wave)), strict=True)
                     if share > 0]
            if not turns:
                break
            for shard, _share in turns:
                if shard["ShardId"] not in read:
                    read[shard["ShardId"]] = []
                    result.shards.append(progress[shard["ShardId"]])
            futures = [(shard["ShardId"], pool.submit(_read_shard, client, stream_name, shard,
                                                      progress[shard["ShardId"]], share, page_limit, started_at))
                       for shard, share in turns]
            moved = False
            for shard_id, future in futures:
                records, done = future.result()
                read[shard_id].extend(records)
                budget -= len(records)
                if done:
                    finished.add(shard_id)
                moved = moved or done or bool(records)
            if not moved:
                break  # cannot happen (a shard returns at its share or finished); never loop on it
    for state in result.shards:
        result.records.extend(read[state.shard_id])
    return result


def _fair_shares(budget: int, shards: int) -> list[int]:
    """``budget`` split as evenly as whole records allow (the first shards get the remainder)."""
    share, rest = divmod(budget, shards)
    return [share + (1 if index < rest else 0) for index in range(shards)]


def _read_shard(client: Any, stream_name: str, shard: dict[str, Any], state: ShardProgress, share: int,
                page_limit: int, started_at: datetime | None) -> tuple[list[SourceRecord], bool]:
    """Read one shard after ``state.end``, up to ``share`` records; advance ``state``.

    Returns the records and whether the shard is finished for this run (caught up, drained, or at records
    newer than the run), as opposed to stopped at its share.
    """
    shard_id = shard["ShardId"]
    records: list[SourceRecord] = []
    iterator: str | None = _iterator(client, stream_name, shard_id, state.end)
    empty_pages = 0
    last_read = 0.0
    while iterator and share > len(records):
        if last_read and (wait := MIN_SECONDS_BETWEEN_READS - (time.monotonic() - last_read)) > 0:
            time.sleep(wait)
        try:
            page = _get_records(client, iterator, min(page_limit, share - len(records)))
        except client.exceptions.ExpiredIteratorException:
            log.warning("shard %s: iterator expired; re-acquiring after %s", shard_id, state.end)
            iterator = _iterator(client, stream_name, shard_id, state.end)
            continue
        last_read = time.monotonic()
        page_records = page.get("Records", [])
        fresh = [r for r in page_records if not _arrived_after(r, started_at)]
        for raw in fresh:
            records.append(SourceRecord(shard_id, raw["SequenceNumber"], raw["Data"], _arrival_micros(raw)))
            state.end = raw["SequenceNumber"]
        state.records += len(fresh)
        iterator = page.get("NextShardIterator")
        caught_up = iterator is None or (not page_records and page.get("MillisBehindLatest", 0) == 0)
        if caught_up or len(fresh) < len(page_records):
            # Nothing more (or only records newer than this run): the position is verified as of now.
            state.verified_at = _utcnow()
            # A closed shard read to its end is drained. AWS ends it with NextShardIterator = None;
            # moto keeps handing out iterators, so ListShards' EndingSequenceNumber decides as well.
            state.drained = caught_up and (iterator is None or _closed(shard))
            return records, True
        if not page_records:
            empty_pages += 1
            if empty_pages >= MAX_EMPTY_PAGES:
                return records, True
    return records, False


def has_records(client: Any, stream_name: str, checkpoints: dict[str, Checkpoint]) -> bool:
    """Look, without consuming, whether any readable shard has a record after its checkpoint.

    Also true for a closed shard not yet retired from the checkpoints, so that a run retires it.
    """
    for shard in readable_shards(list_shards(client, stream_name), checkpoints):
        if _closed(shard):
            return True
        shard_id = shard["ShardId"]
        iterator = _iterator(client, stream_name, shard_id, _checkpoint(checkpoints, shard_id).sequence_number)
        for _ in range(MAX_EMPTY_PAGES):
            page = _get_records(client, iterator, 1)
            if page.get("Records"):
                return True
            iterator = page.get("NextShardIterator")
            if iterator is None:
                return True
            if page.get("MillisBehindLatest", 0) == 0:
                break
    return False


def _first_retained(client: Any, stream_name: str, shard_id: str) -> str | None:
    """The sequence number of the oldest record the shard still holds (its TRIM_HORIZON), or None."""
    iterator: str | None = _iterator(client, stream_name, shard_id, None)
    for _ in range(MAX_EMPTY_PAGES):
        if not iterator:
            return None
        page = _get_records(client, iterator, 1)
        if page.get("Records"):
            return page["Records"][0]["SequenceNumber"]
        if page.get("MillisBehindLatest", 0) == 0:
            return None
        iterator = page.get("NextShardIterator")
    return None


def check_retention(client: Any, stream_name: str, checkpoints: dict[str, Checkpoint],
                    now: datetime | None = None, hours: int | None = None) -> None:
    """Fail with :class:`CheckpointGap` when records after a checkpoint may have expired unread.

    A checkpoint verified (caught up) within the stream's retention cannot have lost anything: whatever
    came after it arrived later and is still retained. Otherwise the shard's TRIM_HORIZON is compared
    with the checkpoint: if the checkpointed record itself is gone, or the shard is no longer listed
    while not drained, changes in between may be lost, and the run must stop and say so. ``hours`` is the
    stream's retention when the caller already read it (:func:`retention_hours`).
    """
    now = now or _utcnow()
    positioned = [c for c in checkpoints.values() if not c.closed and c.sequence_number is not None]
    if not positioned:
        return
    retention = timedelta(hours=retention_hours(client, stream_name) if hours is None else hours)
    stale = [c for c in positioned if c.verified_at is None or c.verified_at < now - retention]
    if not stale:
        return
    listed = {s["ShardId"] for s in list_shards(client, stream_name)}
    for checkpoint in stale:
        advice = (
            f"Reload the affected claims (or the table) from DynamoDB, then move the checkpoint on with "
            f"`python -m claims_cdc.admin accept-gap {checkpoint.shard_id}`."
        )
        if checkpoint.shard_id not in listed:
            raise CheckpointGap(
                f"shard {checkpoint.shard_id}: checkpoint {checkpoint.sequence_number} (last verified "
                f"{checkpoint.verified_at}) but the shard has expired from {stream_name} (retention "
                f"{retention}) before it was read to its end; its remaining changes are lost. {advice}"
            )
        first = _first_retained(client, stream_name, checkpoint.shard_id)
        if first is not None and int(first) > int(checkpoint.sequence_number):
            raise CheckpointGap(
                f"shard {checkpoint.shard_id}: checkpoint {checkpoint.sequence_number} (last verified "
                f"{checkpoint.verified_at}) is older than the stream's retention ({retention}); the oldest "
                f"record left is {first}, so changes between the two may have expired unread. {advice}"
            )
