"""Every kind of poison in tests/poison.py is dead-lettered with its reason, never quoting the record; every
unusual-but-valid kind becomes the exact row. (The same catalogue runs through the DAG in tests/e2e.)"""

from __future__ import annotations

import base64
import json

import pytest

from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR
from claims_cdc.transform import SourceRecord, TimeRules, transform_records
from poison import ACCEPTED, BAD, HOUR_MICROS, change, encode

MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
ARRIVAL = 1_795_555_075_257_000  # microseconds: when Kinesis received the records
CHANGED = ARRIVAL - 2_000_000  # the changes were made two seconds earlier
RULES = TimeRules(retention_hours=24, max_skew_seconds=60)


def transform_one(data: bytes):
    return transform_records([SourceRecord("shardId-000000000000", "7", data, ARRIVAL)], MAPPING, RULES)


def test_the_catalogue_has_at_least_thirty_kinds_of_poison():
    assert len({kind.name for kind in BAD}) == len(BAD) >= 30


@pytest.mark.parametrize("kind", BAD, ids=lambda k: k.name)
def test_poison_is_dead_lettered_with_its_reason_and_kept_whole(kind):
    data = kind.build("CLM-POISON", CHANGED)
    result = transform_one(data)
    assert result.rows == []
    [letter] = result.rejected
    assert kind.reason in letter["reason"]
    assert "CLM-POISON" not in letter["reason"]  # a reason names attributes and rules, never a value
    assert (letter["shard_id"], letter["sequence_number"], letter["arrival_micros"]) == ("shardId-000000000000",
                                                                                        "7", ARRIVAL)
    assert base64.b64decode(letter["payload_base64"]) == data  # the exact bytes, for a re-drive


@pytest.mark.parametrize("kind", ACCEPTED, ids=lambda k: k.name)
def test_unusual_but_valid_records_become_the_exact_row(kind):
    result = transform_one(kind.build("CLM-UNUSUAL", CHANGED))
    assert result.rejected == []
    [row] = result.rows
    got = {column.lower(): value for column, value in row.items()}
    for column, expected in kind.expect.items():
        if column == "createdtimestamp":
            expected = expected.replace(" ", "T")
        assert got[column] == expected, column


def test_unknown_attributes_are_named_and_the_images_kept_whole():
    data = next(k for k in ACCEPTED if k.name.startswith("unknown_attribute")).build("C", CHANGED)
    [row] = transform_one(data).rows
    assert json.loads(row["cdc_unmapped_attributes"]) == ["loyaltyTier"]
    image = json.loads(row["cdc_new_image"])  # JSON text, as the history's VARIANT column loads it
    assert image["loyaltyTier"] == {"S": "Platinum"}
    assert image == json.loads(data)["dynamodb"]["NewImage"]  # the whole image, every attribute
    assert "cdc_old_image" not in row  # an INSERT has no old image: NULL in the history, not JSON null


def test_creation_time_unit_is_chosen_by_the_arrival_time_not_by_magnitude_alone():
    from claims_cdc.transform import RejectedRecord, normalise_micros

    assert normalise_micros(CHANGED // 1000, ARRIVAL, RULES) == CHANGED // 1000 * 1000  # milliseconds
    assert normalise_micros(CHANGED, ARRIVAL, RULES) == CHANGED  # microseconds
    assert normalise_micros(ARRIVAL + 59_000_000, ARRIVAL, RULES) == ARRIVAL + 59_000_000  # within the skew
    with pytest.raises(RejectedRecord, match="not plausible"):
        normalise_micros(ARRIVAL + 61_000_000, ARRIVAL, RULES)
    with pytest.raises(RejectedRecord, match="not plausible"):
        normalise_micros(ARRIVAL - 25 * HOUR_MICROS, ARRIVAL, RULES)  # older than the stream can hold
    assert normalise_micros(ARRIVAL - 25 * HOUR_MICROS, ARRIVAL, TimeRules(retention_hours=48)) > 0


def _dotted_attribute(claim_id: str, micros: int) -> bytes:
    """A valid record that only the checked path takes: an attribute whose name holds a dot."""
    doc = change(claim_id, micros)
    doc["dynamodb"]["NewImage"]["loyalty.tier"] = {"S": "Gold"}
    return encode(doc)


@pytest.mark.parametrize(("function", "build"), [
    ("change_order", ACCEPTED[0].build),  # used by every path: the common record's, the general and checked
    ("flatten", _dotted_attribute),  # the checked path's alone
], ids=["every_path", "checked_path"])
def test_an_unforeseen_error_dead_letters_the_record_by_class_only(monkeypatch, function, build):
    from claims_cdc import transform

    def explode(*_args, **_kwargs):
        raise KeyError("CLM-SECRET-VALUE")

    assert transform_one(build("CLM-SECRET-VALUE", CHANGED)).rows  # the record is good
    monkeypatch.setattr(transform, function, explode)
    [letter] = transform_one(build("CLM-SECRET-VALUE", CHANGED)).rejected
    assert letter["reason"] == "unexpected KeyError while transforming; the record is kept whole"
