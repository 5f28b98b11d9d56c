"""The sensor that waits for records in the Kinesis stream after the stored checkpoints.

It only looks: it never consumes a record or moves a checkpoint. A run that finds nothing within its
timeout ends as *skipped* (``soft_fail``), not failed: an idle stream is not an incident.

Deferrable (by default when Airflow's ``operators.default_deferrable`` is on; the ``claims_cdc`` DAG
sets it from ``CDC_SENSOR_MODE``): it reads the checkpoints from Snowflake once, looks once itself, and
then hands the wait, with those checkpoints, to :class:`~claims_cdc.triggers.KinesisRecordsTrigger` in
the triggerer and frees its worker slot. ``deferrable=False`` gives the classic ``poke`` or
``reschedule`` modes, which read the checkpoints on every poke.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from claims_cdc.settings import Settings
from claims_cdc.triggers import EVENT_STATUSES, KinesisRecordsTrigger, checkpoints_to_json

#: Extra time the triggerer gives the trigger beyond its own deadline before Airflow times it out itself.
DEFERRAL_GRACE = timedelta(seconds=60)
#: Stand-in passed to BaseSensorOperator for a templated timeout or poke interval: it validates numbers
#: when the DAG is parsed, before templates are rendered. The rendered value replaces it (``_resolve``).
_TEMPLATED_PLACEHOLDER = 0


class KinesisTriggerError(RuntimeError):
    """The trigger could not look at the stream (a RuntimeError, so ``soft_fail`` does not hide it)."""


class _FailureInTransit(Exception):
    """Carries an ``AirflowFailException`` out of ``poke`` or ``execute_complete``.

    BaseSensorOperator turns an ``AirflowFailException`` raised there into a *skip* when ``soft_fail`` is on
    (this sensor's default), which would hide a missing stream or a bad setting behind quietly skipped
    runs. A plain exception passes it untouched; :func:`_failures_delivered` raises the original again.
    """

    def __init__(self, failure: AirflowFailException):
        super().__init__(str(failure))
        self.failure = failure


@contextmanager
def _failures_carried() -> Iterator[None]:
    """Inside ``poke`` and ``execute_complete``: an ``AirflowFailException`` leaves as :class:`_FailureInTransit`."""
    try:
        yield
    except AirflowFailException as failure:
        raise _FailureInTransit(failure) from failure


@contextmanager
def _failures_delivered() -> Iterator[None]:
    """Around BaseSensorOperator's ``execute`` and ``resume_execution``: the carried failure, as itself."""
    try:
        yield
    except _FailureInTransit as carried:
        raise carried.failure from None


def _seconds(name: str, value: Any) -> float:
    """A rendered ``timeout`` or ``poke_interval`` as seconds; a value no retry can fix fails the task at once."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise AirflowFailException(f"{name}={value!r} is not a number of seconds") from None
    if not seconds >= 0:  # also false for NaN
        raise AirflowFailException(f"{name}={value!r} must be zero or more seconds")
    return seconds


class KinesisStreamRecordsSensor(BaseSensorOperator):
    """Succeeds when any shard of the stream has a record after its Snowflake checkpoint.

    :param settings: the pipeline's settings (checkpoint table and Snowflake names); the arguments below
        override the values they share with it.
    :param stream_name: the Kinesis stream (templated).
    :param aws_conn_id: the Airflow connection for AWS (templated).
    :param snowflake_conn_id: the Airflow connection for Snowflake, where the checkpoints are (templated).
    :param timeout: seconds to wait before the run ends as skipped, or a template such as
        ``"{{ params.sensor_timeout }}"`` (templated).
    :param poke_interval: seconds between two looks at the stream, or a template (templated).
    :param deferrable: wait in the triggerer instead of a worker slot (default: Airflow's
        ``operators.default_deferrable``).
    """

    template_fields: Sequence[str] = ("stream_name", "aws_conn_id", "snowflake_conn_id", "timeout", "poke_interval")
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        settings: Settings,
        stream_name: str | None = None,
        aws_conn_id: str | None = None,
        snowflake_conn_id: str | None = None,
        timeout: float | str = 600,
        poke_interval: float | str = 2.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("soft_fail", True)
        super().__init__(
            timeout=_TEMPLATED_PLACEHOLDER if isinstance(timeout, str) else timeout,
            poke_interval=_TEMPLATED_PLACEHOLDER if isinstance(poke_interval, str) else poke_interval,
            **kwargs,
        )
        # Kept as given until templates are rendered (BaseSensorOperator turned numbers into seconds).
        if isinstance(timeout, str):
            self.timeout = timeout
        if isinstance(poke_interval, str):
            self.poke_interval = poke_interval
        self.settings = settings
        self.stream_name = stream_name or settings.kinesis_stream
        self.aws_conn_id = aws_conn_id or settings.aws_conn_id
        self.snowflake_conn_id = snowflake_conn_id or settings.snowflake_conn_id
        self.deferrable = deferrable

    def _resolve(self) -> Settings:
        """After rendering: numbers for the timeout and poke interval, and the settings these arguments name."""
        self.timeout = _seconds("timeout", self.timeout)
        self.poke_interval = _seconds("poke_interval", self.poke_interval)
        return dataclasses.replace(self.settings, kinesis_stream=self.stream_name, aws_conn_id=self.aws_conn_id,
                                   snowflake_conn_id=self.snowflake_conn_id)

    def execute(self, context: Any) -> Any:
        settings = self._resolve()
        if not self.deferrable:
            with _failures_delivered():  # from poke, past soft_fail
                return super().execute(context)
        from claims_cdc.pipeline import stored_checkpoints, stream_has_records

        # An AirflowFailException raised here (a missing stream, a bad setting) fails the task as it is.
        checkpoints = stored_checkpoints(settings)  # once: the trigger gets them and never reads Snowflake
        if stream_has_records(settings, checkpoints):
            self.log.info("records are waiting after the checkpoints; no need to defer")
            return None
        self.defer(
            trigger=KinesisRecordsTrigger(
                stream_name=self.stream_name,
                checkpoints=checkpoints_to_json(checkpoints),
                deadline=time.time() + self.timeout,
                aws_conn_id=self.aws_conn_id,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        with _failures_delivered():  # from execute_complete, past soft_fail
            return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        with _failures_carried():
            self._resolve()
        if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
            # Not an event this trigger fires: fail (and retry) rather than guess.
            shape = sorted(event) if isinstance(event, dict) else type(event).__name__
            raise KinesisTriggerError(f"the trigger returned an unexpected event ({shape})")
        looks = event.get("looks")
        if event["status"] == "records":
            self.log.info("records found by the trigger after %s look(s)", looks)
            return
        if event["status"] == "timeout":
            message = f"no records within {self.timeout:.0f}s ({looks} looks)"
            # Logged here: BaseSensorOperator.resume_execution replaces a skip's message with its own.
            self.log.info("%s; the run ends as %s", message, "skipped" if self.soft_fail else "failed")
            if self.soft_fail:
                raise AirflowSkipException(message)
            from airflow.sdk.exceptions import AirflowSensorTimeout

            raise AirflowSensorTimeout(message)
        if event.get("retry") is False:  # the trigger knows no retry can fix it (the stream does not exist)
            with _failures_carried():
                raise AirflowFailException(f"the trigger could not look at the stream: {event.get('error')}")
        raise KinesisTriggerError(f"the trigger could not look at the stream: {event.get('error')}")

    def poke(self, context: Any) -> bool:
        from claims_cdc.pipeline import stream_has_records

        with _failures_carried():
            return stream_has_records(self._resolve())
