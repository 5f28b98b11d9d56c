"""Run a command and write its own peak RSS: the small launcher between ``make bench`` and what it measures.

    python dev/claims_cdc_dev/peak_rss.py OUT.json -- COMMAND [ARG ...]

Workaround, kept in this one place (reproduced in tests/platform/test_platform_quirks.py): on Linux a
process's ``ru_maxrss`` after fork and exec starts from the resident size its parent had when it forked
(exec keeps the old address space's high-water mark). The bench holds the whole stream in memory for its
floors, so every child it started reported the bench's peak, not its own (3.7 GB for a 400k drain whose
own peak was 1.1 GB). Started from this launcher, a few MB in size, the command's peak is its own.

Standard library only, run by path: it needs no PYTHONPATH. Its exit status is the command's (128 + the
signal for a command a signal ended).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    out, command = Path(argv[0]), argv[2:]
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    out.write_text(json.dumps({"peak_rss_kib": usage.ru_maxrss}))
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
