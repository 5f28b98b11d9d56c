"""A pure-Python reference model of staging and merging: the spec the SQL is checked against.

The pipeline stages Kinesis records as rows of a staging table and merges them into the destination with
the statements of ``include/sql/merge.sql`` and ``cleanup.sql``. This module states, in plain Python and
independently of that SQL (it imports no production code), what those statements must do:

* A change sorts by its **order**: its own time in microseconds, then the Kinesis sequence number it arrived
  with. A copy re-sent later keeps its time and gets a new, larger sequence number.
* **Staging** a batch drops repeats within the batch: a row whose eventID, or whose content (claim, event,
  time, values), was already seen earlier in the same batch.
* A **merge** claims every staged row, then

  1. *tombstones*: each claim's tombstone is the order of the latest REMOVE ever merged for it; it only
     ever moves to a newer REMOVE;
  2. *destination*: INSERT and MODIFY rows no newer than their claim's tombstone (already moved by step 1)
     are dropped; of the remaining rows, the latest per claim is applied if the claim has no destination
     row (INSERT or MODIFY: inserted; REMOVE: nothing) or if it is newer than that row (REMOVE: deleted;
     INSERT or MODIFY: replaced);
  3. *clean-up*: the claimed rows leave the staging table.

:func:`last_change_wins` is the intended result of a history: each claim as its latest change left it.
``tests/unit/test_merge_model.py`` checks the model against it; ``tests/integration/
test_merge_sql_matches_model.py`` checks the SQL against the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Where a change sorts: (its own time in microseconds, the Kinesis sequence number it arrived with).
Order = tuple[int, int]
#: A destination row as the model keeps it: (order, event name, claim status).
DestinationRow = tuple[Order, str, str]

REMOVE = "REMOVE"


@dataclass(frozen=True)
class Row:
    """One delivered change: a staged row, reduced to what the merge rules look at."""

    claim: str
    event: str  # INSERT, MODIFY or REMOVE
    micros: int  # the change's own time
    sequence: int  # the Kinesis sequence number of this delivery
    status: str  # the claim's status (a REMOVE carries the status of the item it removed)
    event_id: str

    @property
    def order(self) -> Order:
        return (self.micros, self.sequence)

    @property
    def content(self) -> tuple[str, str, int, str]:
        """What the change says. A copy re-sent under a new eventID or sequence number says the same."""
        return (self.claim, self.event, self.micros, self.status)


@dataclass
class MergeModel:
    destination: dict[str, DestinationRow] = field(default_factory=dict)
    tombstones: dict[str, Order] = field(default_factory=dict)
    staging: list[Row] = field(default_factory=list)

    def stage(self, batch: Iterable[Row]) -> None:
        """Stage one batch, keeping the first of rows that repeat an eventID or a content."""
        event_ids: set[str] = set()
        contents: set[tuple[str, str, int, str]] = set()
        for row in batch:
            if row.event_id in event_ids or row.content in contents:
                continue
            event_ids.add(row.event_id)
            contents.add(row.content)
            self.staging.append(row)

    def merge_staged(self) -> None:
        """One whole merge: claim every staged row, merge them, remove them from staging."""
        claimed, self.staging = self.staging, []
        self.merge(claimed)

    def merge(self, rows: Iterable[Row]) -> None:
        """Steps 1 and 2 of a merge over the claimed ``rows`` (staging is left as it is)."""
        rows = list(rows)
        self.merge_tombstones(rows)
        self.merge_destination(rows)

    def merge_tombstones(self, rows: Iterable[Row]) -> None:
        """Step 1: each claim's tombstone moves to its latest REMOVE among ``rows``, if that is newer."""
        for row in rows:
            if row.event == REMOVE:
                tombstone = self.tombstones.get(row.claim)
                if tombstone is None or row.order > tombstone:
                    self.tombstones[row.claim] = row.order

    def merge_destination(self, rows: Iterable[Row]) -> None:
        """Step 2: drop what a tombstone covers, take the latest row per claim, apply it if it is newer."""
        latest: dict[str, Row] = {}
        for row in rows:
            tombstone = self.tombstones.get(row.claim)
            if row.event != REMOVE and tombstone is not None and row.order <= tombstone:
                continue
            if row.claim not in latest or row.order > latest[row.claim].order:
                latest[row.claim] = row
        for claim, row in latest.items():
            held = self.destination.get(claim)
            if held is not None and row.order <= held[0]:
                continue
            if row.event == REMOVE:
                self.destination.pop(claim, None)
            else:
                self.destination[claim] = (row.order, row.event, row.status)


def last_change_wins(changes: Iterable[Row]) -> dict[str, Row]:
    """The intended final state: per claim, its change with the greatest order, unless that is a REMOVE."""
    latest: dict[str, Row] = {}
    for change in changes:
        if change.claim not in latest or change.order > latest[change.claim].order:
            latest[change.claim] = change
    return {claim: change for claim, change in latest.items() if change.event != REMOVE}
