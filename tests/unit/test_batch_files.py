"""Batch files (PHI): owner-only modes, time-ordered ids, and which batches the clean-up removes."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from claims_cdc import batch_files
from claims_cdc.settings import Settings

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
SECRET = "Ada Lovelace 555-010-0199"  # stands for a claim's content: must never reach a log line


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "batches"


@pytest.fixture
def settings(root) -> Settings:
    return replace(Settings(), batch_root=f"file://{root}", batch_file_max_age_hours=24)


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o000)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _batch(settings: Settings, run: str, created: datetime) -> tuple[str, Path]:
    batch_id = batch_files.new_batch_id(created)
    uri = batch_files.batch_uri(settings, run, batch_id)
    _write(settings, batch_files.shard_file(uri, "rows", "shardId-0"), SECRET.encode())
    return batch_id, Path(uri.removeprefix("file://"))


def _write(settings: Settings, uri: str, data: bytes) -> None:
    with batch_files.open_for_write(settings, uri) as out:
        out.write(data)


def _left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_files_are_0600_and_directories_0700_whatever_the_umask(settings, root, permissive_umask):
    uri = batch_files.batch_uri(settings, "manual__2026-11-25T12:00:00+00:00", batch_files.new_batch_id())
    _write(settings, batch_files.shard_file(uri, "rows", "shardId-0"), b"rows")
    _write(settings, batch_files.shard_file(uri, "rejected", "shardId-0"), b"")
    batch_dir = Path(uri.removeprefix("file://"))
    files = [batch_dir / kind / "shardId-0.parquet" for kind in ("rows", "rejected")]
    assert {_mode(path) for path in files} == {0o600}
    assert {_mode(path.parent) for path in files} == {0o700}
    assert _mode(batch_dir) == _mode(batch_dir.parent) == _mode(root) == 0o700
    assert files[0].read_bytes() == b"rows"
    with batch_files.local_copy(settings, uri) as folder:  # on file:// the batch folder itself, for PUT
        assert folder == batch_dir


def test_a_retry_rewrites_a_file_left_world_readable_by_an_earlier_version(settings, root, permissive_umask):
    batch_dir = root / "run-1" / "0123456789abcdef0123456789abcdef"
    (batch_dir / "rows").mkdir(parents=True, mode=0o755)
    stale = batch_dir / "rows" / "shardId-0.parquet"
    stale.write_text("stale and longer")
    os.chmod(stale, 0o644)
    _write(settings, batch_files.shard_file(f"file://{batch_dir}", "rows", "shardId-0"), b"new")
    assert _mode(stale) == 0o600
    assert _mode(stale.parent) == _mode(batch_dir) == _mode(batch_dir.parent) == 0o700
    assert stale.read_bytes() == b"new"


def test_batch_ids_sort_by_time_and_carry_it():
    times = [NOW + timedelta(microseconds=n) for n in (0, 1, 999_999, 1_000_000, 86_400_000_000)]
    ids = [batch_files.new_batch_id(t) for t in times]
    assert sorted(ids) == ids
    assert [batch_files.batch_time(i) for i in ids] == times
    assert ids[0].startswith("20261125T120000000000-") and len(ids[0]) == 21 + 1 + 32
    # another time zone is stored as UTC
    assert batch_files.batch_time(batch_files.new_batch_id(NOW.astimezone(timezone(timedelta(hours=-5))))) == NOW


@pytest.mark.parametrize("name", ["0123456789abcdef0123456789abcdef", "gap-0123", "20261325T120000000000-"
                                  + "0" * 32, "notes", ""])
def test_names_that_carry_no_time_have_none(name):
    assert batch_files.batch_time(name) is None


def test_the_sweeper_removes_only_batches_older_than_the_setting(settings, root):
    old, old_dir = _batch(settings, "run-1", NOW - timedelta(hours=24, seconds=1))
    young, _ = _batch(settings, "run-2", NOW - timedelta(hours=23, minutes=59))
    removed = batch_files.remove_finished(settings, settled_before=None, now=NOW)
    assert (removed.expired, removed.superseded) == ([old], [])
    assert not old_dir.exists() and not old_dir.parent.exists()  # the emptied run directory goes too
    assert _left(root) == ["run-2", f"run-2/{young}", f"run-2/{young}/rows", f"run-2/{young}/rows/shardId-0.parquet"]
    shorter = replace(settings, batch_file_max_age_hours=1)
    assert batch_files.remove_finished(shorter, settled_before=None, now=NOW).expired == [young]
    assert _left(root) == []


def test_settled_batches_are_removed_and_later_ones_kept(settings, root):
    first, _ = _batch(settings, "run-1", NOW - timedelta(minutes=10))
    killed, _ = _batch(settings, "run-2", NOW - timedelta(minutes=5))
    current, _ = _batch(settings, "run-3", NOW - timedelta(minutes=1))
    later, _ = _batch(settings, "run-4", NOW)  # extracted after the current one: not settled by it
    removed = batch_files.remove_finished(settings, settled_before=batch_files.batch_time(current), now=NOW)
    assert removed.superseded == [first, killed]
    assert sorted(p.name for p in root.glob("*/*")) == sorted([current, later])


def test_unknown_names_are_left_alone_and_legacy_ids_age_by_mtime(settings, root):
    legacy_old = root / "run-1" / ("a" * 32)
    legacy_new = root / "run-1" / ("b" * 32)
    stranger = root / "run-1" / "operator-notes"
    for directory in (legacy_old, legacy_new, stranger):
        directory.mkdir(parents=True)
        (directory / "records.jsonl").write_text("{}\n")
    stamp = (NOW - timedelta(hours=30)).timestamp()
    os.utime(legacy_old / "records.jsonl", (stamp, stamp))
    os.utime(stranger / "records.jsonl", (stamp, stamp))
    removed = batch_files.remove_finished(settings, settled_before=NOW, now=NOW)
    # legacy ids carry no time: only the age rule applies to them, by their files' modification time
    assert (removed.expired, removed.superseded) == (["a" * 32], [])
    assert sorted(p.name for p in (root / "run-1").iterdir()) == ["b" * 32, "operator-notes"]


def test_clean_up_logs_ids_and_counts_never_content(settings, root):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(batch_files.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        old, _ = _batch(settings, "run-1", NOW - timedelta(days=2))
        (root / "run-1" / "stray").mkdir()
        batch_files.remove_finished(settings, settled_before=None, now=NOW)
    finally:
        logger.removeHandler(handler)
    text = "\n".join(r.getMessage() for r in records)
    assert old in text and "stray" in text
    assert SECRET not in text and "patient" not in text


def test_an_absent_root_is_nothing_to_do(settings):
    assert batch_files.remove_finished(settings, settled_before=NOW, now=NOW).to_json() == {
        "superseded": 0, "expired": 0}


def test_the_live_sweeper_leaves_side_batches_alone_and_the_side_sweeper_expires_them(settings, root):
    """A snapshot's batch planned before a live run's is not superseded by it: its files stay until the side
    batch is staged, or until it is older than CDC_BATCH_FILE_MAX_AGE_HOURS (the side DAGs' own sweep)."""
    from claims_cdc.snapshot import side_settings

    side = side_settings(settings)
    assert side.batch_root == f"{settings.batch_root}/{batch_files.SIDE_DIR}"
    _, waiting_dir = _batch(side, "claims_cdc_snapshot.manual_1", NOW - timedelta(minutes=10))
    old, old_dir = _batch(side, "claims_cdc_snapshot.manual_0", NOW - timedelta(hours=25))
    live, _ = _batch(settings, "run-1", NOW - timedelta(minutes=1))
    removed = batch_files.remove_finished(settings, settled_before=NOW, now=NOW)
    assert removed.superseded == [live] and removed.expired == []
    assert waiting_dir.exists() and old_dir.exists()
    assert batch_files.remove_finished(side, settled_before=None, now=NOW).expired == [old]
    assert waiting_dir.exists() and not old_dir.exists()
