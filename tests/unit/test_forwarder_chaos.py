"""The local forwarder's chaos mode: duplicates and reordering, as Kinesis for DynamoDB may deliver."""

from __future__ import annotations

import json

import pytest

from claims_cdc_dev.forwarder import Chaos


def records(n):
    return [(json.dumps({"eventID": f"e{i}", "n": i}).encode(), f"k{i}") for i in range(n)]


def test_no_chaos_keeps_order_and_count():
    assert Chaos().arrange(records(5)) == records(5)


def test_duplicates_are_redeliveries_or_copies_with_a_new_event_id():
    chaos = Chaos(duplicate_rate=1.0, seed=3)
    out = chaos.arrange(records(20))
    assert len(out) == 40 and chaos.duplicated == 20
    docs = [json.loads(data) for data, _ in out]
    originals, copies = docs[0::2], docs[1::2]
    assert [c["n"] for c in copies] == [o["n"] for o in originals]
    same_id = sum(c["eventID"] == o["eventID"] for o, c in zip(originals, copies, strict=True))
    assert 0 < same_id < 20  # both kinds occur


def test_reordered_records_come_after_a_later_one_or_on_an_idle_poll():
    chaos = Chaos(reorder_rate=1.0)
    assert chaos.arrange(records(3)) == []
    assert chaos.arrange([]) == records(3)

    half = Chaos(reorder_rate=0.5, seed=1)
    out = half.arrange(records(30)) + half.arrange([])
    assert sorted(out) == sorted(records(30)) and out != records(30)


def test_rates_outside_zero_to_one_are_refused():
    with pytest.raises(SystemExit, match="duplicate rate 1.5"):
        Chaos(duplicate_rate=1.5)
