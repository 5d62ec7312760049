"""The one pager of every admin list (users, all keys, the audit trail): which page of a
query, sorted by a column the list allows, and the links around it.

Plain values in, plain values out: the blueprint passes the request's arguments, the
pager answers with rows and page numbers (no Flask request objects here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

PER_PAGE = 50
MAX_PAGE = 100_000
# Counting stops here: "10,000+" costs a bounded scan on a trail of any size.
COUNT_CAP = 10_000


class PagerError(ValueError):
    """A page or sort argument that cannot be honoured; the message is safe to show."""


@dataclass(frozen=True)
class Page:
    items: Sequence[Any]
    number: int
    per_page: int
    total: int  # capped at COUNT_CAP (see `more_than`)
    sort: str
    descending: bool
    args: Mapping[str, str] = field(default_factory=dict)  # the list's other arguments

    @property
    def more_than(self) -> bool:
        return self.total >= COUNT_CAP

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages or (self.more_than and len(self.items) == self.per_page)

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.items else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * self.per_page + len(self.items)

    def link_args(self, **changes: Any) -> dict[str, Any]:
        """The query arguments of a link to another page or order of this list."""
        args: dict[str, Any] = {**self.args, "sort": self.sort, "dir": self._dir()}
        args.update(changes)
        if args.get("page") == 1:
            args.pop("page")
        return {k: v for k, v in args.items() if v not in (None, "")}

    def sort_args(self, column: str) -> dict[str, Any]:
        """A column header's link: that column, flipped when it is the current one."""
        if column == self.sort:
            return self.link_args(sort=column, dir="asc" if self.descending else "desc", page=1)
        return self.link_args(sort=column, dir="asc", page=1)

    def sorted_as(self, column: str) -> str:
        """aria-sort value of a column header."""
        if column != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"

    def _dir(self) -> str:
        return "desc" if self.descending else "asc"


def _int(raw: str | None, name: str, default: int) -> int:
    raw = (raw or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 6 or not 1 <= int(raw) <= MAX_PAGE:
        raise PagerError(f"{name} must be a whole number from 1 to {MAX_PAGE}.")
    return int(raw)


# A page's statement (the query ordered, its LIMIT and OFFSET bound per call) for each
# query object and order asked for. A caller that builds its query once (the keys list)
# then has it built and its cache key computed once, not on every page view; a query
# built per request is forgotten with it. Keyed by the sort's name: a query object is
# paged by the one caller that built it, always with the same columns.
_ORDERED: WeakKeyDictionary[Select[Any], dict[tuple[str, bool], Select[Any]]] = WeakKeyDictionary()
_LIMIT, _OFFSET = bindparam("pager_limit"), bindparam("pager_offset")


def _ordered(query: Select[Any], sort: str, descending: bool, column: Any, tiebreak: Any) -> Any:
    by_order = _ORDERED.get(query)
    if by_order is None:
        by_order = _ORDERED.setdefault(query, {})
    ordered = by_order.get((sort, descending))
    if ordered is None:
        order = [column.desc() if descending else column.asc()]
        order.append(tiebreak.desc() if descending else tiebreak.asc())
        ordered = by_order[sort, descending] = query.order_by(*order).limit(_LIMIT).offset(_OFFSET)
    return ordered


def paginate(
    session: Session,
    query: Select[Any],
    *,
    columns: Mapping[str, Any],
    default_sort: str,
    default_desc: bool,
    tiebreak: Any,
    page: str | None = None,
    sort: str | None = None,
    direction: str | None = None,
    args: Mapping[str, str] | None = None,
    per_page: int = PER_PAGE,
    scalars: bool = True,
    total: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> Page:
    """One page of `query`, ordered by `columns[sort]` then `tiebreak` (a unique column,
    so rows never repeat or vanish between pages). `total`: how many rows the query has,
    when the caller already counted them (no count query then). `params`: the values of
    the query's own bound parameters (a query built once)."""
    sort = sort or default_sort
    if sort not in columns:
        raise PagerError(f"sort must be one of {', '.join(columns)}.")
    if direction not in (None, "", "asc", "desc"):
        raise PagerError("dir must be asc or desc.")
    descending = default_desc if not direction else direction == "desc"
    number = _int(page, "page", 1)
    if total is None:
        capped = query.order_by(None).limit(COUNT_CAP).subquery()
        total = session.scalar(select(func.count()).select_from(capped), params) or 0
    total = min(total, COUNT_CAP)
    rows_query = _ordered(query, sort, descending, columns[sort], tiebreak)
    bound = {**(params or {}), "pager_limit": per_page, "pager_offset": (number - 1) * per_page}
    result = session.execute(rows_query, bound)
    items = result.scalars().all() if scalars else result.all()
    return Page(items, number, per_page, total, sort, descending, dict(args or {}))
