"""The trigger behind the deferrable sensor: it waits in the triggerer, holding no worker slot.

It is handed each shard's position (read from the Snowflake checkpoints by the sensor, once, before it
defers) and only looks at Kinesis every ``poke_interval`` seconds, through the Amazon provider's
KinesisHook. So the triggerer needs the AWS connection and nothing else: no Snowflake connection, no
warehouse kept awake by a waiting run. It never consumes a record and never moves a checkpoint: the
run's tasks do that.

Events carry a status and counts, never record content:

- ``{"status": "records", "looks": n}``: a shard has a record after its checkpoint.
- ``{"status": "timeout", "looks": n}``: none by ``deadline``.
- ``{"status": "error", "error": ..., "looks": n}``: Kinesis failed; the sensor fails, so the task retries.
- ``{"status": "error", "error": ..., "retry": False, "looks": n}``: the stream does not exist; the sensor
  fails without retrying (no retry can fix that), with the message naming ``CDC_KINESIS_STREAM``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from claims_cdc.aws import kinesis_client
from claims_cdc.kinesis_reader import Checkpoint, StreamNotFound, has_records

#: The event statuses the trigger fires, and so the only ones the sensor accepts when it resumes.
EVENT_STATUSES = ("records", "timeout", "error")


def checkpoints_to_json(checkpoints: Mapping[str, Checkpoint]) -> dict[str, dict[str, Any]]:
    """What the trigger needs of each checkpoint (its position and whether the shard is retired), as JSON."""
    return {shard: {"sequence_number": c.sequence_number, "closed": c.closed} for shard, c in checkpoints.items()}


def checkpoints_from_json(doc: Mapping[str, Mapping[str, Any]]) -> dict[str, Checkpoint]:
    return {shard: Checkpoint(shard, c["sequence_number"], bool(c["closed"])) for shard, c in doc.items()}


class KinesisRecordsTrigger(BaseTrigger):
    """Fires once a shard of the stream has a record after the given checkpoints, or at ``deadline``.

    :param stream_name: the Kinesis stream to look at.
    :param checkpoints: each shard's stored position, as :func:`checkpoints_to_json` writes it.
    :param deadline: Unix time (seconds) at which to give up and fire ``timeout``.
    :param aws_conn_id: the Airflow connection for AWS (endpoint, region, credentials).
    :param poke_interval: seconds between two looks at Kinesis.
    """

    def __init__(
        self,
        *,
        stream_name: str,
        checkpoints: Mapping[str, Mapping[str, Any]],
        deadline: float,
        aws_conn_id: str | None = "aws_default",
        poke_interval: float = 2.0,
    ) -> None:
        super().__init__()
        self.stream_name = stream_name
        self.checkpoints = {shard: dict(c) for shard, c in checkpoints.items()}
        self.deadline = float(deadline)
        self.aws_conn_id = aws_conn_id
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "stream_name": self.stream_name,
                "checkpoints": self.checkpoints,
                "deadline": self.deadline,
                "aws_conn_id": self.aws_conn_id,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        looks = 0
        try:
            checkpoints = checkpoints_from_json(self.checkpoints)
            # Blocking work (boto3) runs in a thread: the triggerer's event loop is shared with every trigger.
            kinesis = await asyncio.to_thread(kinesis_client, self.aws_conn_id)
            self.log.info("waiting for records in %s after the checkpoints of %d shard(s)", self.stream_name,
                          len(checkpoints))
            while True:
                looks += 1
                if await asyncio.to_thread(has_records, kinesis, self.stream_name, checkpoints):
                    self.log.info("records found after %d look(s)", looks)
                    yield TriggerEvent({"status": "records", "looks": looks})
                    return
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    yield TriggerEvent({"status": "timeout", "looks": looks})
                    return
                await asyncio.sleep(min(self.poke_interval, remaining))
        except StreamNotFound as error:  # no retry can fix it: the sensor fails at once
            self.log.error("%s", error)
            yield TriggerEvent({"status": "error", "error": str(error), "retry": False, "looks": looks})
        except Exception as error:  # reported to the task, which fails and retries
            self.log.exception("looking for records failed")
            yield TriggerEvent({"status": "error", "error": f"{type(error).__name__}: {error}", "looks": looks})

