"""Listings that page through results transparently."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from baton_sdk._transport import Transport

T = TypeVar("T")

SortOrder = Literal["asc", "desc"]
"""Sort direction of a listing."""


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    """One page of a listing, as the server returned it.

    Attributes:
        items: The items on this page.
        page: This page's number, from 1.
        page_size: The page size used.
        total: Number of items over all pages, when the listing reports it.
        total_pages: Number of pages for this page size, when the listing reports it.
    """

    items: tuple[T, ...]
    page: int
    page_size: int
    total: int | None = None
    total_pages: int | None = None

    @property
    def is_last(self) -> bool:
        """Whether no page follows this one."""
        if self.total_pages is not None:
            return self.page >= self.total_pages
        return len(self.items) < self.page_size


class AsyncPager(Generic[T]):
    """Every item of a listing, fetched page by page as you iterate.

    Iterating yields items across all pages (up to ``limit``); :meth:`pages` yields
    whole pages instead. Nothing is fetched until you iterate, and each iteration
    starts again from the first page.

    Listings are paginated by offset, so a resource created while you iterate can shift
    an item onto the next page; the pager drops such repeats (it remembers the ids it
    has yielded).

    Example:
        >>> async for agent in client.agents.list(status=AgentStatus.ACTIVE):
        ...     print(agent.name)
        >>> runs = await client.runs.list(limit=10).to_list()
    """

    def __init__(
        self,
        fetch_pages: Callable[[], AsyncIterator[Page[T]]],
        *,
        key: Callable[[T], Hashable],
        limit: int | None = None,
    ) -> None:
        """Create a pager; the SDK's ``list`` methods do this for you.

        Args:
            fetch_pages: Returns a fresh iterator over the listing's pages.
            key: Identity of an item, to drop repeats.
            limit: Stop after this many items (``None``: all of them).
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        self._fetch_pages = fetch_pages
        self._key = key
        self._limit = limit

    def __aiter__(self) -> AsyncIterator[T]:
        """Iterate over the items of every page, up to the limit."""
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        if self._limit == 0:
            return
        seen: set[Hashable] = set()
        async for page in self.pages():
            for item in page.items:
                identity = self._key(item)
                if identity in seen:
                    continue
                seen.add(identity)
                yield item
                if self._limit is not None and len(seen) >= self._limit:
                    return

    def pages(self) -> AsyncIterator[Page[T]]:
        """Iterate over whole pages, as the server returns them (ignores ``limit``).

        Returns:
            An async iterator of :class:`Page`.
        """
        return self._fetch_pages()

    async def to_list(self) -> list[T]:
        """Fetch every item (up to the limit) into a list.

        Returns:
            The items, in listing order.
        """
        return [item async for item in self]


async def numbered_pages(fetch: Callable[[int], Awaitable[Page[T]]]) -> AsyncIterator[Page[T]]:
    """Fetch pages 1, 2, ... until the last one (or an empty one).

    Args:
        fetch: Fetches the page with the given number.

    Yields:
        The pages, in order.
    """
    number = 1
    while True:
        page = await fetch(number)
        yield page
        if page.is_last or not page.items:
            return
        number += 1


def rpc_listing(
    transport: Transport,
    method: Any,
    request: Callable[[int], Any],
    convert: Callable[[Any], T],
    key: Callable[[T], Hashable],
    *,
    limit: int | None,
    timeout: float | None,
) -> AsyncPager[T]:
    """A pager over a numbered list RPC: ``request(n)`` is the request for page ``n``,
    whose reply has ``items`` and the paging fields."""

    async def fetch(number: int) -> Page[T]:
        reply = await transport.unary(method, request(number), timeout=timeout, idempotent=True)
        return Page(
            items=tuple(convert(item) for item in reply.items),
            page=reply.page,
            page_size=reply.page_size,
            total=reply.total,
            total_pages=reply.total_pages,
        )

    return AsyncPager(lambda: numbered_pages(fetch), key=key, limit=limit)
