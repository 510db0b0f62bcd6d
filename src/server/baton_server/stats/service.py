"""The statistics use case: figures added up from the rollups."""

from __future__ import annotations

import zoneinfo
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from baton_server.errors import FieldViolation, InvalidArgument
from baton_server.stats import store
from baton_server.stats.store import Filters


@dataclass
class Figures:
    """Ended runs, added up."""

    runs: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_ms: float = 0.0
    cost: float = 0.0
    tokens: int = 0

    def add(self, row: dict[str, object]) -> None:
        runs = int(row["runs"])  # type: ignore[call-overload]
        self.runs += runs
        status = row["status"]
        if status == "COMPLETED":
            self.completed += runs
        elif status == "FAILED":
            self.failed += runs
        else:
            self.cancelled += runs
        self.duration_ms += float(row["duration_ms"])  # type: ignore[arg-type]
        self.cost += float(row["cost"])  # type: ignore[arg-type]
        self.tokens += int(row["tokens"])  # type: ignore[call-overload]


@dataclass
class Stats:
    """A project's statistics for some filters."""

    time_zone: str
    total: Figures = field(default_factory=Figures)
    #: workflow name -> (workflow id, its figures)
    workflows: dict[str, tuple[str, Figures]] = field(default_factory=dict)
    months: dict[str, Figures] = field(default_factory=dict)
    #: model -> (input tokens, output tokens, cost)
    models: dict[str, tuple[int, int, float]] = field(default_factory=dict)

    @property
    def most_used_workflow(self) -> str:
        counts = Counter({name: figures.runs for name, (_, figures) in self.workflows.items()})
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return ranked[0][0] if ranked and ranked[0][1] > 0 else ""


def check_time_zone(name: str) -> str:
    if not name:
        return "UTC"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"Unknown time zone '{name}'",
            reason="INVALID_TIME_ZONE",
            violations=[FieldViolation("time_zone", "an IANA time zone such as Europe/Paris")],
        ) from None
    return name


class StatsService:
    """Reads a project's execution statistics."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stats(self, filters: Filters, time_zone: str) -> Stats:
        time_zone = check_time_zone(time_zone)
        async with self._pool.acquire() as conn:
            runs = await store.run_figures(conn, filters, time_zone)
            models = await store.model_figures(conn, filters)
        stats = Stats(time_zone=time_zone)
        for row in runs:
            stats.total.add(row)
            name = str(row["workflow_name"] or row["workflow_id"])
            _, figures = stats.workflows.setdefault(name, (str(row["workflow_id"]), Figures()))
            figures.add(row)
            stats.months.setdefault(str(row["month"]), Figures()).add(row)
        stats.models = {
            row["model"]: (row["tokens_input"], row["tokens_output"], row["cost"]) for row in models
        }
        return stats
