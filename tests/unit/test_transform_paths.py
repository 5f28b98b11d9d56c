"""The transform's fast paths agree with its checked path, record for record; the content hash identifies a
change by what it says; the images are canonical JSON text.

``to_row`` takes a record of the mapping's common shape through msgspec's typed decoding, any other record
through the general fast path, and leaves whatever neither is sure of to the checked path (the rules
applied plainly, which names the reasons). Property tests draw records (good ones, unusual ones and
broken ones, around a complete claim) and check that ``to_row`` gives exactly what the checked path alone
gives: the same row, or the same rejection with the same reason.
"""

from __future__ import annotations

import copy
import json
import math
import random

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claims_cdc import load_files, transform
from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR
from claims_cdc.transform import RejectedRecord, SourceRecord, TimeRules, content_hash, to_row
from helpers import examples
from poison import ACCEPTED, BAD, change, claim_item, encode

MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
ARRIVAL = 1_795_555_075_257_000
CHANGED = ARRIVAL - 2_000_000
RULES = TimeRules(retention_hours=24, max_skew_seconds=60)
SEQUENCE = "49650000000000000000000000000000000000000000000000000007"

# --- Drawing records ---------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.sampled_from(["0", "-0", "0.0", "1.5E2", "1.5e-3", "007", "0.0000001", "0.000001", "0.0000000", "1e40",
                     "1" * 38, "1" * 39, "0." + "0" * 37 + "1", "NaN", "Infinity", "-Infinity", "sNaN", " 5 ",
                     "5\n", "62701.5", "-12.50", "+3", ".5", "5.", "1_000", "\u0661\u0662", "1E+200", "1E-200", "",
                     "12345678901234567890123456789012345678", "-99999999999999999999999999999999999999"]),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
TEXTS = st.one_of(
    st.sampled_from(["", " ", "F", "Female", "2026-11-24T21:17:55.171430", "2026-11-24 21:17:55.171430",
                     "2026-11-24T21:17:55.171430+02:00", "2026-11-24T21:17:55Z", "2026-02-30T00:00:00.000000",
                     "2026-11-24T21:17:55", "yesterday", "12", "1.5", "[1]", "\u00e9t\u00e9", "\U0001f600", "a\"b\\c",
                     "\x00\x1f\x7f"]),
    st.text(max_size=6),
)
NAMES = st.one_of(st.sampled_from(["claimStatus", "memberId", "zip", "city", "loyaltyTier", "a.b", "", "M", "S",
                                   "\u00e9", "x" * 70, "claim_id"]), st.text(max_size=4))


def _leaf() -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda s: {"S": s}, TEXTS),
        st.builds(lambda n: {"N": n}, NUMBERS),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.sampled_from([{"NULL": True}, {"NULL": False}, {"NULL": None}, {}, {"S": "a", "N": "1"}, {"X": "y"},
                         {"S": 5}, {"N": 5}, {"BOOL": "yes"}, {"M": "x"}, {"L": 5}, {"M": {}}, {"L": []}, "bare",
                         None, 12, {"SS": ["a", 1]}, {"B": "AAE="}, {"BS": ["AAE="]}]),
        st.builds(lambda v: {"SS": v}, st.lists(TEXTS, max_size=3)),
        st.builds(lambda v: {"NS": v}, st.lists(NUMBERS, max_size=3)),
    )


VALUES = st.recursive(_leaf(), lambda inner: st.one_of(
    st.builds(lambda m: {"M": m}, st.dictionaries(NAMES, inner, max_size=3)),
    st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
), max_leaves=8)

#: Where a drawn value may go: the mapped attributes (so that columns get odd values), maps on the way,
#: and attributes no column takes.
PATHS = [column.source.split(".") for column in MAPPING.columns if not column.source.startswith("@")] + [
    ["patient"], ["patient", "address"], ["provider", "address"], ["loyaltyTier"], ["patient", "nickname"],
    ["patient", "address", "zip", "plus4"], ["procedureDetails"], ["loyalty.tier"],
]
TIMES = [CHANGED, CHANGED // 1000, CHANGED * 1000, CHANGED // 1_000_000, ARRIVAL + 61_000_000, 0, -5, True, None,
         float(CHANGED), str(CHANGED), "soon", CHANGED + 0.5, 1e300]


@st.composite
def items(draw: st.DrawFn, claim_id: str) -> dict:
    """A claim as DynamoDB JSON, with up to three attributes replaced, removed or added."""
    item = copy.deepcopy(claim_item(claim_id, draw(st.sampled_from(["Submitted", "Paid", "\u00e9"]))))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(PATHS))
        node = item
        for name in path[:-1]:
            inner = node.get(name)
            if not (isinstance(inner, dict) and isinstance(inner.get("M"), dict)):
                break
            node = inner["M"]
        else:
            if draw(st.booleans()) and path[-1] in node:
                del node[path[-1]]
            else:
                node[path[-1]] = draw(VALUES)
    if draw(st.booleans()):  # the producer's attribute order is not the sorted one, nor always the same
        shuffled = list(item.items())
        random.Random(draw(st.integers(0, 99))).shuffle(shuffled)
        item = dict(shuffled)
    return item


@st.composite
def records(draw: st.DrawFn) -> SourceRecord:
    """A Kinesis record around one claim: mostly well formed, sometimes odd or broken in one place."""
    claim_id = draw(st.sampled_from(["CLM-1", "CLM-\u00e9", " ", "CLM-2"]))
    event = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE", "INSERT", "MODIFY", "UPSERT", None]))
    doc = change(claim_id, draw(st.sampled_from(TIMES)), event=event or "INSERT", item=draw(items(claim_id)))
    dynamodb = doc["dynamodb"]
    if event is None:
        del doc["eventName"]
    if event == "MODIFY" or draw(st.integers(0, 5)) == 0:
        dynamodb["OldImage"] = draw(items(claim_id))
    shape = draw(st.integers(0, 12))
    if shape == 1:
        dynamodb["Keys"] = {"claim_id": {"S": claim_id}, "version": {"N": "1"}}
    elif shape == 2:
        dynamodb["Keys"] = {"claim_id": draw(VALUES)}
    elif shape == 3:
        dynamodb["NewImage" if event != "REMOVE" else "OldImage"] = draw(st.sampled_from([None, [], "x", {}]))
    elif shape == 4:
        dynamodb.pop("NewImage" if event != "REMOVE" else "OldImage", None)
    elif shape == 5:
        doc["eventID"] = draw(st.sampled_from([None, "", 7, 7.5, True, ["x"]]))
    elif shape == 6:
        dynamodb["OldImage"] = draw(st.sampled_from([{"x": 1.5}, {"x": [1, 2**70]}, {"deep": {"a": {"b": {}}}}]))
    elif shape == 7:
        dynamodb["Keys"]["claim_id"] = {"S": "OTHER"}
    elif shape == 8:
        return SourceRecord("shardId-000000000000", SEQUENCE,
                            draw(st.sampled_from([b"{", b"[1]", b"null", b"\xff", b'{"eventName": NaN}'])), ARRIVAL)
    data = json.dumps(doc, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, None, 1])))
    return SourceRecord("shardId-000000000000", SEQUENCE, data.encode(), draw(st.sampled_from([ARRIVAL, None])))


@st.composite
def good_records(draw: st.DrawFn) -> SourceRecord:
    """A record that lands: a complete claim, attributes in any order, maybe an attribute no column takes."""
    def item(status: str) -> dict:
        item = claim_item("CLM-1", status)
        if draw(st.booleans()):
            item[draw(st.sampled_from(["loyaltyTier", "\u00e9", "notes"]))] = draw(
                st.sampled_from([{"S": draw(TEXTS)}, {"L": [{"N": "1.50"}, {"M": {"b": {"S": "x"}, "a": {"NULL": True}}}]},
                                 {"M": {"z": {"BOOL": True}, "y": {"SS": ["\u00e9", "a"]}}}]))
        shuffled = list(item.items())
        random.Random(draw(st.integers(0, 99))).shuffle(shuffled)
        return dict(shuffled)

    event = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    doc = change("CLM-1", CHANGED, event=event, item=item(draw(TEXTS)))
    if event == "MODIFY":
        doc["dynamodb"]["OldImage"] = item("Submitted")
    data = json.dumps(doc, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))
    return SourceRecord("shardId-000000000000", SEQUENCE, data.encode(), ARRIVAL)


# --- The paths ---------------------------------------------------------------------------------------

def outcome(record: SourceRecord) -> tuple[str, object]:
    try:
        return "row", to_row(record, MAPPING, RULES)
    except RejectedRecord as err:
        return "rejected", err.reason
    except Exception as err:  # noqa: BLE001 - compared by class, as transform_records dead-letters them
        return "unexpected", type(err).__name__


def checked_outcome(record: SourceRecord, monkeypatch: pytest.MonkeyPatch) -> tuple[str, object]:
    """The outcome with both fast paths switched off: the checked path's alone."""
    def not_sure(*_args: object) -> None:
        raise transform._Unusual

    with monkeypatch.context() as patch:
        patch.setattr(transform, "_common_row", lambda *_args: None)
        patch.setattr(transform, "_fast_change", not_sure)
        return outcome(record)


def same(a: object, b: object) -> bool:
    """Equal, NaN included (a row never holds NaN, but a difference should show as one)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@pytest.mark.second_process  # CPU-bound and server-less: make test runs it beside the deployment
@hypothesis.settings(max_examples=examples(15))
@given(record=st.one_of(records(), good_records()))
def test_fast_paths_give_exactly_the_checked_paths_row_or_rejection(record, monkeypatch):
    fast, checked = outcome(record), checked_outcome(record, monkeypatch)
    assert fast[0] == checked[0], (fast, checked)
    if fast[0] != "row":
        assert fast == checked
        return
    assert list(fast[1]) == list(checked[1])  # the same columns, in the same order
    for column, value in checked[1].items():
        assert same(fast[1][column], value), column


@hypothesis.settings(max_examples=examples(5))
@given(record=st.one_of(good_records(), records()))
def test_a_row_keeps_its_images_whole_as_canonical_json_text(record):
    kind, row = outcome(record)
    hypothesis.assume(kind == "row")
    sent = json.loads(record.data)["dynamodb"]
    for name, column in (("NewImage", "cdc_new_image"), ("OldImage", "cdc_old_image")):
        if sent.get(name) is None:
            assert column not in row
            continue
        text = row[column]
        assert isinstance(text, str)
        assert json.loads(text) == sent[name]
        # Canonical: compact, keys sorted at every level, non-ASCII as is (the history's VARIANT parses it).
        assert text == json.dumps(sent[name], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert row["cdc_content_hash"] == content_hash(row, MAPPING, keys=sent["Keys"])


def test_the_common_record_takes_the_common_path():
    """Not vacuous: a complete claim, as the stream sends it, is read off msgspec's typed decoding."""
    plan = transform._plan(MAPPING)
    for event in ("INSERT", "MODIFY", "REMOVE"):
        doc = change("CLM-1", CHANGED, event=event)
        if event == "MODIFY":
            doc["dynamodb"]["OldImage"] = claim_item("CLM-1", "Paid")
        record = SourceRecord("shardId-000000000000", SEQUENCE, encode(doc), ARRIVAL)
        row = transform._common_row(record, plan, RULES)
        assert row is not None, event
        assert row == transform._general_row(record, plan, RULES)


@pytest.mark.parametrize("kind", ACCEPTED, ids=lambda k: k.name)
def test_unusual_but_valid_records_give_the_checked_paths_row(kind, monkeypatch):
    record = SourceRecord("shardId-000000000000", "7", kind.build("CLM-UNUSUAL", CHANGED), ARRIVAL)
    assert outcome(record) == checked_outcome(record, monkeypatch)


@pytest.mark.parametrize("kind", BAD, ids=lambda k: k.name)
def test_poison_gets_the_checked_paths_reason(kind, monkeypatch):
    record = SourceRecord("shardId-000000000000", "7", kind.build("CLM-POISON", CHANGED), ARRIVAL)
    assert outcome(record) == checked_outcome(record, monkeypatch)


# --- The content hash --------------------------------------------------------------------------------

def _row(doc: dict, sequence: str = SEQUENCE, **dumps: object) -> dict:
    return to_row(SourceRecord("shardId-000000000000", sequence, json.dumps(doc, **dumps).encode(), ARRIVAL),
                  MAPPING, RULES)


def _modify(status: str = "Paid") -> dict:
    doc = change("CLM-1", CHANGED, event="MODIFY", item=claim_item("CLM-1", status))
    doc["dynamodb"]["OldImage"] = claim_item("CLM-1")
    return doc


def test_a_redelivery_has_the_same_hash_however_it_is_written():
    doc = _modify()
    first = _row(doc)
    reordered = copy.deepcopy(doc)
    for name in ("NewImage", "OldImage"):
        reordered["dynamodb"][name] = dict(reversed(list(reordered["dynamodb"][name].items())))
        reordered["dynamodb"][name]["patient"]["M"] = dict(reversed(list(doc["dynamodb"][name]["patient"]["M"].items())))
    copies = [
        _row(doc),  # the same record again
        _row({**doc, "eventID": "a-new-id"}, sequence="99"),  # re-sent under a new eventID, elsewhere on the shard
        _row(reordered),  # attributes in another order
        _row(doc, indent=2, ensure_ascii=False),  # other whitespace and escaping
        _row({**doc, "dynamodb": {**doc["dynamodb"],
                                  "ApproximateCreationDateTime": CHANGED // 1000}}) if CHANGED % 1000 == 0 else first,
    ]
    assert {row["cdc_content_hash"] for row in copies} == {first["cdc_content_hash"]}
    assert {row["cdc_new_image"] for row in copies} == {first["cdc_new_image"]}


def _leaf_paths(node: object, path: tuple = ()) -> list[tuple]:
    """Every (path, tag) to a scalar inside DynamoDB JSON."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaf_paths(value, (*path, key))]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in _leaf_paths(value, (*path, index))]
    return [path]


def _changed(doc: dict, path: tuple) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    value = node[path[-1]]
    if isinstance(value, str):  # another character at the end, keeping a timestamp or a number valid
        last = value[-1:]
        node[path[-1]] = value[:-1] + (str((int(last) + 1) % 10) if last.isdigit() else "y" if last == "x" else "x")
    else:
        node[path[-1]] = not value
    return doc


@pytest.mark.parametrize("image", ["NewImage", "OldImage"])
def test_any_change_to_any_value_of_an_image_changes_the_hash(image):
    doc = _modify()
    hashes = {_row(doc)["cdc_content_hash"]}
    paths = [path for path in _leaf_paths(doc["dynamodb"][image]) if path[0] != "claim_id"]
    for path in paths:
        hashes.add(_row(_changed(doc, ("dynamodb", image, *path)))["cdc_content_hash"])
    assert len(hashes) == len(paths) + 1


def test_event_time_key_and_image_presence_each_change_the_hash():
    doc = _modify()
    variants = [
        doc,
        {**doc, "eventName": "INSERT"},
        {**doc, "dynamodb": {**doc["dynamodb"], "ApproximateCreationDateTime": CHANGED + 1}},
        {**doc, "dynamodb": {k: v for k, v in doc["dynamodb"].items() if k != "OldImage"}},
        {**doc, "dynamodb": {**doc["dynamodb"], "OldImage": {}}},
        {**doc, "dynamodb": {**doc["dynamodb"], "OldImage": {"claim_id": {"S": "CLM-1"}}}},
    ]
    other_claim = change("CLM-2", CHANGED, event="MODIFY", item=claim_item("CLM-2", "Paid"))
    other_claim["dynamodb"]["OldImage"] = claim_item("CLM-2")
    hashes = [_row(variant)["cdc_content_hash"] for variant in [*variants, other_claim]]
    assert len(set(hashes)) == len(hashes)


def test_the_hash_of_a_row_is_the_hash_to_row_gave_it():
    row = _row(_modify())
    assert content_hash(row, MAPPING) == row["cdc_content_hash"]
    assert content_hash({**row, "claimStatus": "anything"}, MAPPING) == row["cdc_content_hash"]  # derived
    assert content_hash({**row, "cdc_new_image": row["cdc_old_image"]}, MAPPING) != row["cdc_content_hash"]


def test_images_as_text_load_into_parquet_as_they_are(tmp_path):
    import pyarrow.parquet as pq

    row = _row(_modify())
    path = load_files.write_rows(tmp_path, MAPPING, "batch-1", [row])
    table = pq.read_table(path).to_pylist()
    assert table[0]["cdc_new_image"] == row["cdc_new_image"]
    assert table[0]["cdc_old_image"] == row["cdc_old_image"]


# --- Pieces ------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=10,
)


@hypothesis.settings(max_examples=examples(10))
@given(value=JSON_VALUES, ensure_ascii=st.booleans(), cut=st.integers(0, 3))
def test_one_decode_decides_as_the_standard_library_does(value, ensure_ascii, cut):
    data = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    data = data[:len(data) - cut] if cut else data
    try:
        expected = json.loads(data)
    except ValueError:
        with pytest.raises(RejectedRecord, match="record data is not JSON"):
            transform._decode(data)
        return
    decoded, _by_msgspec = transform._decode(data)
    assert json.dumps(decoded) == json.dumps(expected)  # NaN equal to NaN, types and order kept


@hypothesis.settings(max_examples=examples(10))
@given(micros=st.integers(-(10**20), 10**21), sequence=st.one_of(
    st.integers(0, 10**70).map(str), st.text("0123456789", min_size=1, max_size=70), st.sampled_from(["1_0", " 7", "+7"])))
def test_change_order_is_the_same_with_or_without_int(micros, sequence):
    try:
        expected = f"{micros:020d}.{int(sequence):064d}"
    except ValueError:
        with pytest.raises(ValueError):
            transform.change_order(micros, sequence)
        return
    assert transform.change_order(micros, sequence) == expected
