"""The sensor that waits for records in the Kinesis stream after the stored checkpoints.

It only looks: it never consumes a record or moves a checkpoint. A run that finds nothing within its
timeout ends as *skipped* (``soft_fail``), not failed: an idle stream is not an incident.

Deferrable by default: after one look of its own it hands the wait to
:class:`~claims_cdc.triggers.KinesisRecordsTrigger` in the triggerer and frees its worker slot.
``deferrable=False`` gives the classic ``poke`` or ``reschedule`` modes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from claims_cdc.settings import load_settings
from claims_cdc.triggers import KinesisRecordsTrigger

#: Extra time the triggerer gives the trigger beyond its own deadline before Airflow times it out itself.
DEFERRAL_GRACE = timedelta(seconds=60)


class KinesisTriggerError(RuntimeError):
    """The trigger could not look at the stream (a RuntimeError, so ``soft_fail`` does not hide it)."""


class KinesisStreamRecordsSensor(BaseSensorOperator):
    """Succeeds when any shard of the stream has a record after its Snowflake checkpoint.

    :param deferrable: wait in the triggerer (default) instead of in a worker slot.
    :param timeout_param: name of the DAG Param that, when set, overrides ``timeout`` (seconds) for a run.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#ff9900"

    def __init__(self, *, deferrable: bool = True, timeout_param: str | None = "sensor_timeout",
                 **kwargs: Any) -> None:
        kwargs.setdefault("soft_fail", True)
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.timeout_param = timeout_param

    def _apply_timeout_param(self, context: Any) -> None:
        """The run's Param wins over the operator's default (also on resume, which builds a new instance)."""
        params = context.get("params") or {}
        if self.timeout_param and params.get(self.timeout_param) is not None:
            self.timeout = float(params[self.timeout_param])

    def execute(self, context: Any) -> Any:
        self._apply_timeout_param(context)
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            self.log.info("records are waiting after the checkpoints; no need to defer")
            return None
        self.defer(
            trigger=KinesisRecordsTrigger(poke_interval=self.poke_interval, deadline=time.time() + self.timeout),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        self._apply_timeout_param(context)
        status = (event or {}).get("status")
        looks = (event or {}).get("looks")
        if status == "records":
            self.log.info("records found by the trigger after %s look(s)", looks)
            return
        if status == "timeout":
            message = f"no records within {self.timeout:.0f}s ({looks} looks)"
            # Logged here: BaseSensorOperator.resume_execution replaces a skip's message with its own.
            self.log.info("%s; the run ends as %s", message, "skipped" if self.soft_fail else "failed")
            if self.soft_fail:
                raise AirflowSkipException(message)
            from airflow.sdk.exceptions import AirflowSensorTimeout

            raise AirflowSensorTimeout(message)
        raise KinesisTriggerError(f"the trigger could not look at the stream: {(event or {}).get('error', event)}")

    def poke(self, context: Any) -> bool:
        from claims_cdc.pipeline import stream_has_records

        return stream_has_records(load_settings())
