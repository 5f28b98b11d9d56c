"""AWS access, all through the Amazon provider's hooks (endpoint, region and credentials come from the
Airflow connection, so the same code reaches moto locally and AWS in production).

Clients take the connection id, not the settings, so that the trigger (which knows only its own
arguments) builds them the same way as the tasks.
"""

from __future__ import annotations

from typing import Any


def kinesis_client(aws_conn_id: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

    return KinesisHook(aws_conn_id=aws_conn_id).get_conn()


def dynamodb_client(aws_conn_id: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

    return DynamoDBHook(aws_conn_id=aws_conn_id).conn.meta.client


def dynamodb_json_client(aws_conn_id: str | None) -> Any:
    """A plain DynamoDB client, whose Scan and BatchGetItem answer in DynamoDB JSON (``{"S": ...}``).

    Platform quirk (tests/platform): :func:`dynamodb_client`, the provider's resource's ``meta.client``,
    carries the resource's (de)serialisers, so its Scan returns plain values instead; and DynamoDBHook, a
    resource hook, refuses ``get_client_type()``. The base hook with ``client_type="dynamodb"`` gives one.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="dynamodb").get_conn()


def s3_client(aws_conn_id: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


class TableNotFound(RuntimeError):
    """DynamoDB says the table does not exist (ResourceNotFoundException): no retry can fix that."""

    def __init__(self, table_name: str):
        super().__init__(
            f"CDC_DYNAMODB_TABLE: the DynamoDB table {table_name!r} does not exist in the AWS connection's "
            "account and region (ResourceNotFoundException); check the table name and the connection"
        )


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (``error.response["Error"]["Code"]``), else None."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def dynamodb_item_count(aws_conn_id: str | None, table_name: str) -> int:
    """The table's exact item count: a paginated Scan with Select=COUNT (DescribeTable's is ~6 h stale)."""
    paginator = dynamodb_client(aws_conn_id).get_paginator("scan")
    try:
        return sum(page["Count"] for page in paginator.paginate(TableName=table_name, Select="COUNT"))
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            raise TableNotFound(table_name) from error
        raise
