"""The trigger behind the deferrable sensor: it waits in the triggerer, holding no worker slot.

It reads each shard's position from the Snowflake checkpoints once, when it starts (again if the
triggerer restarts it), then only looks at Kinesis every ``poke_interval`` seconds. It never consumes a
record and never moves a checkpoint: the run's tasks do that. Polling Kinesis alone keeps a waiting run
from holding a Snowflake warehouse awake.

Events carry a status and counts, never record content:

- ``{"status": "records"}``: a shard has a record after its checkpoint.
- ``{"status": "timeout"}``: none within ``timeout`` seconds of the deferral.
- ``{"status": "error", "error": ...}``: Kinesis or Snowflake failed; the sensor fails, so the task retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from claims_cdc.settings import Settings, load_settings

if TYPE_CHECKING:
    from claims_cdc.kinesis_reader import Checkpoint


class KinesisRecordsTrigger(BaseTrigger):
    """Fires once a shard of the stream has a record after its stored checkpoint, or at ``deadline``.

    :param poke_interval: seconds between two looks at Kinesis.
    :param deadline: Unix time (seconds) at which to give up and fire ``timeout``.
    """

    def __init__(self, *, poke_interval: float, deadline: float) -> None:
        super().__init__()
        self.poke_interval = float(poke_interval)
        self.deadline = float(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"poke_interval": self.poke_interval, "deadline": self.deadline},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        looks = 0
        try:
            settings = load_settings()
            # Blocking work (imports, boto3, the Snowflake connector) runs in a thread: the triggerer's
            # event loop is shared with every other trigger.
            checkpoints = await asyncio.to_thread(_stored_checkpoints, settings)
            self.log.info("waiting for records after the checkpoints of %d shard(s)", len(checkpoints))
            while True:
                looks += 1
                if await asyncio.to_thread(_stream_has_records, settings, checkpoints):
                    self.log.info("records found after %d look(s)", looks)
                    yield TriggerEvent({"status": "records", "looks": looks})
                    return
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    yield TriggerEvent({"status": "timeout", "looks": looks})
                    return
                await asyncio.sleep(min(self.poke_interval, remaining))
        except Exception as error:  # reported to the task, which fails and retries
            self.log.exception("looking for records failed")
            yield TriggerEvent({"status": "error", "error": f"{type(error).__name__}: {error}", "looks": looks})


def _stored_checkpoints(settings: Settings) -> dict[str, Checkpoint]:
    from claims_cdc.pipeline import stored_checkpoints

    return stored_checkpoints(settings)


def _stream_has_records(settings: Settings, checkpoints: dict[str, Checkpoint]) -> bool:
    from claims_cdc.pipeline import stream_has_records

    return stream_has_records(settings, checkpoints)
