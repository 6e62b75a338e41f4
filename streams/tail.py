"""``novacron tail`` and ``novacron feedback``: the operator's view of the output topics.

``tail`` follows ``vm.alerts``, ``vm.forecasts`` or ``vm.recommendations`` outside any consumer
group and prints each record as one aligned row of a table; ``feedback`` publishes a verdict on
an incident to ``vm.feedback``. The formatting is pure functions of a record's JSON object
(``format_alert``, ``format_forecast``, ``format_recommendation``, :func:`render_row`), shared
with the live view of ``novacron run`` (:mod:`streams.live`, :mod:`streams.runner`).

>>> cells = format_recommendation({
...     "vm_id": "vm-001", "host_id": "host-01", "timestamp": 1372636800.0,
...     "action": "scale_up", "confidence": 0.8, "current_vcpus": 2, "target_vcpus": 4,
...     "current_memory_bytes": 8 * 2**30, "target_memory_bytes": 12 * 2**30,
...     "target_host": None, "reasons": ["pattern bursty", "cpu: forecast 3.1 above 1.9 cores"]})
>>> render_row(cells, RECOMMENDATION_COLUMNS)  # doctest: +NORMALIZE_WHITESPACE
'2013-07-01 00:00:00 vm-001 host-01 scale_up 2->4 8.0->12.0 GiB - 0.80
 pattern bursty; cpu: forecast 3.1 above 1.9 cores'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.records import Feedback, to_json
from schemas.validate import incident_vm_id
from streams.clients import start_client
from streams.settings import Settings

#: ``novacron tail`` streams and their topics (before the deployment's prefix).
STREAMS = {"alerts": "vm.alerts", "forecasts": "vm.forecasts",
           "recommendations": "vm.recommendations"}
#: Severities, least to most severe.
SEVERITIES = ("low", "medium", "high", "critical")
_ASSIGN_TIMEOUT_S = 30.0
_FORECAST_DETAIL = ("cpu forecast", "memory forecast")


class Palette:
    """ANSI styles, on only when asked for (see :meth:`for_stream`).

    >>> Palette(False).paint("high", "high"), Palette(True).paint("x", "nope")
    ('high', 'x')
    >>> Palette(True).paint("high", "high")
    '\\x1b[31mhigh\\x1b[0m'
    """

    STYLES = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m",
              "low": "\033[36m", "scale_up": "\033[35m", "scale_down": "\033[32m",
              "migrate": "\033[34m", "resolved": "\033[32m", "dim": "\033[2m",
              "bold": "\033[1m"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, out: TextIO) -> Palette:
        """Colors when ``out`` is a terminal and ``NO_COLOR`` is unset (or empty)."""
        isatty = getattr(out, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(tty and not os.environ.get("NO_COLOR"))

    def paint(self, text: str, style: str | None) -> str:
        if not self.enabled or style not in self.STYLES:
            return text
        return f"{self.STYLES[style]}{text}\033[0m"


# -- values -------------------------------------------------------------------------------

def format_time(epoch_s: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An epoch time as UTC text.

    >>> format_time(1372636800.0), format_time(1372636800.0, "%m-%d %H:%M")
    ('2013-07-01 00:00:00', '07-01 00:00')
    """
    return time.strftime(fmt, time.gmtime(epoch_s))


def format_bytes(n_bytes: float) -> str:
    """Bytes in binary units, three significant digits.

    >>> format_bytes(512), format_bytes(278_900), format_bytes(8.4e9)
    ('512 B', '272 KiB', '7.82 GiB')
    """
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_value(metric: str, value: float) -> str:
    """A metric's value in its unit, read from the name's suffix.

    >>> format_value("cpu_pct", 85.25), format_value("net_rx_bytes_per_s", 3e6)
    ('85.2%', '2.86 MiB/s')
    >>> format_value("memory_used_bytes", 2**31), format_value("score", 0.51234)
    ('2 GiB', '0.512')
    """
    if metric.endswith("_pct"):
        return f"{value:.1f}%"
    if metric.endswith("_bytes_per_s"):
        return format_bytes(value) + "/s"
    if metric.endswith("_bytes"):
        return format_bytes(value)
    return f"{value:.3g}"


def short_metric(metric: str) -> str:
    """A metric's name without its unit suffix: ``disk_read_bytes_per_s`` -> ``disk_read``."""
    for suffix in ("_bytes_per_s", "_bytes", "_pct"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def format_duration(seconds: float) -> str:
    """A horizon as ``5m``, ``1h``, ``1h30m``, ``2d``, ``45s``.

    >>> [format_duration(s) for s in (300, 900, 3600, 5400, 172800, 45)]
    ['5m', '15m', '1h', '1h30m', '2d', '45s']
    """
    s = round(seconds)
    if s % 86400 == 0 and s:
        return f"{s // 86400}d"
    if s >= 3600:
        return f"{s // 3600}h" + (f"{s % 3600 // 60}m" if s % 3600 else "")
    if s % 60 == 0 and s:
        return f"{s // 60}m"
    return f"{s}s"


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, an ellipsis marking the cut.

    >>> shorten("pattern bursty", 20), shorten("pattern bursty", 8)
    ('pattern bursty', 'pattern…')
    """
    return text if len(text) <= max_chars else text[: max(0, max_chars - 1)] + "…"


def _gib(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:.1f}" if gib >= 1 else f"{gib:.2f}"


# -- rows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A column of a table: its title, its width (0: the last, free-width column) and its
    alignment. Cells wider than the column push the rest of their row right, not cut."""

    title: str
    width: int = 0
    right: bool = False


def render_row(cells: Sequence[str], columns: Sequence[Column], palette: Palette | None = None,
               styles: Mapping[int, str | None] | None = None) -> str:
    """One aligned row; ``styles`` paints cells by index (after padding, so colors never
    change the alignment).

    >>> render_row(["a", "1", "rest"], [Column("A", 3), Column("N", 3, True), Column("R")])
    'a      1  rest'
    """
    out = []
    for i, (cell, col) in enumerate(zip(cells, columns, strict=True)):
        text = cell.rjust(col.width) if col.right else cell.ljust(col.width)
        if palette is not None and styles and styles.get(i):
            text = palette.paint(text, styles[i])
        out.append(text)
    return "  ".join(out).rstrip()


def header(columns: Sequence[Column]) -> str:
    """The title row of ``columns``."""
    return render_row([c.title for c in columns], columns)


ALERT_COLUMNS = (
    Column("TIME (UTC)", 19), Column("VM", 10), Column("HOST", 10), Column("STATUS", 8),
    Column("SEVERITY", 8), Column("CLASS", 18), Column("SCORE", 5, True),
    Column("THRESH", 6, True), Column("INCIDENT (for novacron feedback)", 34),
    Column("TOP FEATURES: VALUE (BASELINE, Z)"))
FORECAST_COLUMNS = (
    Column("TIME (UTC)", 19), Column("VM", 10), Column("HOST", 10), Column("METRIC", 22),
    Column("FORECAST AT +HORIZON [80% INTERVAL]"))
RECOMMENDATION_COLUMNS = (
    Column("TIME (UTC)", 19), Column("VM", 10), Column("HOST", 10), Column("ACTION", 10),
    Column("VCPU", 6), Column("MEMORY", 14), Column("TARGET HOST", 11),
    Column("CONF", 4, True), Column("REASONS"))


def format_features(features: Sequence[Mapping[str, Any]], top: int = 2) -> str:
    """The ``top`` explaining features of an alert, in their units."""
    return ", ".join(
        f"{short_metric(f['name'])} {format_value(f['name'], f['value'])} "
        f"({format_value(f['name'], f['baseline'])}, z {f['zscore']:+.1f})"
        for f in features[:top])


def format_alert(record: Mapping[str, Any]) -> list[str]:
    """The cells of an alert's row (:data:`ALERT_COLUMNS`)."""
    return [format_time(record["timestamp"]), record["vm_id"], record["host_id"],
            record["status"], record["severity"], record["anomaly_class"],
            f"{record['score']:.2f}", f"{record['threshold']:.2f}", record["incident_id"],
            format_features(record.get("features") or [])]


def format_forecast(record: Mapping[str, Any]) -> list[str]:
    """The cells of a forecast's row (:data:`FORECAST_COLUMNS`): each horizon's value and
    its 80 % prediction interval."""
    metric = record["metric"]

    def value(v: float) -> str:
        return format_value(metric, v)

    horizons = "  ".join(
        f"+{format_duration(h['horizon_s'])} {value(h['value'])} "
        f"[{value(h['lower_80'])}, {value(h['upper_80'])}]" for h in record["horizons"])
    return [format_time(record["timestamp"]), record["vm_id"], record["host_id"], metric,
            horizons]


def short_reasons(reasons: Sequence[str], max_chars: int = 100) -> str:
    """A recommendation's reasons on one line, the forecast details (long, and in the other
    columns' numbers already) left out.

    >>> short_reasons(["pattern idle", "cpu forecast 0.1 [0, 0.2] cores", "cpu: x"])
    'pattern idle; cpu: x'
    """
    kept = [r for r in reasons if not r.startswith(_FORECAST_DETAIL)]
    return shorten("; ".join(kept), max_chars)


def format_recommendation(record: Mapping[str, Any]) -> list[str]:
    """The cells of a recommendation's row (:data:`RECOMMENDATION_COLUMNS`)."""
    memory = (f"{_gib(record['current_memory_bytes'])}->"
              f"{_gib(record['target_memory_bytes'])} GiB")
    return [format_time(record["timestamp"]), record["vm_id"], record["host_id"],
            record["action"], f"{record['current_vcpus']}->{record['target_vcpus']}", memory,
            record.get("target_host") or "-", f"{record['confidence']:.2f}",
            short_reasons(record["reasons"])]


def row_styles(stream: str, record: Mapping[str, Any]) -> dict[int, str | None]:
    """Which cells of a row to color, and how: an alert's status and severity by severity
    (green when resolved), a recommendation's action by action; the time dim."""
    styles: dict[int, str | None] = {0: "dim"}
    if stream == "alerts":
        style = "resolved" if record["status"] == "resolved" else record["severity"]
        styles.update({3: style, 4: style})
    elif stream == "recommendations":
        styles[3] = record["action"]
    return styles


FORMATTERS: dict[str, tuple[tuple[Column, ...], Callable[[Mapping[str, Any]], list[str]]]] = {
    "alerts": (ALERT_COLUMNS, format_alert),
    "forecasts": (FORECAST_COLUMNS, format_forecast),
    "recommendations": (RECOMMENDATION_COLUMNS, format_recommendation),
}


def format_line(stream: str, record: Mapping[str, Any], palette: Palette | None = None) -> str:
    """A record of ``stream`` as its table row (raises KeyError, TypeError or ValueError on a
    record without the fields it needs)."""
    columns, cells = FORMATTERS[stream]
    return render_row(cells(record), columns, palette, row_styles(stream, record))


def matches(record: Mapping[str, Any], *, vm: str | None = None, host: str | None = None,
            min_severity: str | None = None) -> bool:
    """Whether a record passes ``tail``'s filters: its VM, its host, and (alerts) a severity
    of ``min_severity`` or worse.

    >>> a = {"vm_id": "vm-1", "host_id": "h-1", "severity": "high"}
    >>> matches(a, vm="vm-1", min_severity="medium"), matches(a, min_severity="critical")
    (True, False)
    >>> matches(a, host="h-2")
    False
    """
    if vm is not None and record.get("vm_id") != vm:
        return False
    if host is not None and record.get("host_id") != host:
        return False
    if min_severity is not None:
        severity = record.get("severity")
        if severity not in SEVERITIES or \
                SEVERITIES.index(severity) < SEVERITIES.index(min_severity):
            return False
    return True


def decode_record(value: bytes | None) -> dict[str, Any]:
    """A topic record's JSON object (ValueError if it is not one)."""
    if value is None:
        raise ValueError("no value")
    data = orjson.loads(value)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


# -- novacron tail --------------------------------------------------------------------------

class TailError(Exception):
    """Why ``tail`` cannot follow its topic: reported as one line."""


async def _assign(consumer: AIOKafkaConsumer, topic: str, from_beginning: bool) -> None:
    """Take every partition of ``topic`` and fix the start positions now, so a record
    published after this returns is printed even with "latest"."""
    if topic not in await consumer.topics():
        raise TailError(f"no topic {topic} on the cluster (create the topics with "
                        "`novacron topics create`, or check NOVACRON_TOPIC_PREFIX)")
    consumer.subscribe([topic])
    deadline = time.monotonic() + _ASSIGN_TIMEOUT_S
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TailError(f"could not get the partitions of {topic}")
        await asyncio.sleep(0.05)
    partitions = list(consumer.assignment())
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)


async def _tail(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    palette = Palette.for_stream(out)
    topic = settings.topic(STREAMS[args.stream])
    columns, _ = FORMATTERS[args.stream]

    def write(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False,
                                auto_offset_reset="earliest" if args.from_beginning
                                else "latest", **settings.kafka_client_options())
    await start_client(consumer)
    try:
        await _assign(consumer, topic, args.from_beginning)
        write(palette.paint(header(columns), "bold"))
        printed = 0
        if args.limit is not None and args.limit <= 0:
            return
        async for message in consumer:
            try:
                record = decode_record(message.value)
                if not matches(record, vm=args.vm, host=args.host,
                               min_severity=args.severity):
                    continue
                line = format_line(args.stream, record, palette)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                write(palette.paint(f"(skipped a malformed record at partition "
                                    f"{message.partition}, offset {message.offset}: "
                                    f"{shorten(why, 120)})", "dim"))
                continue
            write(line)
            printed += 1
            if args.limit is not None and printed >= args.limit:
                return
    finally:
        await consumer.stop()


def run_tail(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``novacron tail``; returns the exit code (0 on Ctrl-C or after ``--limit`` rows)."""
    if args.severity is not None and args.stream != "alerts":
        print(f"novacron tail: --severity applies to alerts only, not {args.stream}",
              file=sys.stderr)
        return 2
    try:
        asyncio.run(_tail(settings, args, out or sys.stdout))
    except TailError as exc:
        print(f"novacron tail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # piped into `head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


# -- novacron feedback ----------------------------------------------------------------------

def feedback_record(args: argparse.Namespace, now_s: float) -> tuple[bytes, Feedback] | str:
    """The key (the incident's vm_id) and the verdict to publish, or why the incident id is
    refused.

    >>> ns = argparse.Namespace(incident_id="vm-1/cpu_spike/100", verdict="confirmed", note=None)
    >>> feedback_record(ns, 5.0)
    (b'vm-1', Feedback(incident_id='vm-1/cpu_spike/100', verdict='confirmed', timestamp=5.0, \
note=None))
    """
    vm_id = incident_vm_id(args.incident_id)
    if vm_id is None:
        return (f"{args.incident_id!r} is not an incident id: expected "
                "<vm_id>/<anomaly class>/<start epoch s>, as in the alert's incident_id "
                "(e.g. vm-001/cpu_spike/1372636800)")
    return vm_id.encode("utf-8"), Feedback(incident_id=args.incident_id, verdict=args.verdict,
                                           timestamp=now_s, note=args.note)


async def _publish(settings: Settings, topic: str, key: bytes, value: bytes) -> Any:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                **settings.kafka_client_options())
    await start_client(producer)
    try:
        return await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def send_feedback(settings: Settings, args: argparse.Namespace) -> int:
    """``novacron feedback``: publish the verdict, wait for the broker to confirm it."""
    made = feedback_record(args, time.time())
    if isinstance(made, str):
        print(f"novacron feedback: {made}", file=sys.stderr)
        return 2
    key, verdict = made
    topic = settings.topic("vm.feedback")
    meta = asyncio.run(_publish(settings, topic, key, to_json(verdict)))
    print(f"sent {verdict.verdict} on {verdict.incident_id} to {topic} "
          f"(partition {meta.partition}, offset {meta.offset})")
    return 0
