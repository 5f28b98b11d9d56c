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
