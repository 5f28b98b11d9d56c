"""Batch files: where a run's records wait between tasks, so that only references travel through XCom.

Paths are ``ObjectStoragePath``s under ``CDC_BATCH_ROOT`` (``file://`` or ``s3://``). The files hold claim
content (PHI): they are removed once their batch is merged into Snowflake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from claims_cdc.settings import Settings


def _path(uri: str, settings: Settings) -> Any:
    from airflow.sdk import ObjectStoragePath

    if uri.startswith("s3://"):
        return ObjectStoragePath(uri, conn_id=settings.aws_conn_id)
    return ObjectStoragePath(uri)


def batch_uri(settings: Settings, dag_run_id: str, batch_id: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", dag_run_id)
    return f"{settings.batch_root}/{safe_run}/{batch_id}"


def write_jsonl(settings: Settings, uri: str, docs: Iterable[dict[str, Any]]) -> int:
    path = _path(uri, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w") as out:
        for doc in docs:
            out.write(json.dumps(doc, separators=(",", ":")))
            out.write("\n")
            count += 1
    return count


def read_jsonl(settings: Settings, uri: str) -> Iterator[dict[str, Any]]:
    with _path(uri, settings).open("r") as source:
        for line in source:
            if line.strip():
                yield json.loads(line)


def remove_batch(settings: Settings, dag_run_id: str, batch_id: str) -> None:
    """Delete a batch's files; a no-op when they are already gone (retries)."""
    path = _path(batch_uri(settings, dag_run_id, batch_id), settings)
    if path.exists():
        path.rmdir(recursive=True)
    run_dir = path.parent
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()
