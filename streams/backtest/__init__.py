"""``novacron backtest``: the pipeline offline over trace files, and its report.

:mod:`~streams.backtest.sources` finds and reads the files, :mod:`~streams.backtest.engine`
runs them through :func:`agents.pipeline.process_event`, :mod:`~streams.backtest.report` and
:mod:`~streams.backtest.markdown` turn the results into ``metrics.json`` and ``report.md``,
:mod:`~streams.backtest.plots` draws the pictures, :mod:`~streams.backtest.cli` ties them
together. :mod:`~streams.backtest.nab_scoring` is NAB's scorer, also used by ``bench/nab.py``.
"""
