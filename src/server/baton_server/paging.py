"""Pagination and sorting shared by every list RPC."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class PageRequest:
    """A 1-indexed page of a given size (bounds are enforced by the contract)."""

    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


@dataclass(frozen=True)
class Sort:
    """A sort column by its API name, and its direction."""

    field: str
    descending: bool = True

    @classmethod
    def parse(cls, sort_by: str, sort_order: str, *, default: str = "created_at") -> Sort:
        """Build from the request strings; empty strings take the API defaults."""
        return cls(field=sort_by or default, descending=(sort_order or "desc") == "desc")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the size of the whole result."""

    items: list[T]
    total: int
    request: PageRequest

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.request.page_size)
