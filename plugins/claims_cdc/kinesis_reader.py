"""Reading Kinesis shards from stored positions, parents before children.

Knows the Kinesis API and nothing of Snowflake: callers pass the stored checkpoints in and take the new
positions out. It never moves a checkpoint itself (that happens in the same Snowflake transaction as the
staged rows), so a read that is thrown away, retried or done twice changes nothing.
Never logs record content: shard ids, sequence numbers and counts only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
    #: Kinesis' MillisBehindLatest on the last page read: how far this read stopped behind the shard's tip
    #: (the lag alert's Kinesis half). None until a page was read.
    millis_behind_latest: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "shard_id": self.shard_id,
            "parent_shard_ids": list(self.parent_shard_ids),
            "start": self.start,
            "end": self.end,
            "records": self.records,
            "drained": self.drained,
            "verified_at": self.verified_at.isoformat(timespec="microseconds") if self.verified_at else None,
            "millis_behind_latest": self.millis_behind_latest,
        }


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
    """Shards in parent-before-child order, less those already retired as drained."""
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


def _iterator(client: Any, stream_name: str, shard_id: str, after: str | None,
              at_timestamp: str | None = None) -> str:
    """An iterator after ``after``; with no position yet, at ``at_timestamp`` (ISO-8601, a replay's start)
    or else at the shard's TRIM_HORIZON."""
    kwargs: dict[str, Any] = {"StreamName": stream_name, "ShardId": shard_id}
    if after is None and at_timestamp is not None:
        kwargs["ShardIteratorType"] = "AT_TIMESTAMP"
        kwargs["Timestamp"] = datetime.fromisoformat(at_timestamp)
    elif after is None:
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


#: GetRecords returns at most 10 MiB of data a call; a page of less than half that was not cut by it.
_PAGE_CUT_BYTES = 5 * 1024 * 1024


def _at_tip(page: dict[str, Any], limit: int) -> bool:
    """The page reached the shard's tip: nothing after its records to read now.

    Kinesis says so with ``MillisBehindLatest`` 0 ("caught up, no new records to process at this moment").
    Trusted on a page short of both its limits (the records asked for, and well under GetRecords' 10 MiB),
    so that it answered everything there was. A page cut by a limit may stop among records as old as the
    tip's (``MillisBehindLatest`` counts whole milliseconds from the page's last record, and moto gives a
    PutRecords call's records one time): after one, one more read decides. Saves that read, and its 0.2 s
    wait, on every caught-up shard of a micro-batch.
    """
    records = page.get("Records", [])
    return (page.get("MillisBehindLatest") == 0 and len(records) < limit
            and sum(len(record.get("Data", b"")) for record in records) < _PAGE_CUT_BYTES)


def _parents_done(shard: dict[str, Any], checkpoints: dict[str, Checkpoint], listed: set[str]) -> bool:
    """Every parent is retired (drained by an earlier run) or trimmed from the stream."""
    return all(parent not in listed or _checkpoint(checkpoints, parent).closed for parent in _parents(shard))


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


@dataclass(frozen=True)
class ShardTask:
    """One shard's part of a run: where to start, how many records at most, and what the shard is."""

    shard_id: str
    parent_shard_ids: tuple[str, ...]
    #: The last sequence number consumed (the stored checkpoint), or None to start at TRIM_HORIZON.
    start: str | None
    share: int
    #: ListShards gave the shard an EndingSequenceNumber: it was closed by resharding.
    closed: bool
    #: A replay's start (ISO-8601, AT_TIMESTAMP) when ``start`` is None; None: TRIM_HORIZON.
    at_timestamp: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"shard_id": self.shard_id, "parent_shard_ids": list(self.parent_shard_ids), "start": self.start,
               "share": self.share, "closed": self.closed}
        return {**doc, "at_timestamp": self.at_timestamp} if self.at_timestamp else doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ShardTask:
        return cls(doc["shard_id"], tuple(doc["parent_shard_ids"]), doc["start"], int(doc["share"]),
                   bool(doc["closed"]), doc.get("at_timestamp"))


def plan_shards(client: Any, stream_name: str, checkpoints: dict[str, Checkpoint], max_records: int) -> list[ShardTask]:
    """The shards a run reads, each with its fair share of ``max_records``, parents before children.

    A shard is read when every parent is retired (drained in an earlier run) or gone from the stream, so a
    child is never read before its parents are; children of a parent that drains in this run are read by
    the next run. The cap is split as evenly as whole records allow, and every shard gets at least one
    record (with more shards than the cap, a run may read one record a shard), so no shard is starved.
    """
    shards = list_shards(client, stream_name)
    listed = {s["ShardId"] for s in shards}
    eligible = [s for s in readable_shards(shards, checkpoints) if _parents_done(s, checkpoints, listed)]
    return [ShardTask(s["ShardId"], _parents(s), _checkpoint(checkpoints, s["ShardId"]).sequence_number, share,
                      _closed(s))
            for s, share in zip(eligible, _fair_shares(max_records, len(eligible)), strict=True)]


def plan_replay_shards(client: Any, stream_name: str, shard_ids: list[str] | None, max_records: int,
                       at_timestamp: str) -> list[ShardTask]:
    """A replay's shards: all the stream lists, or those of ``shard_ids``, each read from ``at_timestamp``
    (AT_TIMESTAMP) with its fair share of ``max_records``. Checkpoints play no part. ValueError names the
    shards the stream does not list."""
    shards = list_shards(client, stream_name)
    unknown = sorted(set(shard_ids or ()) - {s["ShardId"] for s in shards})
    if unknown:
        raise ValueError(f"shards {', '.join(unknown)} are not in stream {stream_name} "
                         f"(its shards: {', '.join(s['ShardId'] for s in shards)})")
    chosen = [s for s in shards if not shard_ids or s["ShardId"] in shard_ids]
    return [ShardTask(s["ShardId"], _parents(s), None, share, _closed(s), at_timestamp=at_timestamp)
            for s, share in zip(chosen, _fair_shares(max_records, len(chosen)), strict=True)]


def _fair_shares(budget: int, shards: int) -> list[int]:
    """``budget`` split as evenly as whole records allow (the first shards get the remainder), at least 1 each."""
    if not shards:
        return []
    share, rest = divmod(budget, shards)
    return [max(1, share + (1 if index < rest else 0)) for index in range(shards)]


def read_shard(client: Any, stream_name: str, task: ShardTask, page_limit: int,
               started_at: datetime | None) -> Iterator[tuple[list[SourceRecord], ShardProgress]]:
    """Read one shard after ``task.start``, up to ``task.share`` records, page by page.

    Yields each page's records with the shard's progress so far (``end`` is the last record yielded), so a
    caller can handle the records as they come and hold none of them. Reads at most 5 times per second
    (Kinesis' limit per shard). The shard stops when it is caught up, closed and drained, at its share, or
    at records that arrived after ``started_at`` (a run handles what was in the stream when it started);
    the last progress yielded says which.
    """
    state = ShardProgress(task.shard_id, task.parent_shard_ids, task.start, task.start)
    iterator: str | None = _iterator(client, stream_name, task.shard_id, state.end, task.at_timestamp)
    empty_pages = 0
    last_read = 0.0
    while iterator and state.records < task.share:
        if last_read and (wait := MIN_SECONDS_BETWEEN_READS - (time.monotonic() - last_read)) > 0:
            time.sleep(wait)
        limit = min(page_limit, task.share - state.records)
        try:
            page = _get_records(client, iterator, limit)
        except client.exceptions.ExpiredIteratorException:
            log.warning("shard %s: iterator expired; re-acquiring after %s", task.shard_id, state.end)
            iterator = _iterator(client, stream_name, task.shard_id, state.end, task.at_timestamp)
            continue
        last_read = time.monotonic()
        page_records = page.get("Records", [])
        state.millis_behind_latest = int(page.get("MillisBehindLatest", 0))
        fresh = [r for r in page_records if not _arrived_after(r, started_at)]
        records = [SourceRecord(task.shard_id, raw["SequenceNumber"], raw["Data"], _arrival_micros(raw))
                   for raw in fresh]
        if records:
            state.end = records[-1].sequence_number
        state.records += len(records)
        iterator = page.get("NextShardIterator")
        caught_up = (iterator is None or (not page_records and page.get("MillisBehindLatest", 0) == 0)
                     or _at_tip(page, limit))
        if caught_up or len(fresh) < len(page_records):
            # Nothing more (or only records newer than this run): the position is verified as of now.
            state.verified_at = _utcnow()
            # A closed shard read to its end is drained. AWS ends it with NextShardIterator = None;
            # moto keeps handing out iterators, so ListShards' EndingSequenceNumber decides as well.
            state.drained = caught_up and (iterator is None or task.closed)
            yield records, state
            return
        if not page_records:
            empty_pages += 1
            if empty_pages >= MAX_EMPTY_PAGES:
                break
        if records:
            yield records, state
    yield [], state


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


@dataclass(frozen=True)
class ShardLag:
    """How far one shard's stored position is behind the stream: counts and times, never records.

    ``records`` counts what is readable after the position, up to ``bound`` (``bounded`` says the count
    stopped there: at least that many). ``oldest_arrival`` is when the first unread record reached Kinesis;
    ``millis_behind_latest`` is what Kinesis answered to a GetRecords from the position.
    """

    shard_id: str
    records: int
    bounded: bool
    oldest_arrival: datetime | None
    millis_behind_latest: int | None

    def seconds_behind(self, now: datetime) -> float:
        """The age of the oldest unread record (0 when caught up), at ``now`` (aware UTC)."""
        if self.oldest_arrival is None:
            return 0.0
        return max(0.0, (now - self.oldest_arrival).total_seconds())


def shard_lag(client: Any, stream_name: str, shard_id: str, after: str | None, bound: int) -> ShardLag:
    """Count the records readable after ``after`` (None: from TRIM_HORIZON) on one shard, up to ``bound``.

    Consumes nothing (a plain GetRecords, as the sensor looks). Reads pages of up to ``bound`` records within
    Kinesis' 5 reads per second per shard, and stops when caught up, at the shard's end, after
    ``MAX_EMPTY_PAGES`` empty pages, or at ``bound``.
    """
    iterator: str | None = _iterator(client, stream_name, shard_id, after)
    records = 0
    oldest: datetime | None = None
    millis: int | None = None
    empty_pages = 0
    last_read = 0.0
    while iterator and records < bound:
        if last_read and (wait := MIN_SECONDS_BETWEEN_READS - (time.monotonic() - last_read)) > 0:
            time.sleep(wait)
        limit = min(10_000, bound - records)
        page = _get_records(client, iterator, limit)
        last_read = time.monotonic()
        page_records = page.get("Records", [])
        if millis is None:
            millis = page.get("MillisBehindLatest")
        if page_records and oldest is None:
            arrival = page_records[0].get("ApproximateArrivalTimestamp")
            if isinstance(arrival, datetime):
                oldest = arrival if arrival.tzinfo else arrival.replace(tzinfo=UTC)
        records += len(page_records)
        iterator = page.get("NextShardIterator")
        if _at_tip(page, limit):
            break
        if not page_records:
            empty_pages += 1
            if page.get("MillisBehindLatest", 0) == 0 or empty_pages >= MAX_EMPTY_PAGES:
                break
    return ShardLag(shard_id, min(records, bound), records >= bound, oldest, millis)
