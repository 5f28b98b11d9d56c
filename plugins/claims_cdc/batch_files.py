"""Batch files: where a run's records wait between tasks, so that only references travel through XCom.

Layout: ``<CDC_BATCH_ROOT>/<dag run id>/<batch id>/{rows,rejected}/<shard id>.parquet``, ``file://`` or ``s3://``:
one file per shard and kind, written by that shard's task as it reads (:mod:`claims_cdc.load_files`).
The files hold claim content (PHI):

- on ``file://`` every directory is created 0700 and every file 0600, whatever the process umask;
- a run's merge removes its own batch; :func:`remove_finished` (the ``removed_batch_files`` task) removes
  the batches of earlier runs, failed or killed ones included, once their records are staged or superseded,
  and any batch older than ``CDC_BATCH_FILE_MAX_AGE_HOURS``.

A batch id starts with the UTC time of its plan (:func:`new_batch_id`), so a batch's age and order are
known from its name alone, on ``file://`` and ``s3://`` alike. Nothing here reads or logs a record's content;
log lines carry batch ids, paths and counts only.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from claims_cdc.settings import Settings

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
_TIME_FORMAT = "%Y%m%dT%H%M%S%f"
#: ``<UTC yyyymmddTHHMMSSffffff>-<uuid4 hex>``: text order is time order.
_BATCH_ID = re.compile(r"^(\d{8}T\d{12})-[0-9a-f]{32}$")
#: The ids written before batch ids carried their time (a bare uuid4 hex): aged by their files' mtime.
_LEGACY_BATCH_ID = re.compile(r"^[0-9a-f]{32}$")


#: The folder under the batch root where side batches (snapshot, replay, audit; claims_cdc.snapshot) keep
#: their own run folders. The live sweeper leaves it alone: a side batch is not superseded by a live one.
SIDE_DIR = "_side"


def new_batch_id(now: datetime | None = None) -> str:
    """A batch id that sorts by creation time: ``20261125T203600123456-<uuid4 hex>`` (UTC)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now.strftime(_TIME_FORMAT)}-{uuid.uuid4().hex}"


def batch_time(batch_id: str) -> datetime | None:
    """When the batch was planned (UTC), from its id; ``None`` for an id that carries no time."""
    match = _BATCH_ID.match(batch_id)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _disk_path(uri: str) -> Path | None:
    """The filesystem path of a ``file://`` URI; ``None`` for object storage."""
    return Path(uri[len("file://"):]) if uri.startswith("file://") else None


def _path(uri: str, settings: Settings) -> Any:
    from airflow.sdk import ObjectStoragePath

    if uri.startswith("s3://"):
        return ObjectStoragePath(uri, conn_id=settings.aws_conn_id)
    return ObjectStoragePath(uri)


def batch_uri(settings: Settings, dag_run_id: str, batch_id: str) -> str:
    return f"{settings.batch_root}/{_safe_run(dag_run_id)}/{batch_id}"


def relative_path(settings: Settings, uri: str) -> str:
    """A batch's folder under ``CDC_BATCH_ROOT`` (``<run folder>/<batch id>``): its path on an external stage
    whose URL is the batch root."""
    prefix = f"{settings.batch_root}/"
    if not uri.startswith(prefix):
        raise ValueError(f"batch {uri.rsplit('/', 1)[-1]} is not under CDC_BATCH_ROOT; an external stage cannot "
                         "read it")
    return uri[len(prefix):]


def _safe_run(dag_run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", dag_run_id)


def _private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents owner-only (0700), whatever the umask."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for created in reversed(missing):
        try:
            created.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not created.is_dir():
                raise
        os.chmod(created, DIR_MODE)
    # The run and batch directories are the pipeline's own: owner-only even when an earlier version made them.
    os.chmod(directory, DIR_MODE)


def _private_file(path: Path) -> BinaryIO:
    """Open ``path`` for writing, owner-only (0600) from its first byte; truncates a retry's leftover."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the umask can only clear bits; a file left by an earlier version may have more
    return os.fdopen(fd, "wb")


def shard_file(batch: str, kind: str, shard_id: str) -> str:
    """Where a shard's rows (``kind`` "rows") or dead letters ("rejected") of a batch are kept, as Parquet."""
    return f"{batch}/{kind}/{shard_id}.parquet"


def open_for_write(settings: Settings, uri: str) -> BinaryIO:
    """A binary file at ``uri`` (a batch's file), owner-only on ``file://`` along with its directories."""
    on_disk = _disk_path(uri)
    if on_disk is not None:
        batch_dir = on_disk.parent.parent
        for directory in (batch_dir.parent, batch_dir, on_disk.parent):
            _private_dirs(directory)
        return _private_file(on_disk)
    path = _path(uri, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


@contextmanager
def local_copy(settings: Settings, uri: str, kinds: Iterable[str] = ("rows", "rejected")) -> Iterator[Path]:
    """A batch's Parquet files in a local folder for PUT: the batch folder itself on ``file://``; from
    ``s3://``, a private (0700) temporary copy, removed afterwards."""
    on_disk = _disk_path(uri)
    if on_disk is not None:
        yield on_disk
        return
    folder = Path(tempfile.mkdtemp(prefix="claims-cdc-batch-"))
    try:
        for kind in kinds:
            source = _path(f"{uri}/{kind}", settings)
            if not source.exists():
                continue
            (folder / kind).mkdir(mode=DIR_MODE)
            for remote in source.iterdir():
                with remote.open("rb") as reader, _private_file(folder / kind / remote.name) as writer:
                    shutil.copyfileobj(reader, writer)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_file(settings: Settings, uri: str) -> None:
    """Delete one batch file; a no-op when it is not there."""
    path = _path(uri, settings)
    if path.exists():
        path.unlink()


def batch_exists(settings: Settings, uri: str) -> bool:
    return bool(_path(uri, settings).exists())


def remove_batch(settings: Settings, dag_run_id: str, batch_id: str) -> None:
    """Delete a batch's files; a no-op when they are already gone (retries)."""
    path = _path(batch_uri(settings, dag_run_id, batch_id), settings)
    if path.exists():
        path.rmdir(recursive=True)
    run_dir = path.parent
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()


@dataclass(frozen=True)
class StoredBatch:
    """One batch directory found under the batch root."""

    run_dir: str
    batch_id: str
    #: From the id; for a legacy id, the newest modification time of its files; ``None`` if unknown.
    created: datetime | None
    legacy: bool


def _mtime(path: Any) -> datetime | None:
    """The newest modification time under a legacy batch directory (only legacy ids need it)."""
    try:
        times = [child.stat().st_mtime for child in path.iterdir()] or [path.stat().st_mtime]
        return datetime.fromtimestamp(max(float(t) for t in times), UTC)
    except (OSError, AttributeError, TypeError, ValueError, KeyError):
        return None


def list_batches(settings: Settings) -> list[StoredBatch]:
    """Every batch directory under the batch root. Names that are no batch id are left out (and logged)."""
    root = _path(settings.batch_root, settings)
    if not root.exists():
        return []
    found = []
    for run_dir in root.iterdir():
        if not run_dir.is_dir() or run_dir.name == SIDE_DIR:
            continue
        for batch_dir in run_dir.iterdir():
            name = batch_dir.name
            created = batch_time(name)
            if created is not None:
                found.append(StoredBatch(run_dir.name, name, created, legacy=False))
            elif _LEGACY_BATCH_ID.match(name) and batch_dir.is_dir():
                found.append(StoredBatch(run_dir.name, name, _mtime(batch_dir), legacy=True))
            else:
                log.warning("batch files: left alone %s/%s (not a batch id)", run_dir.name, name)
    return sorted(found, key=lambda b: (b.created or datetime.max.replace(tzinfo=UTC), b.batch_id))


@dataclass(frozen=True)
class Removal:
    superseded: list[str]
    expired: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"superseded": len(self.superseded), "expired": len(self.expired)}


def remove_finished(settings: Settings, *, settled_before: datetime | None, now: datetime | None = None) -> Removal:
    """Remove the batches no run needs any more; return the ids removed.

    - **superseded**: a batch created before ``settled_before``. The caller passes a time by which every
      record read before it is staged: this run's batch time once its stage and merge succeeded (the run
      read from the committed checkpoints, so whatever an earlier batch held was staged, by that batch or
      by this one), or the run's start when its sensor found nothing after the checkpoints. Legacy ids
      carry no time and are left to the age rule.
    - **expired**: any batch, this run's included, older than ``CDC_BATCH_FILE_MAX_AGE_HOURS`` (by its id's
      time; a legacy id by its files' mtime; a legacy id whose age cannot be read is left alone).

    Only directories under this layout whose name is a batch id are touched; empty run directories go too.
    """
    now = now or datetime.now(UTC)
    max_age = timedelta(hours=settings.batch_file_max_age_hours)
    superseded: list[str] = []
    expired: list[str] = []
    touched_runs: set[str] = set()
    for batch in list_batches(settings):
        if batch.created is not None and now - batch.created > max_age:
            bucket = expired
        elif not batch.legacy and settled_before is not None and batch.created < settled_before:
            bucket = superseded
        else:
            continue
        path = _path(f"{settings.batch_root}/{batch.run_dir}/{batch.batch_id}", settings)
        if path.exists():
            path.rmdir(recursive=True)
        bucket.append(batch.batch_id)
        touched_runs.add(batch.run_dir)
    for run in sorted(touched_runs):
        run_dir = _path(f"{settings.batch_root}/{run}", settings)
        if run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()
    if superseded or expired:
        log.info("batch files: removed %d superseded batch(es) %s and %d older than %d h %s",
                 len(superseded), superseded, len(expired), settings.batch_file_max_age_hours, expired)
    return Removal(superseded, expired)
