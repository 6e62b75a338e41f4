"""The ``novacron`` command line.

Subcommands: ``run`` (everything, on a local broker), ``worker``, ``replay``, ``backtest``
(offline, no broker), ``tail``, ``feedback``, ``topics create``,
``models list|show|checkpoint|rollback``, ``broker``, ``settings``. Bad arguments or settings
give one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from aiokafka.errors import KafkaError

from streams.broker import BrokerError
from streams.model_store import ModelError
from streams.settings import ConfigError, Settings, settings_markdown
from streams.traces import DEFAULT_BITBRAINS_DIR, TraceError

EXAMPLES = """\
examples:
  novacron run                          local broker + worker + live replay of real traces
  novacron worker                       a worker against KAFKA_BOOTSTRAP_SERVERS
  novacron replay --speedup 300         300 s of trace per second into vm.metrics
  novacron replay --vms 4 --limit 500 --speedup 0   a quick burst, as fast as possible
  novacron backtest ../shared/data/nab/data/realAWSCloudwatch
                                        the pipeline offline over files: report.md + plots
  novacron tail alerts --severity high  live alerts of severity high or worse, as a table
  novacron feedback vm-001/cpu_spike/1372636800 --false-positive --note "batch job"
                                        an operator's verdict on an incident
  novacron topics create                create the topics (NOVACRON_PARTITIONS partitions)
  novacron models list                  model versions, with their evaluation metrics
  novacron models checkpoint            snapshot every VM's learned state as a new version
  novacron models rollback 3            running workers restore every VM to version 3
  novacron broker                       just the local Kafka broker, until Ctrl-C
  novacron settings --markdown          every setting and its environment variable
"""


#: Examples shown by each subcommand's --help (the ones defined with their own epilog aside).
COMMAND_EXAMPLES = {
    "run": ["novacron run", "novacron run --speedup 600 --vms 8 --duration 120",
            "KAFKA_BOOTSTRAP_SERVERS=kafka:9092 novacron run   # an existing cluster"],
    "worker": ["KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 novacron worker",
               "NOVACRON_WEB_PORT=6067 novacron worker   # a second worker on this machine"],
    "replay": ["novacron replay --speedup 300", "novacron replay --vms 4 --limit 500 --speedup 0"],
    "topics": ["novacron topics create"],
    "topics create": ["NOVACRON_PARTITIONS=12 novacron topics create"],
    "models": ["novacron models list", "novacron models show 3", "novacron models checkpoint",
               "novacron models rollback 3"],
    "models list": ["novacron models list"],
    "models show": ["novacron models show 3"],
    "models checkpoint": ["novacron models checkpoint", "novacron models checkpoint --wait 0"],
    "models rollback": ["novacron models rollback 3", "novacron models rollback 3 --wait 120"],
    "broker": ["novacron broker"],
    "settings": ["novacron settings", "novacron settings --markdown > docs/settings.md"],
}


def _add_examples(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every subcommand without its own epilog the examples of COMMAND_EXAMPLES."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            key = f"{path} {name}".strip()
            if sub.epilog is None and key in COMMAND_EXAMPLES:
                sub.epilog = "examples:\n" + "\n".join(f"  {e}" for e in COMMAND_EXAMPLES[key])
                sub.formatter_class = argparse.RawDescriptionHelpFormatter
            _add_examples(sub, key)


class UsageError(Exception):
    """Bad command-line usage: reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative, got {raw!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="novacron", description="NovaCron Stream: streaming anomaly "
                     "detection, forecasting and scaling advice for VM fleets.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="start a local broker, a worker and a live replay",
                         description="Start a local Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS "
                         "is set), a worker and a replay of the Bitbrains traces, and show "
                         "alerts and recommendations live until Ctrl-C; then stop it all.")
    _replay_args(run, default_speedup=3600.0)
    run.add_argument("--duration", type=_positive(float), default=0.0, metavar="S",
                     help="stop by itself after S seconds (default: run until Ctrl-C)")

    sub.add_parser("worker", help="run a worker (consumes vm.metrics, publishes results)",
                   description="Run one worker process against KAFKA_BOOTSTRAP_SERVERS. Start "
                   "more to share the partitions.")

    replay = sub.add_parser("replay", help="publish real traces to vm.metrics",
                            description="Publish the Bitbrains per-VM traces to vm.metrics, "
                            "keyed by vm_id, as the hypervisor agents would.")
    _replay_args(replay, default_speedup=300.0)
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")

    _backtest_parser(sub)
    _tail_parser(sub)
    _feedback_parser(sub)

    topics = sub.add_parser("topics", help="manage the service's topics")
    topics_sub = topics.add_subparsers(dest="topics_command", metavar="ACTION",
                                       parser_class=_Parser, required=True)
    topics_sub.add_parser("create", help="create missing topics")

    models = sub.add_parser("models", help="model versions: list, show, checkpoint, rollback",
                            description="Versioned checkpoints of what the workers learned "
                            "per VM, kept in the vm.models catalog (see docs/models.md).")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION",
                                       parser_class=_Parser, required=True)
    models_sub.add_parser("list", help="every version with its evaluation metrics")
    show = models_sub.add_parser("show", help="one version: parameters, metrics, partitions")
    show.add_argument("version", type=_version, metavar="VERSION")
    checkpoint = models_sub.add_parser(
        "checkpoint", help="snapshot every VM's learned state as a new version")
    rollback = models_sub.add_parser(
        "rollback", help="running workers restore every VM's learned state from VERSION")
    rollback.add_argument("version", type=_version, metavar="VERSION")
    for p in (checkpoint, rollback):
        p.add_argument("--wait", type=_positive(float), default=60.0, metavar="S",
                       help="wait up to S seconds for every partition to confirm "
                            "(default 60; 0: do not wait)")

    sub.add_parser("broker", help="run only the local Kafka broker, until Ctrl-C")

    settings = sub.add_parser("settings", help="list the settings and their variables")
    settings.add_argument("--markdown", action="store_true", help="as a Markdown table")
    _add_examples(parser)
    return parser


BACKTEST_EXAMPLES = """\
examples:
  novacron backtest ../shared/data/nab/data/realAWSCloudwatch
      every NAB series in the folder; labels found in ../../labels/combined_windows.json
  novacron backtest ../shared/data/bitbrains_rnd --limit 2000 --out /tmp/bb
      the Bitbrains fleet (one VM per file, hosts as the replay names them), 2000 samples each
  novacron backtest my_series.csv other.csv.gz --labels my_windows.json
"""

TAIL_EXAMPLES = """\
examples:
  novacron tail alerts                          new alerts as they are published
  novacron tail alerts --severity high          high and critical only
  novacron tail recommendations --host host-02  one host's VMs
  novacron tail forecasts --vm vm-003 --from-beginning --limit 20
"""

FEEDBACK_EXAMPLES = """\
examples:
  novacron feedback vm-001/cpu_spike/1372636800 --false-positive --note "nightly batch job"
  novacron feedback vm-004/memory_leak/1372700000 --confirmed
"""


def _backtest_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "backtest", help="run the pipeline offline over trace files and write a report",
        description="Run the whole pipeline (the agents' code, no broker) over NAB-format "
        "(timestamp,value) or Bitbrains-format files, plain or gzipped, and write a report "
        "folder: report.md, metrics.json and PNG plots.",
        epilog=BACKTEST_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="files or folders (searched recursively for .csv and .csv.gz)")
    p.add_argument("--out", type=Path, default=Path("backtest-report"), metavar="DIR",
                   help="report folder (default: ./backtest-report)")
    p.add_argument("--labels", type=Path, default=None, metavar="FILE",
                   help="NAB-style anomaly windows (JSON: file key -> [[start, end], ...]); "
                        "default: labels/combined_windows.json of a NAB tree, when found")
    p.add_argument("--limit", type=_positive(int), default=None, metavar="N",
                   help="at most N samples per file")
    p.add_argument("--plots", type=_positive(int), default=12, metavar="N",
                   help="plot at most N series of each kind (default 12)")
    p.add_argument("--jobs", type=_positive(int), default=0, metavar="N",
                   help="processes to run files in (default: one per CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _tail_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "tail", help="print live alerts, forecasts or recommendations as a table",
        description="Follow an output topic and print its records as a readable, colored "
        "table (NO_COLOR or a non-terminal turns color off). Ctrl-C stops.",
        epilog=TAIL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stream", choices=("alerts", "forecasts", "recommendations"),
                   metavar="{alerts,forecasts,recommendations}")
    p.add_argument("--vm", default=None, metavar="ID", help="only this VM")
    p.add_argument("--host", default=None, metavar="ID", help="only VMs on this host")
    p.add_argument("--severity", default=None, metavar="LEVEL",
                   choices=("low", "medium", "high", "critical"),
                   help="alerts only: this severity or worse (low, medium, high, critical)")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the oldest record kept, not at new ones")
    p.add_argument("--limit", type=_positive(int), default=None, metavar="N",
                   help="stop after printing N records")


def _feedback_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "feedback", help="publish an operator's verdict on an incident",
        description="Publish a verdict on an incident of vm.alerts to vm.feedback: the VM's "
        "detector (and, with less weight, the fleet's for that anomaly class) adapts to it.",
        epilog=FEEDBACK_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("incident_id", metavar="INCIDENT_ID",
                   help="as in the alert: <vm_id>/<anomaly class>/<start epoch s>")
    verdict = p.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--false-positive", dest="verdict", action="store_const",
                         const="false_positive", help="the incident was not real")
    verdict.add_argument("--confirmed", dest="verdict", action="store_const",
                         const="confirmed", help="the incident was real")
    p.add_argument("--note", default=None, metavar="TEXT", help="a free-text note")


def _version(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a version number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"versions start at 1, got {raw!r}")
    return value


def _replay_args(p: argparse.ArgumentParser, default_speedup: float) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_BITBRAINS_DIR,
                   help=f"Bitbrains folder with <month>/<vm>.csv.gz (default: "
                        f"{DEFAULT_BITBRAINS_DIR})")
    p.add_argument("--vms", type=_positive(int), default=None, metavar="N",
                   help="replay only the first N VMs")
    p.add_argument("--limit", type=_positive(int), default=None, metavar="N",
                   help="at most N samples per VM")
    p.add_argument("--speedup", type=_positive(float), default=default_speedup, metavar="X",
                   help=f"seconds of trace per wall second; 0 = as fast as possible "
                        f"(default {default_speedup:g})")


def _setup_logging(settings: Settings) -> None:
    import logging.config

    from streams.logs import logging_config

    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format,
                                             settings.secrets()))


def cmd_worker(settings: Settings) -> int:
    from streams.worker import run_worker

    return run_worker(settings)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.replay import replay_bitbrains

    stats = asyncio.run(replay_bitbrains(settings, args.data, vms=args.vms,
                                         per_vm_limit=args.limit, speedup=args.speedup,
                                         progress=not args.no_progress))
    print(f"replayed {stats.sent:,} events in {stats.elapsed_s:.1f} s", file=sys.stderr)
    return 0


def cmd_topics(settings: Settings) -> int:
    from streams.admin import ensure_topics

    created = asyncio.run(ensure_topics(settings))
    print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    return 0


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    from streams import model_store
    from streams.models import summarize

    action = args.models_command
    if action == "checkpoint":
        version, entry = asyncio.run(model_store.request_checkpoint(settings,
                                                                    wait_s=args.wait))
        if entry is None:
            print(f"checkpoint {version} requested")
        else:
            print(f"checkpoint {version}: {entry.vms} VMs in {len(entry.reports)} partitions")
        return 0
    if action == "rollback":
        reports = asyncio.run(model_store.request_rollback(settings, args.version,
                                                           wait_s=args.wait))
        if not reports:
            print(f"rollback to {args.version} requested")
            return 0
        restored = sum(r.restored for r in reports)
        refused = sum(r.refused for r in reports)
        print(f"rolled back {restored} VMs to version {args.version} in {len(reports)} "
              f"partitions" + (f"; {refused} snapshots refused (bad signature)" if refused
                               else ""))
        return 1 if refused else 0
    catalog = asyncio.run(model_store.read_catalog(settings))
    if action == "list":
        last = catalog.last_rollback()
        print(f"{'VERSION':>7}  {'CREATED (UTC)':<19}  {'SOURCE':<6}  {'PARTS':>5}  "
              f"{'VMS':>6}  {'LEARNED':>9}  {'CPU WAPE':>8}  {'INC/1K':>6}")
        for version in sorted(catalog.versions):
            entry = catalog.versions[version]
            m = entry.metrics()
            wape = m.get("forecast_wape:cpu_pct", float("nan"))
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.model.created_at))
            mark = "  <- rolled back to" if last is not None and last[1] == version else ""
            print(f"{version:>7}  {created:<19}  {entry.model.source:<6}  "
                  f"{len(entry.reports):>5}  {entry.vms:>6}  "
                  f"{int(m.get('samples_learned', 0)):>9}  {wape:>8.3f}  "
                  f"{m.get('incidents_per_1k_samples', 0.0):>6.2f}{mark}")
        if not catalog.versions:
            print("(no versions yet: `novacron models checkpoint` takes one)")
        return 0
    entry = catalog.versions.get(args.version)
    if entry is None:
        known = ", ".join(str(v) for v in sorted(catalog.versions)) or "none"
        print(f"novacron: no model version {args.version} (versions: {known})",
              file=sys.stderr)
        return 2
    import orjson

    print(orjson.dumps({
        **dataclasses.asdict(entry.model),
        "metrics": summarize(r.metrics for r in entry.reports.values()),
        "partitions": {str(p): dataclasses.asdict(r) for p, r in sorted(entry.reports.items())},
    }, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_broker() -> int:
    from streams.broker import LocalKafka

    with LocalKafka() as kafka:
        print(f"Kafka broker at {kafka.bootstrap_servers} (log: {kafka.log_path}); "
              f"Ctrl-C stops it", flush=True)
        try:
            while kafka.process is not None and kafka.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


class _ClientErrors(logging.Handler):
    """Keeps the last error the Kafka client logged (e.g. why authentication failed)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.last = message.split(": ", 1)[-1] if "Unable connect" in message else message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # for reports
        settings = Settings.from_env()
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"novacron: config error: {exc}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "settings":
        if args.markdown:
            print(settings_markdown(), end="")
        else:
            from streams.settings import describe

            for row in describe():
                print(f"{row['env']:<32} {row['default']:<18} {row['doc']}")
        return 0
    if args.command == "backtest":  # offline: no broker, no logging setup beyond warnings
        from streams.backtest.cli import run_backtest

        try:
            return run_backtest(settings, args)
        except (TraceError, OSError) as exc:
            print(f"novacron backtest: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    if args.command == "run" and "NOVACRON_LOG_FORMAT" not in os.environ:
        # The live view is for people: its own few log lines as text.
        settings = dataclasses.replace(settings, log_format="text")
    _setup_logging(settings)
    client_errors = _ClientErrors()
    if args.command in {"replay", "topics", "models", "tail", "feedback"}:
        # Short-lived commands: the Kafka client's own complaints become part of the one
        # line printed on failure instead of log lines before it.
        kafka_log = logging.getLogger("aiokafka")
        kafka_log.handlers[:] = [client_errors]
        kafka_log.propagate = False
    needs_cluster = args.command in {"worker", "replay", "topics", "models", "tail",
                                     "feedback"}
    if needs_cluster and not settings.bootstrap_servers:
        print("novacron: config error: KAFKA_BOOTSTRAP_SERVERS is not set (or use "
              "`novacron run`, which starts a local broker)", file=sys.stderr)
        return 2
    try:
        if args.command == "worker":
            return cmd_worker(settings)
        if args.command == "replay":
            return cmd_replay(settings, args)
        if args.command == "topics":
            return cmd_topics(settings)
        if args.command == "models":
            return cmd_models(settings, args)
        if args.command == "broker":
            return cmd_broker()
        if args.command == "tail":
            from streams.tail import run_tail

            return run_tail(settings, args)
        if args.command == "feedback":
            from streams.tail import send_feedback

            return send_feedback(settings, args)
        from streams.runner import run_all

        return run_all(settings, args)
    except (TraceError, ModelError) as exc:
        print(f"novacron: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        why = f" ({client_errors.last})" if client_errors.last else ""
        print(f"novacron: Kafka at {settings.bootstrap_servers or 'the local broker'}: "
              f"{exc}{why}", file=sys.stderr)
        return 1
    except BrokerError as exc:
        print(f"novacron: local broker: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
