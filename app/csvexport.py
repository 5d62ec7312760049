"""CSV downloads: one writer for every table the app offers as a file."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from flask import Response

# A cell a spreadsheet would run as a formula (CSV injection): endpoints, client
# addresses, key names and audit details come from users and callers, so a cell that
# starts like a formula is quoted as text. The one guard for every CSV the app writes.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """One cell as written: None empty, a would-be formula as text."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The table as CSV text, one line (CRLF-ended) at a time, for streaming."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in itertools.chain([header], rows):
        writer.writerow([cell(v) for v in row])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    return "".join(csv_lines(header, rows))


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A download of the table; `filename` must be plain ASCII without quotes."""
    response = Response(to_csv(header, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
