"""Run moto in server mode, with its Kinesis resharding made to behave as AWS documents.

Workarounds, kept in this one place (each reproduced in tests/platform/test_platform_quirks.py):

1. ``Stream.get_shard_for_key`` picks the first shard whose hash range holds the key, closed or not, so
   after a reshard new records still land on the closed parent. AWS writes them to the open child.
2. ``SplitShard`` moves the parent's records into the children (re-putting them with new sequence
   numbers) and ``MergeShards`` copies both parents' records into the child. AWS leaves a closed parent's
   records where they are, readable until retention expires, and the children start empty.

3. ``Shard.get_max_sequence_number`` (called for every record put) and ``get_min_sequence_number`` copy the
   shard's whole key list to read one end of it, so putting n records into a shard takes time in n²: the
   bench's 100,000 records took minutes, most of them here. Both now read the end of the ordered dict.
   (A speed fix only: the answers are moto's own, which the platform test checks.)

4. ``Scan`` with ``Select=COUNT`` deep-copies and sizes every item it counts, a page of 1 MB at a time, so
   the reconciliation's exact count of a 20,000-claim table took about 20 s (1 ms an item), longer than
   reading the stream. A whole-table count with no filter, index, limit or start key is now answered by
   counting the items of the segment asked for (one page: the Count the pages would sum to).
   (A speed fix only: the count is moto's own, which the platform test checks.)

5. ``GetRecords`` returns up to ``Limit`` records whatever their size. AWS returns at most 10 MiB of data a
   call (the records' data blobs and partition keys; at least one record), so a page of 10,000 of the
   bench's 2.5 KB records was 25 MB here and about 4,200 records on AWS. A reader's memory follows its
   page's size (a page in flight costs about four times its data while boto3 parses it), so the local
   stack gave memory figures AWS never would, and ones that grew with the records' size. Pages now stop
   at 10 MiB as AWS's do. (Moto's own answers otherwise: the records, their order, the next position and
   ``MillisBehindLatest`` as moto computes it from the last record returned.)

Everything else is moto's own ``moto_server``.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any


def patch_moto_resharding() -> None:
    from moto.kinesis.models import Stream
    from moto.utilities.utils import md5_hash

    if getattr(Stream, "_claims_cdc_patched", False):
        return
    original_get_shard = Stream.get_shard_for_key
    original_split = Stream.split_shard
    original_merge = Stream.merge_shards

    def get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
        shard = original_get_shard(self, partition_key, explicit_hash_key)  # moto's own argument checks
        if shard is None or shard.is_open:
            return shard
        key = int(explicit_hash_key) if explicit_hash_key else int(md5_hash(partition_key.encode()).hexdigest(), 16)
        for candidate in self.shards.values():
            if candidate.is_open and candidate.starting_hash <= key < candidate.ending_hash:
                return candidate
        return shard

    def _keeping_records(self: Any, shard_ids: tuple[str, ...], reshard: Any, *args: Any) -> None:
        shards = [self.shards[s] for s in shard_ids if s in self.shards]
        kept = [shard.records for shard in shards]
        for shard in shards:
            shard.records = OrderedDict()
        try:
            reshard(self, *args)
        finally:
            for shard, records in zip(shards, kept, strict=True):
                shard.records = records

    def split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
        _keeping_records(self, (shard_to_split,), original_split, shard_to_split, new_starting_hash_key)

    def merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        _keeping_records(self, (shard_to_merge, adjacent_shard_to_merge), original_merge, shard_to_merge,
                         adjacent_shard_to_merge)

    Stream.get_shard_for_key = get_shard_for_key
    Stream.split_shard = split_shard
    Stream.merge_shards = merge_shards
    Stream._claims_cdc_patched = True


def patch_moto_sequence_numbers() -> None:
    """Workaround 3: a shard's first and last sequence numbers in constant time (its records are kept in
    the order of their sequence numbers, which only grow)."""
    from moto.kinesis.models import Shard

    if getattr(Shard, "_claims_cdc_patched", False):
        return

    def get_min_sequence_number(self: Any) -> int:
        return next(iter(self.records), 0)

    def get_max_sequence_number(self: Any) -> int:
        return next(reversed(self.records), 0)

    Shard.get_min_sequence_number = get_min_sequence_number
    Shard.get_max_sequence_number = get_max_sequence_number
    Shard._claims_cdc_patched = True


def patch_moto_count_scan() -> None:
    """Workaround 4: a plain ``Scan`` with ``Select=COUNT`` counts without copying the items."""
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    if getattr(DynamoHandler, "_claims_cdc_patched", False):
        return
    original = DynamoHandler.scan
    narrowing = ("ScanFilter", "FilterExpression", "IndexName", "ExclusiveStartKey", "Limit", "ConditionalOperator")

    def scan(self: Any) -> Any:
        body = self.body
        if body.get("Select") != "COUNT" or any(body.get(key) for key in narrowing):
            return original(self)
        table = self.dynamodb_backend.get_table(body["TableName"])  # moto's own ResourceNotFoundException
        segments = (body.get("Segment"), body.get("TotalSegments"))
        count = sum(1 for item in table.all_items() if item.is_within_segment(segments))
        return DynamoResult({"Count": count, "ScannedCount": count})

    DynamoHandler.scan = scan
    DynamoHandler._claims_cdc_patched = True


#: AWS: "The maximum size of data that GetRecords can return is 10 MiB."
GET_RECORDS_MAX_BYTES = 10 * 1024 * 1024


def record_bytes(record: Any) -> int:
    """A moto record's size as Kinesis counts it: its data blob (moto keeps it base64) and partition key."""
    data = record.data
    return len(data) // 4 * 3 - data[-2:].count("=") + len(record.partition_key.encode())


def patch_moto_get_records_size() -> None:
    """Workaround 5: a ``GetRecords`` page holds at most 10 MiB of data, as on AWS (at least one record)."""
    from moto.kinesis.models import Shard

    if getattr(Shard, "_claims_cdc_page_cap", False):
        return

    def get_records(self: Any, last_sequence_id: str, limit: int | None) -> tuple[list[Any], int, int]:
        # moto 5.2's own body, with the size limit added.
        last_sequence_int = int(last_sequence_id)
        results: list[Any] = []
        size = 0
        secs_behind_latest = 0.0
        for sequence_number, record in self.records.items():
            if sequence_number > last_sequence_int:
                size += record_bytes(record)
                if results and size > GET_RECORDS_MAX_BYTES:
                    break
                results.append(record)
                last_sequence_int = sequence_number
                very_last_record = self.records[next(reversed(self.records))]
                secs_behind_latest = very_last_record.created_at - record.created_at
            if len(results) == limit:
                break
        return results, last_sequence_int, int(secs_behind_latest * 1000)

    Shard.get_records = get_records
    Shard._claims_cdc_page_cap = True


def main(argv: list[str] | None = None) -> None:
    patch_moto_resharding()
    patch_moto_sequence_numbers()
    patch_moto_count_scan()
    patch_moto_get_records_size()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
