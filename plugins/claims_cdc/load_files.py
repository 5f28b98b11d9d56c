"""The files a batch is bulk-loaded from: its rows and its dead letters as compressed Parquet, in a private
temporary folder, for PUT to the load stage and COPY INTO (``include/sql/load.sql``).

Each column has the type its table column loads from: FLOAT as double, INTEGER as NUMBER(38,0) (decimal),
everything else as text (timestamps in ISO-8601, the images as JSON text). The files hold claims (PHI):
the folder is 0700 and the caller removes it once the load is done.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from claims_cdc.mapping import Mapping
from claims_cdc.transform import CDC_COLUMNS, HISTORY_COLUMNS

ROWS_FILE = "rows.parquet"
REJECTED_FILE = "rejected.parquet"
#: A dead letter's columns, as the dead-letter table names them (its batch_id is the staging batch's).
REJECTED_COLUMNS = {"batch_id": pa.string(), "shard_id": pa.string(), "sequence_number": pa.string(),
                    "reason": pa.string(), "payload": pa.string(), "payload_base64": pa.string(),
                    "arrival_micros": pa.int64()}
REJECTED_SCHEMA = pa.schema([pa.field(name, kind) for name, kind in REJECTED_COLUMNS.items()])
_INTEGER = pa.decimal128(38, 0)
_IMAGES = ("cdc_new_image", "cdc_old_image")


def row_schema(mapping: Mapping) -> pa.Schema:
    """The staging table's loaded columns: the mapped ones by their type, then the pipeline's own."""
    types = {"FLOAT": pa.float64(), "INTEGER": _INTEGER}
    fields = [pa.field(c.column, types.get(c.type, pa.string())) for c in mapping.columns]
    fields += [pa.field(name, pa.string()) for name in (*CDC_COLUMNS, "cdc_batch_id", *HISTORY_COLUMNS)]
    return pa.schema(fields)


def _cell(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == _INTEGER:
        return Decimal(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))  # an image: DynamoDB JSON, strings for numbers
    return value


def rows_table(mapping: Mapping, batch_id: str, rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as an Arrow table of :func:`row_schema` (every row gets ``batch_id``).

    The transform's rows (images as JSON text, INTEGER columns as Python ints) are converted by Arrow in one
    call, as a struct array whose fields are the columns: a third of the time of gathering each column in
    Python. Keys the schema lacks are ignored and missing ones are null, as column by column.
    """
    schema = row_schema(mapping)
    loaded = pa.schema([field for field in schema if field.name != "cdc_batch_id"])
    try:
        columns = pa.array(rows, type=pa.struct(loaded)).flatten()
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # an image given as a map: the column by column path
        return _rows_table_by_column(schema, batch_id, rows)
    by_name = dict(zip(loaded.names, columns, strict=True))
    by_name["cdc_batch_id"] = pa.array([batch_id] * len(rows), type=pa.string())
    return pa.Table.from_arrays([by_name[name] for name in schema.names], schema=schema)


def _rows_table_by_column(schema: pa.Schema, batch_id: str, rows: list[dict[str, Any]]) -> pa.Table:
    """:func:`rows_table` column by column: images given as maps (a caller's rows, not the transform's) are
    written as JSON text; any other value Arrow cannot take raises here, naming no value."""
    arrays = []
    for field in schema:
        if field.name == "cdc_batch_id":
            values: list[Any] = [batch_id] * len(rows)
        else:
            values = [row.get(field.name) for row in rows]
            # INTEGER as Decimal; an image given as a map (a caller's row, not the transform's text) as JSON
            if field.type == _INTEGER or (field.name in _IMAGES and any(isinstance(v, dict) for v in values)):
                values = [_cell(v, field.type) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def rejected_table(batch_id: str, rejected: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [batch_id if name == "batch_id" else letter.get(name) for letter in rejected]
               for name in REJECTED_COLUMNS}
    return pa.table(columns, schema=REJECTED_SCHEMA)


def write_rows(folder: Path, mapping: Mapping, batch_id: str, rows: list[dict[str, Any]]) -> Path:
    """Rows held in memory (a re-drive's) as ``<folder>/rows/rows.parquet``, where ``put_rows`` looks."""
    return _write(folder / "rows" / ROWS_FILE, rows_table(mapping, batch_id, rows))


def write_rejected(folder: Path, batch_id: str, rejected: list[dict[str, Any]]) -> Path:
    """Dead letters as ``<folder>/rejected/rejected.parquet``, where ``put_rejected`` looks."""
    return _write(folder / "rejected" / REJECTED_FILE, rejected_table(batch_id, rejected))


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    path.chmod(0o600)
    return path


class ParquetSink:
    """Rows (or dead letters) written page by page into one Parquet file, one row group a page.

    The file is opened at the first page (``open_file()`` gives a binary file object), so a shard without
    rows leaves no file. Only the current page is ever in memory.
    """

    def __init__(self, schema: pa.Schema, open_file: Callable[[], BinaryIO]):
        self._schema = schema
        self._open_file = open_file
        self._file: BinaryIO | None = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._writer is None:
            self._file = self._open_file()
            self._writer = pq.ParquetWriter(self._file, self._schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()


@contextmanager
def private_folder() -> Iterator[Path]:
    """A temporary folder only this user can enter (0700), removed with its files afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="claims-cdc-load-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
