"""Run one worker process: create missing topics, then run the Faust app until signalled."""

from __future__ import annotations

import asyncio
import logging

import faust
from prometheus_client import CollectorRegistry

from agents.warm import warm_up
from streams.admin import ensure_topics
from streams.app import create_app
from streams.logs import logging_config
from streams.runtime import tune_gc
from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    """Block until SIGINT/SIGTERM; return the worker's exit code."""
    tune_gc()
    log.info("loading the learners' compiled kernels (compiling them on a first start)")
    log.info("kernels ready in %.1f s", warm_up())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    service = create_app(settings, registry=CollectorRegistry())
    worker = faust.Worker(service.app, loglevel=settings.log_level.upper(), loop=loop,
                          logging_config=logging_config(settings.log_level, settings.log_format,
                                                        settings.secrets()))
    # No terminal spinner: Faust feeds it by setting the root logger to DEBUG when the level
    # is WARNING or above, which makes every debug call in Faust build a record (5 % of a
    # busy worker's time with NOVACRON_LOG_LEVEL=warning).
    worker.spinner = None
    log.info("worker %s on %s, web on http://%s:%d", settings.app_id,
             settings.bootstrap_servers, settings.web_host, settings.web_port)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
