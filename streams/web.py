"""Pages on the worker's web server: ``/metrics``, ``/healthz``, ``/readyz``, the views the
scheduler can ask, ``/vms/{vm_id}`` and ``/hosts/{host_id}`` (JSON, 404 for an unknown id),
and the operators' status page: ``/`` and ``/vm/{vm_id}`` (HTML, :mod:`streams.status_page`)
over ``/status.json`` and ``/status/vms/{vm_id}`` (JSON, :mod:`streams.status`).

The two views and the status drill-down are table-routed (Faust's ``app.table_route``): a
worker asked about a key whose table partition another worker owns forwards the request to
that worker's web server and relays its answer, so any worker can be asked about any VM or
host.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from agents.pipeline import vm_view
from agents.scaling.placement import HostState
from streams.status import consumer_lag
from streams.status_page import render_page
from streams.tables import hosts_table, vm_state_table
from streams.topics import metrics_topic

if TYPE_CHECKING:
    from streams.app import Service


def register_pages(service: Service) -> None:
    app = service.app

    def _json(view: Any, body: Any, status: int = 200) -> Any:
        # orjson: the views carry numpy floats and NaN-free dataclasses; default=str for the
        # odd non-JSON value rather than a 500.
        return view.bytes(orjson.dumps(body, default=str), content_type="application/json",
                          status=status)

    def status_summary() -> dict[str, Any]:
        monitor: Any = app.monitor
        lag = consumer_lag(dict(monitor.tp_end_offsets or {}),
                           dict(monitor.tp_read_offsets or {}))
        return service.status.summary(time.time(), lag,
                                      metrics_topic=service.settings.topic(metrics_topic.name))

    def _page(view: Any, vm_id: str | None) -> Any:
        return view.bytes(render_page(status_summary(), vm_id).encode(),
                          content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/")
    async def status_page(view: Any, request: Any) -> Any:
        """The status page: this worker's incidents, recommendations, rate and lag (with
        ``?vm=<id>``, that VM's drill-down open)."""
        return _page(view, request.query.get("vm") or None)

    @app.page("/vm/{vm_id}")
    async def status_vm_page(view: Any, request: Any, vm_id: str) -> Any:
        """The status page with the drill-down of ``vm_id`` open."""
        return _page(view, vm_id)

    @app.page("/status.json")
    async def status_json(view: Any, request: Any) -> Any:
        """What the status page shows: rate, lag, incidents, recommendations, busiest VMs."""
        return _json(view, status_summary())

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        """Prometheus exposition of the worker's counters and histograms."""
        if service.processor is not None:  # the fleet-wide class factors as of now
            service.processor.refresh_fleet()
            service.processor.count_patterns()
        monitor: Any = app.monitor
        service.metrics.set_lag(dict(monitor.tp_end_offsets or {}),
                                dict(monitor.tp_read_offsets or {}))
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

    vm_table = service.tables[vm_state_table.name]
    host_table = service.tables[hosts_table.name]

    @app.page("/vms/{vm_id}")
    @app.table_route(table=vm_table, match_info="vm_id")
    async def get_vm(view: Any, request: Any, vm_id: str) -> Any:
        """A VM's latest features, forecasts, pattern, recommendation and open incidents."""
        state = service.processor.state_of(vm_id.encode()) if service.processor else None
        if state is None:
            return _json(view, {"error": f"unknown vm {vm_id}"}, status=404)
        return _json(view, vm_view(vm_id, state))

    @app.page("/status/vms/{vm_id}")
    @app.table_route(table=vm_table, match_info="vm_id")
    async def status_vm(view: Any, request: Any, vm_id: str) -> Any:
        """A VM's recent samples, forecast band and incidents, from its owner's board."""
        body = service.status.vm_view(vm_id)
        if body is None:
            return _json(view, {"error": f"no recent samples of vm {vm_id} on this worker"},
                         status=404)
        return _json(view, body)

    @app.page("/hosts/{host_id}")
    @app.table_route(table=host_table, match_info="host_id")
    async def get_host(view: Any, request: Any, host_id: str) -> Any:
        """A host's capacity, use, VMs and headroom."""
        raw = host_table.get(host_id.encode())
        if raw is None:
            return _json(view, {"error": f"unknown host {host_id}"}, status=404)
        return _json(view, HostState.from_json(raw).summary())
