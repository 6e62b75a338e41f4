"""The HTML of the status page at ``/`` (and ``/vm/{vm_id}``): rendered here from a
:meth:`streams.status.StatusBoard.summary`, then kept fresh by a little inline JavaScript that
polls ``/status.json`` (and ``/status/vms/{vm_id}`` for the drill-down) every 2 s and draws
the drill-down charts as inline SVG.

Everything is inline (no build step, no external URL), so the page works offline. Every text
put into the HTML is escaped here; the script only ever sets ``textContent`` and attributes.
The tables are declared once (:data:`TABLES`): Python renders them first, the script again on
every poll, with the same column kinds.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson

#: table id -> (summary field, empty text, columns as (header, kind, *fields))
TABLES: dict[str, tuple[str, str, list[tuple[str, ...]]]] = {
    "open": ("open_incidents", "No open incident.", [
        ("VM", "vm", "vm_id"), ("host", "text", "host_id"), ("class", "cls", "anomaly_class"),
        ("severity", "sev", "severity"), ("started", "time", "started_at"),
        ("last alert", "time", "last_at"), ("score", "num", "score"),
        ("top feature", "feature", "features")]),
    "recs": ("recommendations", "No recommendation yet.", [
        ("time", "time", "timestamp"), ("VM", "vm", "vm_id"), ("host", "text", "host_id"),
        ("action", "action", "action"), ("vCPUs", "change", "current_vcpus", "target_vcpus"),
        ("memory", "change_bytes", "current_memory_bytes", "target_memory_bytes"),
        ("to host", "text", "target_host"), ("confidence", "num", "confidence"),
        ("reasons", "list", "reasons")]),
    "busy": ("busiest_vms", "No VM seen yet.", [
        ("VM", "vm", "vm_id"), ("host", "text", "host_id"), ("CPU", "pct", "cpu_pct"),
        ("memory", "bytes_of", "memory_used_bytes", "memory_total_bytes"),
        ("net in", "rate", "net_rx_bytes_per_s"), ("net out", "rate", "net_tx_bytes_per_s"),
        ("incident", "incident", "open_incident"), ("last sample", "time", "timestamp")]),
    "resolved": ("resolved_incidents", "No incident resolved lately.", [
        ("VM", "vm", "vm_id"), ("class", "cls", "anomaly_class"),
        ("severity", "sev", "severity"), ("started", "time", "started_at"),
        ("ended", "time", "ended_at"), ("lasted", "duration", "started_at", "ended_at")]),
}

_TITLES = {"open": "Open incidents", "recs": "Latest recommendations",
           "busy": "Busiest VMs (highest CPU in their latest sample)",
           "resolved": "Recently resolved incidents"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _token(value: Any) -> str:
    """A value made safe as part of a CSS class name."""
    return re.sub(r"[^a-z0-9_]", "", str(value).lower())


def fmt_time(t: float | None) -> str:
    """Event time as ``YYYY-MM-DD HH:MM:SS`` (UTC), like the script's ``fmtTime``."""
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return ""  # unreachable


def fmt_duration(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def vm_link(vm_id: str) -> str:
    return (f'<a class="vm" href="/vm/{esc(quote(vm_id, safe=""))}" data-vm="{esc(vm_id)}">'
            f"{esc(vm_id)}</a>")


def _cell(kind: str, row: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    v: Any = row.get(fields[0])
    if v is None and kind not in ("incident", "feature"):
        return "—"
    formats: dict[str, Callable[[], str]] = {
        "vm": lambda: vm_link(str(v)),
        "time": lambda: esc(fmt_time(v)),
        "sev": lambda: f'<span class="sev sev-{_token(v)}">{esc(v)}</span>',
        "cls": lambda: f'<span class="cls">{esc(v)}</span>',
        "action": lambda: f'<span class="action act-{_token(v)}">{esc(v)}</span>',
        "num": lambda: esc(f"{v:.2f}"),
        "pct": lambda: esc(f"{v:.1f} %"),
        "rate": lambda: esc(fmt_bytes(v) + "/s"),
        "change": lambda: esc(f"{v} → {row.get(fields[1])}"),
        "change_bytes": lambda: esc(f"{fmt_bytes(v)} → {fmt_bytes(row.get(fields[1]))}"),
        "bytes_of": lambda: esc(f"{fmt_bytes(v)} / {fmt_bytes(row.get(fields[1]))}"),
        "duration": lambda: esc(fmt_duration((row.get(fields[1]) or 0) - v)),
        "list": lambda: esc("; ".join(map(str, v))),
        "incident": lambda: ("—" if not v else f'<span class="sev sev-{_token(v["severity"])}">'
                             f'{esc(v["anomaly_class"])}</span>'),
        "feature": lambda: ("—" if not v else
                            esc(f'{v[0]["name"]} (z {v[0]["zscore"]:.1f})')),
    }
    return formats.get(kind, lambda: esc(v))()


def render_table(table_id: str, summary: Mapping[str, Any]) -> str:
    key, empty, columns = TABLES[table_id]
    rows = summary.get(key) or []
    head = "".join(f"<th>{esc(c[0])}</th>" for c in columns)
    if rows:
        body = "".join("<tr>" + "".join(f"<td>{_cell(c[1], r, c[2:])}</td>" for c in columns)
                       + "</tr>" for r in rows)
    else:
        body = f'<tr class="empty"><td colspan="{len(columns)}">{esc(empty)}</td></tr>'
    return (f'<section><h2>{esc(_TITLES[table_id])}</h2><table id="{table_id}">'
            f'<thead><tr>{head}</tr></thead><tbody id="{table_id}-body">{body}</tbody>'
            "</table></section>")


def _cards(s: Mapping[str, Any]) -> str:
    lag = s["consumer_lag"]
    lag_input = lag.get("input")
    cards = [
        ("events-per-s", "events/s", f'{s["events_per_s"]:,.1f}',
         f'last {s["rate_window_s"]:.0f} s, {s["events_total"]:,} in all'),
        ("lag", "consumer lag", f'{lag_input if lag_input is not None else lag["total"]:,}',
         f'messages behind on {lag["input_topic"]}' if lag_input is not None
         else "messages behind, all topics"),
        ("vms", "VMs on this worker", f'{s["vms_tracked"]:,}',
         f'{s["vms_evicted_total"]:,} dropped (over {s["bounds"]["max_vms"]:,})'),
        ("open-count", "open incidents", f'{s["open_incidents_total"]:,}',
         f'{len(s["resolved_incidents"])} resolved lately'),
        ("last-event", "latest sample", fmt_time(s["last_event_timestamp"]), "event time, UTC"),
    ]
    return "".join(
        f'<div class="card"><span class="label">{esc(label)}</span>'
        f'<span class="value" id="{cid}">{esc(value)}</span>'
        f'<span class="sub" id="{cid}-sub">{esc(sub)}</span></div>'
        for cid, label, value, sub in cards)


def render_page(summary: Mapping[str, Any], vm_id: str | None = None) -> str:
    """The whole page for ``summary`` (:meth:`StatusBoard.summary`), with the drill-down of
    ``vm_id`` open if given."""
    tables = "".join(render_table(t, summary) for t in ("open", "resolved", "busy", "recs"))
    columns = orjson.dumps({t: {"key": k, "empty": e, "columns": c}
                            for t, (k, e, c) in TABLES.items()}).decode()
    columns = columns.replace("<", "\\u003c")  # cannot end the script element
    drill_title = f"VM {esc(vm_id)}" if vm_id else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NovaCron Stream · worker status</title>
<style>{CSS}</style></head>
<body data-refreshed="0">
<header><h1><a href="/">NovaCron Stream</a> · worker status</h1>
<p class="scope">This page shows what <strong>this worker</strong> processes: the VMs of its
input partitions. Each worker serves its own; a VM's drill-down (<code>/vm/&lt;id&gt;</code>)
is answered by whichever worker holds that VM. Times are event time (UTC).</p>
<p id="stamp" class="stamp">rendered {esc(fmt_time(summary["now"]))} UTC · refreshes every 2 s</p>
</header>
<section class="cards">{_cards(summary)}</section>
<section id="drill" data-vm="{esc(vm_id or "")}"{"" if vm_id else " hidden"}>
<h2><span id="drill-title">{drill_title}</span>
<a href="/" id="drill-close" class="close" title="close">&times;</a></h2>
<p id="drill-meta" class="meta">loading…</p>
<div id="charts" class="charts"></div>
<p class="legend"><span class="key series-key"></span> samples
<span class="key band-key"></span> forecast, 90 % interval
<span class="key sev-low"></span> low <span class="key sev-medium"></span> medium
<span class="key sev-high"></span> high <span class="key sev-critical"></span> critical
incident</p>
</section>
{tables}
<footer>JSON: <a href="/status.json">/status.json</a>, <code>/status/vms/&lt;vm_id&gt;</code>
(the drill-down), <code>/vms/&lt;vm_id&gt;</code> (the VM's learned state); Prometheus:
<a href="/metrics">/metrics</a>.
Bounds: {esc(", ".join(f"{k} {v}" for k, v in summary["bounds"].items()))}.</footer>
<script id="tables" type="application/json">{columns}</script>
<script>{JS}</script>
</body></html>
"""


CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --accent: #0969da;
  --low: #4f8fdd; --medium: #d4a72c; --high: #e16f24; --critical: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1320px; padding: 12px 20px 40px; color: var(--fg);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 20px; margin: 4px 0; } h1 a { color: inherit; text-decoration: none; }
h2 { font-size: 16px; margin: 18px 0 6px; }
a { color: var(--accent); } code { font-size: 12px; }
.scope, .stamp, .meta, footer { color: var(--muted); margin: 2px 0; }
.stamp.stale { color: var(--critical); font-weight: 600; }
.cards { display: flex; gap: 10px; flex-wrap: wrap; margin-top: 10px; }
.card { flex: 1 1 180px; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
  background: var(--bg); display: flex; flex-direction: column; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; }
.card .value { font-size: 24px; font-weight: 600; }
.card .value#last-event { font-size: 17px; padding: 4px 0 3px; }
.card .sub { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  white-space: nowrap; max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
th { background: var(--bg); font-weight: 600; font-size: 12px; }
tr.empty td { color: var(--muted); font-style: italic; }
.sev { padding: 1px 6px; border-radius: 8px; color: #fff; font-size: 12px; }
.sev.sev-low { background: var(--low); } .sev.sev-medium { background: var(--medium); }
.sev.sev-high { background: var(--high); } .sev.sev-critical { background: var(--critical); }
.cls { font-family: ui-monospace, monospace; font-size: 12px; }
.action { font-weight: 600; }
#drill { border: 1px solid var(--line); border-radius: 6px; padding: 4px 12px 10px;
  margin-top: 12px; }
#drill[hidden] { display: none; }
.close { float: right; text-decoration: none; font-size: 20px; color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr));
  gap: 6px 14px; }
svg.chart { width: 100%; height: auto; }
svg .title { font-size: 13px; font-weight: 600; fill: var(--fg); }
svg .tick { font-size: 10px; fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .series { fill: none; stroke: var(--accent); stroke-width: 1.5; }
svg .band { fill: #8250df; fill-opacity: 0.22; stroke: none; }
svg .fc-line { fill: none; stroke: #8250df; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .now { stroke: var(--muted); stroke-dasharray: 2 3; }
svg .inc { fill-opacity: 0.22; } svg .inc-mark { fill-opacity: 0.9; }
svg .sev-low { fill: var(--low); } svg .sev-medium { fill: var(--medium); }
svg .sev-high { fill: var(--high); } svg .sev-critical { fill: var(--critical); }
.legend { color: var(--muted); font-size: 12px; }
.key { display: inline-block; width: 14px; height: 10px; margin: 0 3px 0 10px;
  vertical-align: middle; }
.series-key { border-top: 2px solid var(--accent); height: 0; }
.band-key { background: #8250df; opacity: 0.35; }
.key.sev-low { background: var(--low); } .key.sev-medium { background: var(--medium); }
.key.sev-high { background: var(--high); } .key.sev-critical { background: var(--critical); }
footer { margin-top: 24px; font-size: 12px; }
"""

JS = r"""
(() => {
'use strict';
const $ = (id) => document.getElementById(id);
const TABLES = JSON.parse($('tables').textContent);
const CHARTS = [['cpu_pct', 'CPU', 'pct'], ['memory_used_bytes', 'Memory used', 'bytes'],
  ['net_rx_bytes_per_s', 'Network in', 'rate'], ['net_tx_bytes_per_s', 'Network out', 'rate'],
  ['disk_read_bytes_per_s', 'Disk read', 'rate'], ['disk_write_bytes_per_s', 'Disk write', 'rate']];
// The SVG namespace, read from the parser rather than written out.
const NS = (() => { const d = document.createElement('div'); d.innerHTML = '<svg></svg>';
  return d.firstChild.namespaceURI; })();
const drill = $('drill');
let vm = drill.dataset.vm || null;
let refreshed = 0;

const token = (v) => String(v).toLowerCase().replace(/[^a-z0-9_]/g, '');
function fmtTime(t) {
  return t == null ? '—' : new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19);
}
function fmtBytes(x) {
  if (x == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  if (i === 0) return (Math.abs(x) < 10 && x !== 0 ? x.toFixed(1) : x.toFixed(0)) + ' B';
  return x.toFixed(1) + ' ' + units[i];
}
function fmtDuration(s) {
  s = Math.max(0, s);
  if (s < 90) return s.toFixed(0) + ' s';
  if (s < 5400) return (s / 60).toFixed(0) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}
function fmtValue(kind, v) {
  if (kind === 'pct') return (v % 1 ? v.toFixed(1) : v.toFixed(0)) + ' %';
  if (kind === 'bytes') return fmtBytes(v);
  return fmtBytes(v) + '/s';
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
function vmLink(id) {
  const a = el('a', 'vm', id);
  a.href = '/vm/' + encodeURIComponent(id);
  a.dataset.vm = id;
  return a;
}
function cell(kind, row, fields) {
  const v = row[fields[0]];
  if (v == null && kind !== 'incident' && kind !== 'feature') return '—';
  switch (kind) {
    case 'vm': return vmLink(String(v));
    case 'time': return fmtTime(v);
    case 'sev': return el('span', 'sev sev-' + token(v), v);
    case 'cls': return el('span', 'cls', v);
    case 'action': return el('span', 'action act-' + token(v), v);
    case 'num': return Number(v).toFixed(2);
    case 'pct': return Number(v).toFixed(1) + ' %';
    case 'rate': return fmtBytes(v) + '/s';
    case 'change': return v + ' → ' + row[fields[1]];
    case 'change_bytes': return fmtBytes(v) + ' → ' + fmtBytes(row[fields[1]]);
    case 'bytes_of': return fmtBytes(v) + ' / ' + fmtBytes(row[fields[1]]);
    case 'duration': return fmtDuration((row[fields[1]] || 0) - v);
    case 'list': return v.join('; ');
    case 'incident': return v ? el('span', 'sev sev-' + token(v.severity), v.anomaly_class) : '—';
    case 'feature': return v && v.length ? v[0].name + ' (z ' + v[0].zscore.toFixed(1) + ')' : '—';
    default: return String(v);
  }
}
function fillTable(id, summary) {
  const spec = TABLES[id], rows = summary[spec.key] || [], body = $(id + '-body');
  const out = document.createDocumentFragment();
  for (const r of rows) {
    const tr = el('tr');
    for (const c of spec.columns) {
      const td = el('td'), content = cell(c[1], r, c.slice(2));
      td.append(content);
      tr.append(td);
    }
    out.append(tr);
  }
  if (!rows.length) {
    const tr = el('tr', 'empty'), td = el('td', null, spec.empty);
    td.colSpan = spec.columns.length;
    tr.append(td);
    out.append(tr);
  }
  body.replaceChildren(out);
}
function setCard(id, value, sub) { $(id).textContent = value; $(id + '-sub').textContent = sub; }
function renderSummary(s) {
  const lag = s.consumer_lag;
  setCard('events-per-s', s.events_per_s.toLocaleString('en', {maximumFractionDigits: 1}),
          'last ' + s.rate_window_s + ' s, ' + s.events_total.toLocaleString('en') + ' in all');
  if (lag.input != null) setCard('lag', lag.input.toLocaleString('en'),
                                 'messages behind on ' + lag.input_topic);
  else setCard('lag', lag.total.toLocaleString('en'), 'messages behind, all topics');
  setCard('vms', s.vms_tracked.toLocaleString('en'), s.vms_evicted_total.toLocaleString('en')
          + ' dropped (over ' + s.bounds.max_vms.toLocaleString('en') + ')');
  setCard('open-count', s.open_incidents_total.toLocaleString('en'),
          s.resolved_incidents.length + ' resolved lately');
  setCard('last-event', fmtTime(s.last_event_timestamp), 'event time, UTC');
  for (const id of Object.keys(TABLES)) fillTable(id, s);
}

function svg(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  if (parent) parent.append(e);
  return e;
}
function chart(d, metric, label, kind) {
  const W = 620, H = 190, L = 66, R = 14, T = 22, B = 28;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', 'data-metric': metric});
  svg('text', {x: L, y: 15, class: 'title'}, root, label);
  const ts = d.timestamps, ys = d.series[metric] || [], fc = d.forecasts[metric];
  if (!ts.length) { svg('text', {x: L, y: H / 2, class: 'tick'}, root, 'no samples'); return root; }
  const last = ts[ts.length - 1];
  let x0 = ts[0], x1 = last, ymax = Math.max(...ys);
  const pts = fc ? fc.points.filter((p) => p.at > x0) : [];
  for (const p of pts) { x1 = Math.max(x1, p.at); ymax = Math.max(ymax, p.upper_90, p.value); }
  // CPU is a percentage: the axis stops at 100 % (a band above it is clipped).
  ymax = kind === 'pct' ? Math.min(100, Math.max(ymax * 1.08, 10)) : (ymax > 0 ? ymax * 1.08 : 1);
  if (x1 <= x0) { x0 -= 60; x1 += 60; }
  const X = (t) => (L + (t - x0) / (x1 - x0) * (W - L - R)).toFixed(1);
  const Y = (v) => (T + (1 - Math.min(ymax, Math.max(0, v)) / ymax) * (H - T - B)).toFixed(1);
  for (let k = 0; k <= 4; k++) {
    const v = ymax * k / 4, y = Y(v);
    svg('line', {x1: L, x2: W - R, y1: y, y2: y, class: 'grid'}, root);
    svg('text', {x: L - 4, y: Number(y) + 3, 'text-anchor': 'end', class: 'tick'}, root,
        fmtValue(kind, v));
  }
  for (const inc of d.incidents) {
    const end = inc.ended_at == null ? last : inc.ended_at;
    if (end < x0) continue;
    const a = Math.max(inc.started_at, x0), sev = 'sev-' + token(inc.severity);
    const g = svg('g', {class: 'incident', 'data-incident': inc.incident_id}, root);
    svg('title', {}, g, `${inc.anomaly_class} (${inc.severity}) ${fmtTime(inc.started_at)} → `
        + (inc.ended_at == null ? 'open' : fmtTime(inc.ended_at)));
    svg('rect', {x: X(a), y: T, width: Math.max(3, X(end) - X(a)).toFixed(1),
                 height: H - T - B, class: 'inc ' + sev}, g);
    svg('path', {d: `M${X(a)},${T} l-5,-7 h10 z`, class: 'inc-mark ' + sev}, g);
  }
  if (pts.length) {
    // The band starts at the sample the forecast was made from (or the last one).
    let i = ts.findIndex((t) => t >= fc.timestamp); if (i < 0) i = ts.length - 1;
    const start = {at: ts[i], value: ys[i], lower_90: ys[i], upper_90: ys[i]};
    const band = [start, ...pts];
    const upper = band.map((p) => `${X(p.at)},${Y(p.upper_90)}`);
    const lower = band.slice().reverse().map((p) => `${X(p.at)},${Y(p.lower_90)}`);
    const area = svg('path', {d: 'M' + upper.join('L') + 'L' + lower.join('L') + 'Z',
                              class: 'band'}, root);
    svg('title', {}, area, `forecast made ${fmtTime(fc.timestamp)} by ${fc.model}, 90 % interval`);
    svg('path', {d: 'M' + band.map((p) => `${X(p.at)},${Y(p.value)}`).join('L'),
                 class: 'fc-line'}, root);
  }
  svg('path', {d: 'M' + ts.map((t, i) => `${X(t)},${Y(ys[i])}`).join('L'), class: 'series'},
      root);
  svg('line', {x1: X(last), x2: X(last), y1: T, y2: H - B, class: 'now'}, root);
  svg('text', {x: L, y: H - 8, class: 'tick'}, root, fmtTime(x0));
  svg('text', {x: W - R, y: H - 8, 'text-anchor': 'end', class: 'tick'}, root,
      pts.length ? 'forecast to ' + fmtTime(x1) : 'last sample ' + fmtTime(last));
  return root;
}
function renderVM(d) {
  $('drill-title').textContent = 'VM ' + d.vm_id;
  const open = d.incidents.filter((i) => i.ended_at == null).length;
  $('drill-meta').textContent = `host ${d.host_id} · ${d.vcpus} vCPUs · `
    + `${fmtBytes(d.memory_total_bytes)} memory · ${d.samples} samples `
    + `${fmtTime(d.timestamps[0])} → ${fmtTime(d.timestamps[d.timestamps.length - 1])} · `
    + `${d.incidents.length} recent incidents, ${open} open`;
  $('charts').replaceChildren(...CHARTS.map(([m, label, kind]) => chart(d, m, label, kind)));
}
async function getJSON(url) {
  const r = await fetch(url, {cache: 'no-store'});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}
async function refresh() {
  const stamp = $('stamp');
  try {
    renderSummary(await getJSON('/status.json'));
    stamp.textContent = 'updated ' + new Date().toISOString().slice(11, 19)
      + ' UTC · refreshes every 2 s';
    stamp.classList.remove('stale');
  } catch (e) {
    stamp.textContent = 'not updated: ' + e.message;
    stamp.classList.add('stale');
  }
  if (vm) {
    const asked = vm;
    try {
      const d = await getJSON('/status/vms/' + encodeURIComponent(asked));
      if (asked === vm) renderVM(d);
    } catch (e) {
      if (asked === vm) {
        $('drill-meta').textContent = e.message;
        $('charts').replaceChildren();
      }
    }
  }
  document.body.dataset.refreshed = String(++refreshed);
}
function show(id, push) {
  vm = id;
  drill.hidden = !id;
  drill.dataset.vm = id || '';
  if (id) { $('drill-title').textContent = 'VM ' + id; $('drill-meta').textContent = 'loading…'; }
  $('charts').replaceChildren();
  if (push) history.pushState({vm: id}, '', id ? '/vm/' + encodeURIComponent(id) : '/');
  if (id) refresh();
}
document.addEventListener('click', (e) => {
  if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const a = e.target.closest('a.vm, #drill-close');
  if (!a) return;
  e.preventDefault();
  show(a.id === 'drill-close' ? null : a.dataset.vm, true);
});
window.addEventListener('popstate', (e) => show(e.state && e.state.vm, false));
async function loop() { await refresh(); setTimeout(loop, 2000); }
loop();
})();
"""
