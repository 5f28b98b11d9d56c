"""A catalogue of what a hostile or buggy producer can put on a shard, shared by the unit tests of the
transform (tests/unit/test_transform_poison.py) and the end-to-end run (tests/e2e/test_poison_records.py).

Each *bad* kind is a function of (claim id, change time in microseconds) returning the record's bytes, with
the reason it must be dead-lettered for (a substring: reasons name the attribute and the rule). Each
*accepted* kind is unusual but valid: it must land exactly, with the values listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOUR_MICROS = 3_600_000_000


def claim_item(claim_id: str, status: str = "Submitted") -> dict[str, Any]:
    """A complete claim as DynamoDB JSON: every mapped attribute, nested as the seed's generator writes it."""
    return {
        "claim_id": {"S": claim_id},
        "memberId": {"S": "MBR00001"},
        "insurancePlan": {"S": "PPO Gold"},
        "claimStatus": {"S": status},
        "paymentStatus": {"S": "Pending"},
        "totalCharge": {"N": "141.22"},
        "dateOfService": {"S": "2026-09-30"},
        "billSubmitDate": {"S": "2026-10-01"},
        "createdTimeStamp": {"S": "2026-11-24T21:17:55.171430"},
        "diagnosisCodes": {"L": [{"S": "R51.9"}]},
        "procedureDetails": {"L": [{"M": {"code": {"S": "36415"}, "charge": {"N": "25.5"}}}]},
        "patient": {"M": {
            "firstName": {"S": "Ada"}, "lastName": {"S": "Lovelace"}, "gender": {"S": "F"},
            "dob": {"S": "1980-01-01"}, "phone": {"S": "555-0100"}, "email": {"S": "ada@example.com"},
            "address": {"M": {"street": {"S": "1 Main St"}, "city": {"S": "Springfield"},
                              "state": {"S": "IL"}, "zip": {"N": "62701"}}},
        }},
        "provider": {"M": {
            "name": {"S": "General Clinic"}, "npi": {"S": "1234567890"},
            "address": {"M": {"street": {"S": "2 Oak Ave"}, "city": {"S": "Springfield"},
                              "state": {"S": "IL"}, "zip": {"N": "62702"}}},
        }},
        "payer": {"M": {"name": {"S": "Acme Health"}, "id": {"S": "PAY-1"}, "contactNumber": {"S": "555-0199"}}},
    }


def change(claim_id: str, micros: int, event: str = "INSERT", event_id: str | None = None,
           item: dict[str, Any] | None = None) -> dict[str, Any]:
    """A record exactly as Kinesis Data Streams for DynamoDB writes it."""
    item = item if item is not None else claim_item(claim_id)
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": micros, "Keys": {"claim_id": {"S": claim_id}},
                                "SizeBytes": 100}
    if event == "REMOVE":
        dynamodb["OldImage"] = item
    else:
        dynamodb["NewImage"] = item
    return {"awsRegion": "us-east-1", "eventID": event_id or f"{claim_id}-{event}-{micros}", "eventName": event,
            "userIdentity": None, "recordFormat": "application/json", "tableName": "InsuranceClaims",
            "dynamodb": dynamodb, "eventSource": "aws:dynamodb"}


def encode(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def _with(path: list[str], value: Any) -> Callable[[str, int], bytes]:
    """A change whose attribute at ``path`` (through maps: 'patient', 'address', 'zip') is ``value``."""
    def build(claim_id: str, micros: int) -> bytes:
        doc = change(claim_id, micros)
        node = doc["dynamodb"]["NewImage"]
        for name in path[:-1]:
            node = node[name]["M"]
        node[path[-1]] = value  # shared, never mutated (deepcopy would recurse too deep on the nested kind)
        return encode(doc)
    return build


def _envelope(mutate: Callable[[dict[str, Any], int], None]) -> Callable[[str, int], bytes]:
    def build(claim_id: str, micros: int) -> bytes:
        doc = change(claim_id, micros)
        mutate(doc, micros)
        return encode(doc)
    return build


def _nested_maps(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "leaf"}
    for _ in range(depth):
        value = {"M": {"deeper": value}}
    return value


@dataclass(frozen=True)
class Bad:
    name: str
    build: Callable[[str, int], bytes]
    reason: str


@dataclass(frozen=True)
class Accepted:
    name: str
    build: Callable[[str, int], bytes]
    #: Destination columns (lower case, as the server returns them) -> the exact value expected there.
    expect: dict[str, Any]


def _set(key: str, value: Any) -> Callable[[dict[str, Any], int], None]:
    def mutate(doc: dict[str, Any], _micros: int) -> None:
        doc["dynamodb"][key] = value
    return mutate


def _time(shift: Callable[[int], Any]) -> Callable[[dict[str, Any], int], None]:
    def mutate(doc: dict[str, Any], micros: int) -> None:
        doc["dynamodb"]["ApproximateCreationDateTime"] = shift(micros)
    return mutate


BAD: list[Bad] = [
    Bad("not_json", lambda c, t: b"{not json", "record data is not JSON"),
    Bad("not_utf8", lambda c, t: b"\xff\xfe\x00garbage", "record data is not JSON"),
    Bad("json_array", lambda c, t: b"[1, 2, 3]", "not a JSON object"),
    Bad("json_scalar", lambda c, t: b"42", "not a JSON object"),
    Bad("json_nested_too_deep_to_decode", lambda c, t: b"[" * 100_000 + b"]" * 100_000, "record data"),
    Bad("event_name_missing", _envelope(lambda d, t: d.pop("eventName")), "eventName is missing"),
    Bad("event_name_unknown", _envelope(lambda d, t: d.update(eventName="UPSERT")), "eventName is missing"),
    Bad("dynamodb_missing", _envelope(lambda d, t: d.pop("dynamodb")), "the dynamodb object is missing"),
    Bad("dynamodb_not_an_object", _envelope(lambda d, t: d.update(dynamodb="x")), "the dynamodb object is missing"),
    Bad("keys_missing", _envelope(lambda d, t: d["dynamodb"].pop("Keys")), "dynamodb.Keys lacks claim_id"),
    Bad("key_of_type_n", _envelope(_set("Keys", {"claim_id": {"N": "12"}})), "not of type S, the table's key type"),
    Bad("key_empty", _envelope(_set("Keys", {"claim_id": {"S": " "}})), "claim_id is empty"),
    Bad("key_differs_from_image", _envelope(_set("Keys", {"claim_id": {"S": "OTHER-CLAIM"}})),
        "differs from dynamodb.Keys"),
    Bad("time_missing", _envelope(lambda d, t: d["dynamodb"].pop("ApproximateCreationDateTime")), "not a number"),
    Bad("time_not_a_number", _envelope(_time(lambda t: "soon")), "not a number"),
    Bad("time_bool", _envelope(_time(lambda t: True)), "not a number"),
    Bad("time_nan", _envelope(_time(lambda t: "NaN")), "not a positive number"),
    Bad("time_in_seconds", _envelope(_time(lambda t: t // 1_000_000)), "not plausible"),
    Bad("time_in_nanoseconds", _envelope(_time(lambda t: t * 1000)), "not plausible"),
    Bad("time_a_year_ahead", _envelope(_time(lambda t: t + 365 * 24 * HOUR_MICROS)), "not plausible"),
    Bad("time_older_than_retention", _envelope(_time(lambda t: t - 30 * 24 * HOUR_MICROS)), "not plausible"),
    Bad("insert_without_new_image", _envelope(lambda d, t: d["dynamodb"].pop("NewImage")), "without NewImage"),
    Bad("new_image_not_an_object", _envelope(_set("NewImage", ["x"])), "dynamodb.NewImage is not an object"),
    Bad("map_descriptor_holding_text", _with(["patient"], {"M": "x"}), "attribute patient: content does not match"),
    Bad("list_descriptor_holding_a_number", _with(["diagnosisCodes"], {"L": 5}), "attribute diagnosisCodes: content"),
    Bad("unknown_type_tag", _with(["memberId"], {"X": "MBR1"}), "attribute memberId: unknown DynamoDB type tag"),
    Bad("two_type_tags", _with(["memberId"], {"S": "a", "N": "1"}), "attribute memberId: not a DynamoDB JSON value"),
    Bad("bare_value_without_tag", _with(["memberId"], "MBR1"), "attribute memberId: not a DynamoDB JSON value"),
    Bad("snan_inside_a_list", _with(["diagnosisCodes"], {"L": [{"N": "sNaN"}]}), "diagnosisCodes[0]: N value"),
    Bad("nan_charge", _with(["totalCharge"], {"N": "NaN"}), "attribute totalCharge: N value is not a finite"),
    Bad("infinite_charge", _with(["totalCharge"], {"N": "Infinity"}), "attribute totalCharge: N value is not"),
    Bad("number_with_39_digits", _with(["totalCharge"], {"N": "1" * 39}), "more than DynamoDB's 38"),
    Bad("number_beyond_dynamodb_range", _with(["totalCharge"], {"N": "1E+200"}), "outside DynamoDB's range"),
    Bad("maps_nested_hundreds_deep", _with(["extra"], _nested_maps(300)), "nests deeper than DynamoDB's 32"),
    Bad("zip_overflows_integer", _with(["patient", "address", "zip"], {"N": "1e40"}), "outside INTEGER's range"),
    Bad("zip_not_whole", _with(["patient", "address", "zip"], {"N": "62701.5"}), "column patientZip: not a whole"),
    Bad("zip_bool", _with(["patient", "address", "zip"], {"BOOL": True}), "column patientZip: a BOOL is not"),
    Bad("zip_text", _with(["patient", "address", "zip"], {"S": "six-two"}), "column patientZip: not a number"),
    Bad("zip_a_map", _with(["patient", "address", "zip"], {"M": {"code": {"N": "1"}}}),
        "attribute patient.address.zip: a map where its column expects a value"),
    Bad("charge_bool", _with(["totalCharge"], {"BOOL": False}), "column totalCharge: a BOOL is not a number"),
    Bad("charge_a_list", _with(["totalCharge"], {"L": [{"N": "1"}]}), "column totalCharge: a list is not"),
    Bad("timestamp_unparseable", _with(["createdTimeStamp"], {"S": "yesterday"}), "not an ISO-8601 timestamp"),
    Bad("timestamp_a_number", _with(["createdTimeStamp"], {"N": "1700000000"}), "is not an ISO-8601 timestamp"),
    Bad("gender_too_long", _with(["patient", "gender"], {"S": "Female"}), "column patientGender: longer than 1"),
    Bad("null_descriptor_false", _with(["memberId"], {"NULL": False}), "attribute memberId: content does not match"),
    Bad("bool_descriptor_text", _with(["memberId"], {"BOOL": "yes"}), "attribute memberId: content does not match"),
    Bad("string_set_with_a_number", _with(["diagnosisCodes"], {"SS": ["A", 1]}), "attribute diagnosisCodes: content"),
]

ACCEPTED: list[Accepted] = [
    Accepted("timestamp_with_offset_is_stored_in_utc",
             _with(["createdTimeStamp"], {"S": "2026-11-24T21:17:55.171430+02:00"}),
             {"createdtimestamp": "2026-11-24 19:17:55.171430"}),
    Accepted("unknown_attribute_is_kept_in_the_history", _with(["loyaltyTier"], {"S": "Platinum"}),
             {"claimstatus": "Submitted"}),
    Accepted("exponent_number", _with(["totalCharge"], {"N": "1.5E2"}), {"totalcharge": 150.0}),
    Accepted("list_numbers_kept_exactly",
             _with(["procedureDetails"], {"L": [{"M": {"charge": {"N": "0.1234567890123456789"}}}]}),
             {"proceduredetails": '[{"charge":0.1234567890123456789}]'}),
    Accepted("time_in_milliseconds", _envelope(_time(lambda t: t // 1000)), {"claimstatus": "Submitted"}),
    Accepted("null_attribute_is_null", _with(["memberId"], {"NULL": True}), {"memberid": None}),
]
