"""Summaries that downstream DAGs rebuild from the destination once a merge has published it.

Each rebuild is a full, idempotent recomputation in one transaction. Returns and logs counts only (how many
statuses, how many claims), never a value.
"""

from __future__ import annotations

import logging
from typing import Any

from claims_cdc.mapping import load_mapping
from claims_cdc.settings import Settings
from claims_cdc.snowflake import session
from claims_cdc.sql import load

log = logging.getLogger(__name__)


def rebuild_claims_by_status(settings: Settings) -> dict[str, Any]:
    """Create the claims-by-status table if missing and rebuild it from the destination, in one transaction."""
    stmts = load("summary", settings, load_mapping(settings.mapping_path))
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        snow.execute(stmts["create_claims_by_status"])
        with snow.transaction():
            snow.rowcount(stmts["clear_claims_by_status"])
            statuses = snow.rowcount(stmts["fill_claims_by_status"])
    log.info("%s rebuilt: %d status(es)", settings.summary_table, statuses)
    return {"table": settings.summary_table, "statuses": statuses}
