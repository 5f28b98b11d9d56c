"""The sensor that waits for records in the Kinesis stream after the stored checkpoints.

It only looks: it never consumes a record or moves a checkpoint. A run that finds nothing within its
timeout ends as *skipped* (``soft_fail``), not failed: an idle stream is not an incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator

from claims_cdc.settings import load_settings


class KinesisStreamRecordsSensor(BaseSensorOperator):
    """Succeeds when any shard of the stream has a record after its Snowflake checkpoint.

    :param timeout_param: name of the DAG Param that, when set, overrides ``timeout`` (seconds) for a run.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#ff9900"

    def __init__(self, *, timeout_param: str | None = "sensor_timeout", **kwargs: Any) -> None:
        kwargs.setdefault("soft_fail", True)
        super().__init__(**kwargs)
        self.timeout_param = timeout_param

    def execute(self, context: Any) -> Any:
        params = context.get("params") or {}
        if self.timeout_param and params.get(self.timeout_param) is not None:
            self.timeout = float(params[self.timeout_param])
        return super().execute(context)

    def poke(self, context: Any) -> bool:
        from claims_cdc.pipeline import stream_has_records

        return stream_has_records(load_settings())
