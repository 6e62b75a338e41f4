"""Pages on the worker's web server: ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from streams.app import Service


def register_pages(service: Service) -> None:
    app = service.app

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        """Prometheus exposition of the worker's counters and histograms."""
        if service.processor is not None:  # the fleet-wide class factors as of now
            service.processor.refresh_fleet()
        return view.bytes(service.metrics.exposition(),
                          content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(view: Any, request: Any) -> Any:
        """200 while the worker process is alive and serving."""
        return view.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(view: Any, request: Any) -> Any:
        """200 once the assigned partitions' tables are recovered and the worker processes."""
        tables: Any = app.tables  # the TableManager; its type stub lacks `recovery`
        recovered = tables.recovery.completed.is_set()
        ready = recovered and not app.rebalancing
        return view.json({"ready": ready, "recovered": recovered,
                          "rebalancing": bool(app.rebalancing)},
                         status=200 if ready else 503)
