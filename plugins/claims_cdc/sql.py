"""The statements of ``include/sql``: parsed by name and rendered with templated names.

Each file holds statements introduced by ``-- name: <name>``. Only *names* are rendered (Jinja, from
validated settings and the mapping file); every *value* is a bound ``?`` parameter. A statement whose
comment says ``-- snowflake-only: <why>`` is skipped on the local emulator, and the skip is logged.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2

from claims_cdc.mapping import Mapping
from claims_cdc.settings import INCLUDE_DIR, Settings
from claims_cdc.snowflake import Statement
from claims_cdc.transform import CDC_COLUMNS

SQL_DIR = INCLUDE_DIR / "sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_ONLY = re.compile(r"^--\s*snowflake-only:\s*(.+)$", re.MULTILINE)

#: Pipeline columns carried to the destination after the mapped ones.
DEST_EXTRA_COLUMNS = (*CDC_COLUMNS, "cdc_batch_id", "cdc_loaded_at", "cdc_merge_id")


def parse(source: str) -> dict[str, tuple[str, str | None]]:
    """``-- name:`` blocks -> {name: (sql without the trailing ';', snowflake-only reason)}."""
    blocks: dict[str, tuple[str, str | None]] = {}
    matches = list(_NAME.finditer(source))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(source)
        body = source[match.end() : end]
        only = _ONLY.search(body)
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        blocks[match.group(1)] = ("\n".join(lines).strip().rstrip(";").strip(), only.group(1).strip() if only else None)
    return blocks


@lru_cache(maxsize=32)
def _source(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


#: Per-call names (a batch id, the upload folder): plain path characters only, so nothing can break out.
_CALL_NAME = re.compile(r"^[A-Za-z0-9_./-]+$")


def load(file: str, settings: Settings, mapping: Mapping, **names: str) -> dict[str, Statement]:
    """Every statement of ``include/sql/<file>.sql``, rendered for these settings and this mapping.

    ``names`` are per-call names some files use (load.sql: ``batch_id``, ``upload_folder``): names, never
    values, and refused unless they are plain path characters.
    """
    for key, value in names.items():
        if not _CALL_NAME.match(value):
            raise ValueError(f"{key} must be letters, digits, '_', '.', '/' or '-' to be rendered into SQL "
                             "(for the upload folder: a file:// CDC_BATCH_ROOT, or TMPDIR for s3:// and re-drives, must be such a path)")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    context = {
        **names,
        **settings.table_names(),
        "columns": mapping.columns,
        "all_columns": [*mapping.names, *DEST_EXTRA_COLUMNS],
        "phi_columns": [c for c in mapping.columns if c.phi],
        # The audit's: the mapped columns an item fills (not the envelope's), and the key's column.
        "item_columns": [c.column for c in mapping.columns if not c.source.startswith("@")],
        "key_column": mapping.key_column,
    }
    statements = {}
    for name, (text, only) in parse(_source(file)).items():
        statements[name] = Statement(name, env.from_string(text).render(context), only)
    return statements


def files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))
