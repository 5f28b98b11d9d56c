"""AWS access, all through the Amazon provider's hooks (endpoint, region and credentials come from the
Airflow connection, so the same code reaches moto locally and AWS in production)."""

from __future__ import annotations

from typing import Any

from claims_cdc.settings import Settings


def kinesis_client(settings: Settings) -> Any:
    from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

    return KinesisHook(aws_conn_id=settings.aws_conn_id).get_conn()


def dynamodb_client(settings: Settings) -> Any:
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

    return DynamoDBHook(aws_conn_id=settings.aws_conn_id).conn.meta.client


def dynamodb_item_count(settings: Settings) -> int:
    """The table's exact item count: a paginated Scan with Select=COUNT (DescribeTable's is ~6 h stale)."""
    paginator = dynamodb_client(settings).get_paginator("scan")
    return sum(page["Count"] for page in paginator.paginate(TableName=settings.dynamodb_table, Select="COUNT"))
