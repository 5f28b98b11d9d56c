"""The column mapping: which flattened DynamoDB attribute fills which Snowflake column, and as what type.

The mapping is data (``include/mapping/claims.json``), so that renaming or adding a column is a change to
that file and the table DDL, not to code. This module only loads and validates it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from claims_cdc.settings import ConfigError

#: Snowflake types the transform knows how to produce and validate.
SUPPORTED_TYPES = re.compile(r"^(STRING|FLOAT|INTEGER|VARCHAR\(\d+\)|TIMESTAMP_NTZ\(\d\))$")
ENVELOPE_SOURCES = {"@eventName", "@eventCreationUnixTime"}


#: Kinds of protected health information a column may be marked with (``"phi"`` in the mapping file).
PHI_KINDS = {"name", "date_of_birth", "address", "phone", "email", "member_id"}


@dataclass(frozen=True)
class Column:
    column: str
    source: str
    type: str
    #: The kind of PHI the column holds (tagged and masked on real Snowflake), or None.
    phi: str | None = None

    @property
    def max_length(self) -> int | None:
        match = re.match(r"^VARCHAR\((\d+)\)$", self.type)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Mapping:
    key_attribute: str
    columns: tuple[Column, ...]

    @property
    def key_column(self) -> str:
        return next(c.column for c in self.columns if c.source == self.key_attribute)

    @property
    def names(self) -> list[str]:
        return [c.column for c in self.columns]

    @property
    def sources(self) -> frozenset[str]:
        """The flattened item attributes that fill a column (the envelope's ``@`` sources excluded)."""
        return frozenset(c.source for c in self.columns if not c.source.startswith("@"))


def load_mapping(path: Path) -> Mapping:
    """Load and validate the mapping file; a malformed file raises :class:`ConfigError` naming the problem."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"CDC_MAPPING_PATH: cannot read {path}: {err}") from None
    try:
        columns = tuple(Column(c["column"], c["source"], c["type"].upper(), c.get("phi")) for c in doc["columns"])
        key_attribute = doc["key_attribute"]
    except (KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"CDC_MAPPING_PATH: {path} lacks {err}; see include/mapping/claims.json") from None
    seen: set[str] = set()
    for col in columns:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", col.column):
            raise ConfigError(f"CDC_MAPPING_PATH: column {col.column!r} is not a plain identifier")
        if col.column.lower() in seen:
            raise ConfigError(f"CDC_MAPPING_PATH: column {col.column!r} appears twice")
        seen.add(col.column.lower())
        if not SUPPORTED_TYPES.match(col.type):
            raise ConfigError(f"CDC_MAPPING_PATH: column {col.column!r} has unsupported type {col.type!r}")
        if col.phi is not None and col.phi not in PHI_KINDS:
            raise ConfigError(f"CDC_MAPPING_PATH: column {col.column!r} has unknown phi kind {col.phi!r} "
                              f"(one of {', '.join(sorted(PHI_KINDS))})")
        if col.source.startswith("@") and col.source not in ENVELOPE_SOURCES:
            raise ConfigError(f"CDC_MAPPING_PATH: column {col.column!r} has unknown envelope source {col.source!r}")
    if not any(c.source == key_attribute for c in columns):
        raise ConfigError(f"CDC_MAPPING_PATH: no column maps the key attribute {key_attribute!r}")
    for source in ENVELOPE_SOURCES:
        if not any(c.source == source for c in columns):
            raise ConfigError(f"CDC_MAPPING_PATH: no column maps {source}")
    return Mapping(key_attribute=key_attribute, columns=columns)
