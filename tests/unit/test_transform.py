"""The FlattenJson + Jolt step against real records of the Kinesis Data Streams for DynamoDB format.

The fixtures under tests/fixtures were captured from the local stack (moto's DynamoDB Stream through the
forwarder), i.e. exactly the JSON AWS documents for Kinesis Data Streams for DynamoDB.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR
from claims_cdc.transform import (
    RejectedRecord,
    SourceRecord,
    change_order,
    normalise_micros,
    to_row,
    transform_records,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"kinesis_{name}.json").read_text())


def record(doc: dict | bytes, sequence: str = "49650000000000000000000000000000000000000000000000000001") -> SourceRecord:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return SourceRecord("shardId-000000000000", sequence, data)


def test_insert_maps_every_seed_column_from_the_new_image():
    doc = fixture("insert")
    image = doc["dynamodb"]["NewImage"]
    row = to_row(record(doc), MAPPING)

    assert row["eventName"] == "INSERT"
    assert row["eventCreationUnixTime"] == str(doc["dynamodb"]["ApproximateCreationDateTime"])
    assert row["claimId"] == image["claim_id"]["S"]
    assert row["memberId"] == image["memberId"]["S"]
    assert row["insurancePlan"] == image["insurancePlan"]["S"]
    assert row["claimStatus"] == image["claimStatus"]["S"]
    assert row["paymentStatus"] == image["paymentStatus"]["S"]
    assert row["totalCharge"] == float(image["totalCharge"]["N"])
    assert row["dateOfService"] == image["dateOfService"]["S"]
    assert row["billSubmitDate"] == image["billSubmitDate"]["S"]
    assert row["createdTimeStamp"] == image["createdTimeStamp"]["S"]
    patient = image["patient"]["M"]
    assert row["patientFirstName"] == patient["firstName"]["S"]
    assert row["patientLastName"] == patient["lastName"]["S"]
    assert row["patientGender"] == patient["gender"]["S"]
    assert row["patientDOB"] == patient["dob"]["S"]
    assert row["patientPhone"] == patient["phone"]["S"]
    assert row["patientEmail"] == patient["email"]["S"]
    address = patient["address"]["M"]
    assert row["patientStreet"] == address["street"]["S"]
    assert row["patientCity"] == address["city"]["S"]
    assert row["patientState"] == address["state"]["S"]
    assert row["patientZip"] == int(address["zip"]["N"])
    provider = image["provider"]["M"]
    assert row["providerName"] == provider["name"]["S"]
    assert row["providerNPI"] == provider["npi"]["S"]
    assert row["providerZip"] == int(provider["address"]["M"]["zip"]["N"])
    assert row["providerCity"] == provider["address"]["M"]["city"]["S"]
    payer = image["payer"]["M"]
    assert row["payerName"] == payer["name"]["S"]
    assert row["payerId"] == payer["id"]["S"]
    assert row["payerContactNumber"] == payer["contactNumber"]["S"]


def test_lists_become_json_text():
    doc = fixture("insert")
    image = doc["dynamodb"]["NewImage"]
    row = to_row(record(doc), MAPPING)

    assert json.loads(row["diagnosisCodes"]) == [c["S"] for c in image["diagnosisCodes"]["L"]]
    procedures = json.loads(row["procedureDetails"])
    assert [p["code"] for p in procedures] == [p["M"]["code"]["S"] for p in image["procedureDetails"]["L"]]
    assert [p["charge"] for p in procedures] == [float(p["M"]["charge"]["N"]) for p in image["procedureDetails"]["L"]]


def test_modify_takes_the_new_image():
    doc = fixture("modify")
    row = to_row(record(doc), MAPPING)
    assert row["eventName"] == "MODIFY"
    assert row["claimStatus"] == doc["dynamodb"]["NewImage"]["claimStatus"]["S"]
    assert row["claimStatus"] != doc["dynamodb"]["OldImage"]["claimStatus"]["S"]


def test_remove_takes_the_old_image_so_history_shows_the_deleted_claim():
    doc = fixture("remove")
    assert "NewImage" not in doc["dynamodb"]
    row = to_row(record(doc), MAPPING)
    assert row["eventName"] == "REMOVE"
    assert row["claimId"] == doc["dynamodb"]["Keys"]["claim_id"]["S"]
    assert row["claimStatus"] == doc["dynamodb"]["OldImage"]["claimStatus"]["S"]


def test_remove_without_old_image_keeps_the_key():
    doc = fixture("remove")
    del doc["dynamodb"]["OldImage"]
    row = to_row(record(doc), MAPPING)
    assert row["claimId"] == doc["dynamodb"]["Keys"]["claim_id"]["S"]
    assert row["claimStatus"] is None


def test_pipeline_columns_carry_position_and_event_id():
    doc = fixture("insert")
    row = to_row(record(doc, sequence="42"), MAPPING)
    assert row["cdc_event_id"] == doc["eventID"]
    assert (row["cdc_shard_id"], row["cdc_sequence_number"]) == ("shardId-000000000000", "42")
    # The change's own time in microseconds, then the sequence number, zero-padded so text order is numeric.
    assert doc["dynamodb"]["ApproximateCreationDateTime"] == 1795555075257000
    assert row["cdc_change_order"] == "00001795555075257000." + "0" * 62 + "42"


def test_millisecond_and_microsecond_creation_times_normalise_to_microseconds():
    assert normalise_micros(1656613590471) == 1656613590471000
    assert normalise_micros(1656613590471123) == 1656613590471123
    doc = fixture("insert")
    micros = doc["dynamodb"]["ApproximateCreationDateTime"]
    doc["dynamodb"]["ApproximateCreationDateTime"] = micros // 1000
    assert to_row(record(doc), MAPPING)["eventCreationUnixTime"] == str(micros // 1000 * 1000)


def test_change_order_sorts_by_time_then_sequence_number_as_text():
    early = change_order(1_000_000, "9")
    late_same_time = change_order(1_000_000, "10")
    later = change_order(2_000_000, "1")
    assert early < late_same_time < later
    big = "49650000000000000000000000000000000000000000000000000009"
    assert change_order(1, big) < change_order(1, str(int(big) + 1))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"not json", "record data is not JSON"),
        (lambda d: b"[1, 2]", "record data is not a JSON object"),
        (lambda d: {**d, "eventName": "UPSERT"}, "eventName is missing or not INSERT, MODIFY or REMOVE"),
        (lambda d: {k: v for k, v in d.items() if k != "dynamodb"}, "the dynamodb object is missing"),
        (lambda d: {**d, "dynamodb": {**d["dynamodb"], "Keys": {}}}, "dynamodb.Keys lacks claim_id"),
        (lambda d: {**d, "dynamodb": {**d["dynamodb"], "ApproximateCreationDateTime": "soon"}},
         "dynamodb.ApproximateCreationDateTime is not a number"),
        (lambda d: {**d, "dynamodb": {k: v for k, v in d["dynamodb"].items() if k != "NewImage"}},
         "INSERT without NewImage: the stream must carry new images"),
    ],
)
def test_malformed_records_are_rejected_with_a_reason(mutate, reason):
    bad = mutate(fixture("insert"))
    with pytest.raises(RejectedRecord) as err:
        to_row(record(bad), MAPPING)
    assert err.value.reason == reason


def test_values_that_do_not_fit_their_column_are_rejected_without_quoting_them():
    doc = fixture("insert")
    doc["dynamodb"]["NewImage"]["patient"]["M"]["address"]["M"]["zip"] = {"S": "SECRET-ZIP"}
    with pytest.raises(RejectedRecord) as err:
        to_row(record(doc), MAPPING)
    assert err.value.reason == "column patientZip: not a number"
    assert "SECRET" not in str(err.value)


def test_a_bad_record_is_kept_with_its_payload_and_does_not_block_the_batch():
    good = record(fixture("insert"), sequence="1")
    bad = record(b"\x00garbage", sequence="2")
    also_good = record(fixture("modify"), sequence="3")
    result = transform_records([good, bad, also_good], MAPPING)
    assert [r["cdc_sequence_number"] for r in result.rows] == ["1", "3"]
    assert result.rejected == [
        {"shard_id": "shardId-000000000000", "sequence_number": "2", "reason": "record data is not JSON",
         "payload": "\x00garbage", "payload_base64": base64.b64encode(b"\x00garbage").decode(),
         "arrival_micros": None}
    ]


def test_a_copy_resent_with_a_new_event_id_has_the_same_content_hash():
    doc = fixture("modify")
    first = to_row(record(doc, sequence="1"), MAPPING)
    copy = to_row(record({**doc, "eventID": "resent-copy"}, sequence="9"), MAPPING)
    assert first["cdc_event_id"] != copy["cdc_event_id"]
    assert first["cdc_content_hash"] == copy["cdc_content_hash"]
    later = {**doc, "dynamodb": {**doc["dynamodb"], "ApproximateCreationDateTime": 1 + doc["dynamodb"]["ApproximateCreationDateTime"]}}
    assert to_row(record(later), MAPPING)["cdc_content_hash"] != first["cdc_content_hash"]
