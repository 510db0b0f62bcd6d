"""One paginated, sorted query: the shape every list RPC shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.paging import Page, PageRequest, Sort

T = TypeVar("T")


async def fetch_page(
    conn: AsyncConnection,
    query: sa.Select[Any],
    *,
    table: sa.Table,
    conditions: Sequence[sa.ColumnElement[bool]],
    sort_columns: Mapping[str, sa.ColumnElement[Any]],
    sort: Sort,
    page: PageRequest,
    convert: Callable[[Any], T],
) -> Page[T]:
    """Count the rows of ``table`` matching ``conditions``, then fetch one page of ``query``.

    Ties are broken by the table's primary key ``id`` so pages never overlap; rows with
    no value in the sort column (e.g. ``completed_at`` of a running run) come last.
    """
    total = (
        await conn.execute(sa.select(sa.func.count()).select_from(table).where(*conditions))
    ).scalar_one()
    column, tie = sort_columns[sort.field], table.c.id
    order = (
        [column.desc().nulls_last(), tie.desc()]
        if sort.descending
        else [column.asc().nulls_last(), tie.asc()]
    )
    rows = await conn.execute(
        query.where(*conditions).order_by(*order).limit(page.page_size).offset(page.offset)
    )
    return Page(items=[convert(r) for r in rows], total=total, request=page)
