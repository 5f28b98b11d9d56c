"""Generated DynamoDB histories, their deliveries through Kinesis and their merge schedules, for the merge
model's property tests (tests/unit/test_merge_model.py) and the SQL-against-model test
(tests/integration/test_merge_sql_matches_model.py). Hypothesis strategies; no production code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

from hypothesis import strategies as st

from merge_model import MergeModel, Row, last_change_wins

CLAIMS = ("A", "B", "C")
#: First times of a history; from the second, a history may cross 10**15 µs (one more digit).
FIRST_MICROS = (1_790_000_000_000_000, 999_999_999_999_990)
#: First sequence numbers of a history: 97 and 9_990 gain a digit within a history; the last is Kinesis-sized.
FIRST_SEQUENCES = (1, 97, 9_990, 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136)


_OPS = st.tuples(st.sampled_from(CLAIMS), st.sampled_from(["put", "put", "delete"]), st.integers(0, 3),
                 st.integers(1, 50))
_COPIES = st.tuples(st.integers(0, 10**6), st.integers(1, 150), st.booleans())
_MERGES = st.sampled_from(["whole", "whole", "whole", "dies after tombstones", "dies after destination"])


@st.composite
def histories(draw, min_changes: int = 1, max_changes: int = 12) -> list[Row]:
    """A DynamoDB history of a few claims, in the order it happened, each change as first delivered.

    A put is an INSERT of an absent claim or a MODIFY of a present one, a delete a REMOVE of a present one
    (of an absent one, it becomes an INSERT), so claims are inserted, modified, deleted and inserted again.
    Time moves on by 0 to 3 µs a change: changes of other claims, and also of the same claim, share a
    microsecond, and then the sequence number of the first delivery (following the history, as Kinesis
    does for one item's shard) orders them.
    """
    ops = draw(st.lists(_OPS, min_size=min_changes, max_size=max_changes))
    micros = draw(st.sampled_from(FIRST_MICROS))
    sequence = draw(st.sampled_from(FIRST_SEQUENCES))
    present: dict[str, str] = {}
    history = []
    for index, (claim, op, tick, gap) in enumerate(ops):
        micros += tick
        sequence += gap
        if op == "delete" and claim in present:
            event, status = "REMOVE", present.pop(claim)
        else:
            event, status = ("MODIFY" if claim in present else "INSERT"), f"status-{index}"
            present[claim] = status
        history.append(Row(claim, event, micros, sequence, status, f"ev-{index}"))
    return history


def resendable(history: list[Row], index: int) -> bool:
    """Whether a copy of ``history[index]`` may be re-sent: not when a later change of the same claim has the
    same time. The copy's new, larger sequence number would outrank that later change, and no ordering by
    (time, sequence number) can tell (test_limitation_a_copy_of_the_older_of_two_same_microsecond_changes_wins).
    So ties in one claim are generated, and re-sent copies, but never a copy of the older change of a tie.
    """
    change = history[index]
    return not any(later.claim == change.claim and later.micros == change.micros for later in history[index + 1:])


@st.composite
def deliveries(draw, history: list[Row]) -> list[Row]:
    """Every change at least once: its first delivery, plus copies re-sent later (the same eventID or a new
    one, always a new sequence number, larger than the first delivery's), all in a random order."""
    used = {change.sequence for change in history}
    delivered = list(history)
    for pick, offset, same_id in draw(st.lists(_COPIES, max_size=len(history)), label="copies"):
        index = pick % len(history)
        if not resendable(history, index):
            continue
        change = history[index]
        sequence = change.sequence + offset
        while sequence in used:
            sequence += 1
        used.add(sequence)
        event_id = change.event_id if same_id else f"{change.event_id}-resent-{sequence}"
        delivered.append(replace(change, sequence=sequence, event_id=event_id))
    return draw(st.permutations(delivered), label="order")


@dataclass(frozen=True)
class Step:
    """Batches staged one after the other, then one merge: whole, or dying after step 1 or 2 (its rows stay
    staged and the next merge claims them again)."""

    batches: list[list[Row]]
    merge: str  # "whole", "dies after tombstones" or "dies after destination"


def split(draw, items: list, most: int | None, label: str) -> list[list]:
    """``items`` in consecutive, non-empty runs: 1 to ``most`` of them (default: up to one per item)."""
    count = draw(st.integers(1, min(most or len(items), len(items))), label=f"{label}: count")
    cuts = draw(st.sets(st.integers(1, len(items) - 1), min_size=count - 1, max_size=count - 1),
                label=label) if count > 1 else set()
    bounds = [0, *sorted(cuts), len(items)]
    return [items[start:end] for start, end in pairwise(bounds)]


@st.composite
def schedules(draw, delivered: list[Row], most_batches: int | None = None,
              most_merges: int | None = None) -> list[Step]:
    """The deliveries in staged batches, the batches in merges (one merge may follow several batches)."""
    groups = split(draw, split(draw, delivered, most_batches, "batches"), most_merges, "merges")
    merges = draw(st.lists(_MERGES, min_size=len(groups), max_size=len(groups)), label="merge kinds")
    steps = [Step(group, merge) for group, merge in zip(groups, merges, strict=True)]
    if steps[-1].merge != "whole":
        steps.append(Step([], "whole"))  # drain what the dead merge left
    return steps


def view(model: MergeModel) -> dict[str, tuple[int, str, str]]:
    """The destination as a history would have it: claim -> (time, event, status); the sequence number of
    the copy that got there is left out."""
    return {claim: (order[0], event, status) for claim, (order, event, status) in model.destination.items()}


def expected(changes: list[Row]) -> dict[str, tuple[int, str, str]]:
    return {claim: (c.micros, c.event, c.status) for claim, c in last_change_wins(changes).items()}
