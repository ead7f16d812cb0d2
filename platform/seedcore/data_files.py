"""The user's table files under the data dir: the path checks, the formats (CSV, Parquet), reading a file whole
or in chunks of bounded size, and its column names from a CSV header or a Parquet footer, read without the data."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

import pandas as pd

from seedcore.errors import DataError

TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# The header is read in blocks, never past this many bytes per column allowed (plus a base): a file with
# millions of columns is refused after reading a few MB, not parsed whole.
HEADER_BLOCK_BYTES = 64 * 1024
HEADER_BYTES_PER_COLUMN = 256
PARQUET_FOOTER_MAX_BYTES = 64 * 1024 * 1024  # a Parquet schema is read only from a footer below this


def resolve_data_path(data_dir: Path, source: str, field: str = "data_source", must_exist: bool = True) -> Path:
    """Resolve `source` inside `data_dir`; refuse URLs, `..` escapes, absolute paths and symlinks elsewhere."""
    if not isinstance(source, str) or not source.strip():
        raise DataError("must be a non-empty path inside the data dir", field=field)
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in source):  # the OS would refuse it mid-request
        raise DataError("must not contain control characters or lone surrogates", field=field)
    if urlparse(source).scheme not in ("", "file") or "://" in source:
        raise DataError(f"URLs are not accepted ({source!r}); give a path inside the data dir", field=field)
    root = Path(data_dir).resolve()
    candidate = Path(source)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise DataError(f"{source!r} is outside the data dir {root}", field=field)
    if must_exist and not resolved.is_file():
        raise DataError(f"{source!r} does not exist in the data dir {root}", field=field)
    return resolved


def table_format(path: Path, field: str = "data_source") -> str:
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path.name}: only .csv and .parquet files are supported", field=field)
    return kind


def read_table(path: Path, columns: Sequence[str] | None = None, field: str = "data_source") -> pd.DataFrame:
    """Read a whole CSV or Parquet file; an empty or unreadable file is a DataError."""
    kind = table_format(path, field)
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty", field=field)
    try:
        if kind == "csv":
            return pd.read_csv(path, usecols=list(columns) if columns else None)
        return pd.read_parquet(path, columns=list(columns) if columns else None)
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", field=field) from exc


def iter_table_chunks(path: Path, columns: Sequence[str] | None, chunk_rows: int,
                      field: str = "data_source") -> Iterator[pd.DataFrame]:
    """Stream a CSV or Parquet file in chunks of at most `chunk_rows` rows (bounded memory)."""
    kind = table_format(path, field)
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty", field=field)
    cols = list(columns) if columns else None
    try:
        if kind == "csv":
            yield from pd.read_csv(path, usecols=cols, chunksize=chunk_rows)
            return
        import pyarrow.parquet as pq

        # pre_buffer (pyarrow's default) reads row groups ahead, so memory would grow with the file;
        # without it, memory stays near one row group plus one batch.
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=cols):
            yield batch.to_pandas()
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", field=field) from exc


def table_columns(path: Path, field: str = "data_source", max_columns: int | None = None) -> list[str]:
    """The header of a CSV or the schema names of a Parquet file, read without the data.

    With `max_columns`, a CSV header is read in bounded bytes and a Parquet footer only when small, so a
    file with millions of columns is refused before it is parsed. A name given twice is refused: pandas
    would rename the second copy (`f0.1`) and train on it as another feature.
    """
    names = _csv_header(path, max_columns, field) if table_format(path, field) == "csv" else _parquet_names(path, field)
    if max_columns is not None and len(names) > max_columns:
        raise DataError(f"{path.name} has {len(names)} columns; at most {max_columns} are taken "
                        "(SEEDCORE_MAX_FEATURES)", field=field)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(f"column {name!r} appears twice in {path.name}'s header (columns {seen[name]} and {i})",
                            field=field)
        seen[name] = i
    return names


def _csv_header(path: Path, max_columns: int | None, field: str) -> list[str]:
    """The first line of a CSV (a quoted newline does not end it), as the names pandas gives its columns."""
    limit = None if max_columns is None else HEADER_BLOCK_BYTES + max_columns * HEADER_BYTES_PER_COLUMN
    data, quotes, end = bytearray(), 0, -1
    try:
        with path.open("rb") as handle:
            while end < 0:
                block = handle.read(HEADER_BLOCK_BYTES)
                if not block:
                    break
                end, quotes = _line_end(block, quotes)
                data += block if end < 0 else block[:end]
                if end < 0 and limit is not None and len(data) > limit:
                    raise DataError(f"{path.name}: the header line is longer than {limit} bytes, too long for "
                                    f"{max_columns} columns (SEEDCORE_MAX_FEATURES)", field=field)
        line = bytes(data).decode("utf-8-sig").rstrip("\r")
        raw = next(csv.reader(io.StringIO(line, newline="")), [])
        columns = [str(c) for c in pd.read_csv(io.StringIO(line), nrows=0).columns]
    except (UnicodeDecodeError, csv.Error, ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read the columns of {path.name}: {exc}", field=field) from exc
    if len(raw) != len(columns):
        return columns
    # pandas names a blank column `Unnamed: <i>` and renames a repeat (`f0.1`): repeats show in the raw names
    return [name if name.strip() else column for name, column in zip(raw, columns)]


def _line_end(block: bytes, quotes: int) -> tuple[int, int]:
    """Where in `block` the line ends (a newline outside quotes; -1: not in it), given the quotes seen before
    it; and the quotes seen up to there."""
    start = 0
    at = block.find(b"\n")
    while at >= 0:
        quotes += block.count(b'"', start, at)
        if quotes % 2 == 0:
            return at, quotes
        start, at = at, block.find(b"\n", at + 1)
    return -1, quotes + block.count(b'"', start)


def _parquet_names(path: Path, field: str) -> list[str]:
    """A Parquet file's column names, read from its footer only when the footer is of a sane size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - 8, 0))
            tail = handle.read(8)
        if len(tail) == 8 and tail[4:] == b"PAR1" and int.from_bytes(tail[:4], "little") > PARQUET_FOOTER_MAX_BYTES:
            raise DataError(f"{path.name}: its schema is over {PARQUET_FOOTER_MAX_BYTES} bytes", field=field)
        return list(pq.read_schema(path).names)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read the columns of {path.name}: {exc}", field=field) from exc
