"""``report.md``: the backtest's numbers (:mod:`streams.backtest.report`) as a page an operator
reads top to bottom: what was read, what fired, how it scores against labels, how good the
forecasts were, what scaling would have given, then the pictures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.backtest.report import CLASSES, SEVERITIES
from streams.backtest.report import __doc__ as DEFINITIONS

GIB = float(2**30)


def _fmt(x: Any, pct: bool = False, digits: int = 3) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100.0 * x:.1f} %"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _definitions() -> str:
    text = (DEFINITIONS or "").split("Definitions, as the report states them:", 1)[-1]
    return text.strip()


def render(m: dict[str, Any], plots: dict[str, list[tuple[str, str]]]) -> str:
    """The page, with ``plots``: kind -> [(caption, relative path)]."""
    inp = m["inputs"]
    lines = ["# NovaCron Stream backtest", "",
             f"`{m['command']}`", "",
             f"{inp['series']} series and {inp['vms']} VMs, {m['events']:,} samples in "
             f"{m['seconds']:.0f} s ({m['events_per_s'] or 0:,.0f} samples/s), through the "
             "service's own pipeline with its settings (below), no broker.", ""]
    rejected = inp["rows_rejected"]
    lines.append(f"Rows refused: {sum(rejected.values()):,}" + (
        " (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(rejected.items())) + ")"
        if rejected else "") + f". Repeated or out-of-order timestamps (counted, not "
        f"learned twice): {inp['late_rows']:,}.")
    if inp["files_skipped"]:
        lines += ["", "Files skipped:", ""]
        lines += [f"- `{path}`: {why}" for path, why in sorted(inp["files_skipped"].items())]
    lines.append("")

    inc = m["incidents"]
    lines += ["## Incidents", "",
              f"{inc['total']:,} incidents ({_fmt(inc['per_1k_samples'])} per 1,000 samples; "
              f"median duration {_minutes(inc['median_duration_s'])}).", ""]
    if inc["by_class"]:
        classes = [c for c in CLASSES if c in inc["by_class"]] + sorted(
            c for c in inc["by_class"] if c not in CLASSES)
        lines += _table(["class", *SEVERITIES, "total"],
                        [[c, *(inc["by_class"][c].get(s, 0) for s in SEVERITIES),
                          sum(inc["by_class"][c].values())] for c in classes])

    nab = m["nab"]
    if nab is not None:
        lines += ["## Against the labels (NAB-style)", "",
                  f"{nab['series']} labelled series, {nab['windows']} anomaly windows: "
                  f"{nab['windows_detected']} detected, {nab['false_positives']} incidents "
                  "outside every window (after probation). Scored at the configured alert "
                  f"threshold ({m['settings']['alert_threshold']}), not one tuned on the "
                  "labels.", ""]
        lines += _table(["profile", "score (0 = never fires, 100 = perfect)", "raw"],
                        [[name, _fmt(p["score"]), _fmt(p["raw"])]
                         for name, p in nab["profiles"].items()])

    if m["forecast"]:
        lines += ["## Forecast accuracy", ""]
        rows = []
        for metric, per_h in m["forecast"].items():
            for h, t in per_h.items():
                rows.append([metric, f"{float(h) / 60:g} min", f"{t['n']:,}",
                             _fmt(t["wape"]), _fmt(t["coverage_90"], pct=True)])
        lines += _table(["metric", "horizon", "forecasts scored", "WAPE",
                         "actuals inside 90 % interval"], rows)

    sc = m["scaling"]
    if sc is not None:
        recs = ", ".join(f"{k}: {v:,}" for k, v in sorted(sc["recommendations"].items()))
        lines += ["## Scaling", "", f"{sc['vms']} VMs; recommendations: {recs or 'none'}.", ""]
        rows = []
        for resource in ("cpu", "memory"):
            for policy in ("recommended", "static"):
                t = sc[resource][policy]
                rows.append([resource, policy, _fmt(t["slack"], pct=True),
                             _fmt(t["shortfall"], pct=True), _fmt(t["changes_per_vm_day"])])
        lines += _table(["resource", "allocation", "slack", "shortfall",
                         "changes per VM-day"], rows)

    lines += ["## Per series", ""]
    lines += _table(
        ["series", "metric", "samples", "incidents", "windows detected", "false positives",
         "recommendations", "WAPE (first horizon)"],
        [[s["name"], s["metric"], f"{s['rows']:,}", s["incidents"],
          "-" if s["windows"] is None else f"{s['windows_detected']}/{s['windows']}",
          _fmt(s["false_positives"]), _fmt(s["recommendations"]), _fmt(s["wape"])]
         for s in m["series"]])

    titles = {"incidents": "Series, labelled windows and incidents",
              "forecast": "Forecasts against actuals",
              "scaling": "Allocation against use"}
    for kind, items in plots.items():
        if not items:
            continue
        lines += [f"## {titles.get(kind, kind)}", ""]
        for caption, rel in items:
            lines += [f"![{caption}]({rel})", ""]

    lines += ["## Settings", ""]
    lines += _table(["setting", "value"], [[k, f"`{v}`"] for k, v in m["settings"].items()])
    lines += ["## Definitions", "", _definitions(), ""]
    return "\n".join(lines)
