"""The local stack's process handling (dev/claims_cdc_dev/stack.py), on a harmless child process."""

from __future__ import annotations

import sys
import time

from claims_cdc_dev import stack


def test_stopping_a_child_that_exits_on_sigterm_does_not_wait_out_the_grace_period(tmp_path):
    cfg = stack.StackConfig(state_dir=tmp_path)
    stack._start(cfg, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {})
    pid = int((cfg.pid_dir / "sleeper.pid").read_text())
    assert stack._alive(pid)

    started = time.monotonic()
    stack._stop(cfg, "sleeper")
    # The child exits at once on SIGTERM; before it was reaped, its zombie kept _stop waiting 5 s.
    assert time.monotonic() - started < 2
    assert not stack._alive(pid)
    assert not (cfg.pid_dir / "sleeper.pid").exists()
