"""The seed's claims generator (``python3 ingest_med_claims.py 20``) as a command-line tool.

    python -m claims_cdc_dev.generator ingest 20           # write 20 new claims
    python -m claims_cdc_dev.generator set-status --from "In Review" --to Rejected   # change one claim
    python -m claims_cdc_dev.generator delete CLAIM_ID     # delete one claim

Items carry realistic *fake* values (Faker). Writes go through the Amazon provider's DynamoDBHook, so the
tool reaches moto or AWS depending on the ``aws_default`` connection. Prints claim ids and counts only.
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

CLAIM_STATUSES = ("Submitted", "In Review", "Approved", "Rejected", "Paid")
PAYMENT_STATUSES = ("Pending", "Processing", "Paid", "Denied")
PLANS = ("Gold PPO", "Silver HMO", "Bronze EPO", "Platinum PPO", "Medicare Advantage")
PAYERS = (("Aetna", "60054"), ("Cigna", "62308"), ("UnitedHealthcare", "87726"), ("Humana", "61101"),
          ("Blue Cross Blue Shield", "00590"))
PROCEDURES = (("99213", "Office visit, established patient"), ("80053", "Comprehensive metabolic panel"),
              ("71046", "Chest X-ray, 2 views"), ("93000", "Electrocardiogram"), ("36415", "Venipuncture"),
              ("97110", "Therapeutic exercise"))
DIAGNOSES = ("E11.9", "I10", "J06.9", "M54.5", "R51.9", "Z00.00", "K21.9", "F41.1")


def make_claim(fake: Any, rng: random.Random, status: str | None = None) -> dict[str, Any]:
    """One claim item in plain Python (Decimal for numbers), shaped as the seed's claims are."""
    service = fake.date_between(start_date="-120d", end_date="-2d")
    procedures = [
        {"code": code, "description": desc, "charge": Decimal(str(round(rng.uniform(40, 900), 2)))}
        for code, desc in rng.sample(PROCEDURES, rng.randint(1, 3))
    ]
    payer_name, payer_id = rng.choice(PAYERS)
    created = datetime.now(UTC).replace(tzinfo=None)
    return {
        "claim_id": f"CLM-{uuid.UUID(int=rng.getrandbits(128)).hex[:12].upper()}",
        "memberId": f"MBR{rng.randint(10_000_000, 99_999_999)}",
        "insurancePlan": rng.choice(PLANS),
        "claimStatus": status or rng.choice(CLAIM_STATUSES),
        "paymentStatus": rng.choice(PAYMENT_STATUSES),
        "totalCharge": sum(p["charge"] for p in procedures),
        "dateOfService": service.isoformat(),
        "billSubmitDate": (service + timedelta(days=rng.randint(1, 14))).isoformat(),
        "createdTimeStamp": created.isoformat(timespec="microseconds"),
        "diagnosisCodes": rng.sample(DIAGNOSES, rng.randint(1, 3)),
        "procedureDetails": procedures,
        "patient": {
            "firstName": fake.first_name(),
            "lastName": fake.last_name(),
            "gender": rng.choice("MF"),
            "dob": fake.date_of_birth(minimum_age=1, maximum_age=95).isoformat(),
            "phone": fake.numerify("###-###-####"),
            "email": fake.email(),
            "address": _address(fake, rng),
        },
        "provider": {
            "name": f"{fake.last_name()} {rng.choice(['Medical Group', 'Clinic', 'Health Partners', 'Hospital'])}",
            "npi": str(rng.randint(1_000_000_000, 1_999_999_999)),
            "address": _address(fake, rng),
        },
        "payer": {"name": payer_name, "id": payer_id, "contactNumber": fake.numerify("1-800-###-####")},
    }


def _address(fake: Any, rng: random.Random) -> dict[str, Any]:
    return {
        "street": fake.street_address(),
        "city": fake.city(),
        "state": fake.state_abbr(),
        "zip": Decimal(rng.randint(10_000, 99_999)),
    }


def claims_table(aws_conn_id: str, table_name: str) -> Any:
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

    return DynamoDBHook(aws_conn_id=aws_conn_id).conn.Table(table_name)


def ingest(table: Any, count: int, seed: int | None = None) -> list[str]:
    """Write ``count`` new claims; every status appears once ``count`` >= 5. Returns their ids."""
    from faker import Faker

    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(rng.randint(0, 2**31))
    statuses = [CLAIM_STATUSES[i % len(CLAIM_STATUSES)] for i in range(count)]
    rng.shuffle(statuses)
    ids = []
    with table.batch_writer() as batch:
        for status in statuses:
            claim = make_claim(fake, rng, status)
            batch.put_item(Item=claim)
            ids.append(claim["claim_id"])
    return ids


def set_status(table: Any, from_status: str, to_status: str, claim_id: str | None = None) -> str:
    """Change one claim's status (the given one, or any whose status is ``from_status``)."""
    if claim_id is None:
        items = _scan(table)
        matching = sorted(i["claim_id"] for i in items if i.get("claimStatus") == from_status)
        if not matching:
            raise SystemExit(f"no claim has status {from_status!r}")
        claim_id = matching[0]
    table.update_item(
        Key={"claim_id": claim_id},
        UpdateExpression="SET claimStatus = :s",
        ExpressionAttributeValues={":s": to_status},
    )
    return claim_id


def delete(table: Any, claim_id: str) -> None:
    table.delete_item(Key={"claim_id": claim_id})


def _scan(table: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write fake insurance claims to DynamoDB.")
    parser.add_argument("--aws-conn-id", default="aws_default")
    parser.add_argument("--table", default=None, help="default: CDC_DYNAMODB_TABLE or InsuranceClaims")
    sub = parser.add_subparsers(dest="command", required=True)
    p_ingest = sub.add_parser("ingest", help="write N new claims")
    p_ingest.add_argument("count", type=int)
    p_ingest.add_argument("--seed", type=int, default=None)
    p_status = sub.add_parser("set-status", help="change one claim's status")
    p_status.add_argument("--claim-id")
    p_status.add_argument("--from", dest="from_status", default="In Review", choices=CLAIM_STATUSES)
    p_status.add_argument("--to", dest="to_status", default="Rejected", choices=CLAIM_STATUSES)
    p_delete = sub.add_parser("delete", help="delete one claim")
    p_delete.add_argument("claim_id")
    args = parser.parse_args(argv)

    import os

    table = claims_table(args.aws_conn_id, args.table or os.getenv("CDC_DYNAMODB_TABLE") or "InsuranceClaims")
    if args.command == "ingest":
        if args.count < 1:
            parser.error("count must be at least 1")
        ids = ingest(table, args.count, args.seed)
        print(f"ingested {len(ids)} claims")
    elif args.command == "set-status":
        claim_id = set_status(table, args.from_status, args.to_status, args.claim_id)
        print(f"claim {claim_id}: status -> {args.to_status}")
    else:
        delete(table, args.claim_id)
        print(f"claim {args.claim_id} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
