"""``baton.v1.StatsService``: proto <-> domain only."""

from __future__ import annotations

from typing import Any

import grpc

from baton.v1 import stats_pb2, stats_pb2_grpc, usage_pb2
from baton_server.access.context import caller
from baton_server.rpc.convert import MATCHES_NOTHING, filter_uuid, optional_datetime
from baton_server.stats.service import Figures, StatsService
from baton_server.stats.store import Filters

_Context = grpc.aio.ServicerContext[Any, Any]


def _seconds(figures: Figures) -> float:
    return figures.duration_ms / figures.runs / 1000 if figures.runs else 0.0


def _breakdown(workflow_id: str, figures: Figures) -> stats_pb2.WorkflowBreakdown:
    return stats_pb2.WorkflowBreakdown(
        count=figures.runs,
        success_rate=figures.completed / figures.runs if figures.runs else 0.0,
        avg_cost=figures.cost / figures.runs if figures.runs else 0.0,
        average_duration=_seconds(figures),
        workflow_id=workflow_id,
    )


class StatsServicer(stats_pb2_grpc.StatsServiceServicer):
    """Translates StatsService RPCs to ``StatsService`` use cases."""

    def __init__(self, service: StatsService) -> None:
        self._service = service

    async def GetStats(
        self, request: stats_pb2.GetStatsRequest, context: _Context
    ) -> stats_pb2.Stats:
        # Another project's id (or a malformed one) matches nothing, as in lists.
        project_id = filter_uuid(request.project_id) or caller().project_id
        if project_id != caller().project_id:
            project_id = MATCHES_NOTHING
        stats = await self._service.stats(
            Filters(
                project_id=project_id,
                workflow_id=filter_uuid(request.workflow_id),
                start=optional_datetime(request, "start_time"),
                end=optional_datetime(request, "end_time"),
            ),
            request.time_zone,
        )
        total = stats.total
        return stats_pb2.Stats(
            total_executions=total.runs,
            successful_executions=total.completed,
            failed_executions=total.failed,
            cancelled_executions=total.cancelled,
            average_duration=_seconds(total),
            total_cost=total.cost,
            total_tokens=total.tokens,
            most_used_workflow=stats.most_used_workflow,
            workflow_breakdown={
                name: _breakdown(workflow_id, figures)
                for name, (workflow_id, figures) in stats.workflows.items()
            },
            monthly_stats={
                month: stats_pb2.MonthStats(
                    executions=figures.runs, cost=figures.cost, tokens=figures.tokens
                )
                for month, figures in stats.months.items()
            },
            cost_breakdown={model: cost for model, (_, _, cost) in stats.models.items()},
            tokens_by_model={
                model: usage_pb2.ModelTokens(input=tokens_input, output=tokens_output)
                for model, (tokens_input, tokens_output, _) in stats.models.items()
            },
            time_zone=stats.time_zone,
        )
