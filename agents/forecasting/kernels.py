"""The series forecaster's arithmetic, compiled, over rows of :mod:`agents.forecasting.layout`.

Each kernel loops over the rows it is given (one per series: a VM's metric) and does, per row,
exactly what the one-series Python forecaster did before it (the tests replay real traces
through both and compare every output bit for bit): the same operations in the same order, in
double precision, stored where the state is single precision. Two rare steps stay in Python
(:mod:`agents.forecasting.fleet`): the periodic candidate's refresh (numpy's median and
autocorrelation, hourly) and the start of Holt-Winters' season (``statistics.mean``, once).
:func:`learn_rows` flags a row that needs one (``I_TODO``), and :func:`grid_rows` runs after.

``o`` is :meth:`agents.forecasting.layout.Offsets.as_tuple`: (horizons, capacity, width,
errors, weights, pending, scored, quantiles, scale, widen, made_at, mask).
"""

from __future__ import annotations

import math

import numpy as np

from agents.anomaly._jit import kernel
from agents.forecasting.layout import (
    D_EWMA,
    D_HW_FIRST,
    D_HW_LEVEL,
    D_HW_PATH,
    D_HW_SEASON,
    D_HW_TOTAL,
    D_HW_TREND,
    D_LAST_GRID,
    D_LONG,
    D_NOW,
    D_PH,
    DEFAULT,
    I_DRIFTS,
    I_HW_COUNT,
    I_HW_FIRST_LEN,
    I_HW_HOUR,
    I_HW_PATH_LEN,
    I_HW_POS,
    I_HW_READY,
    I_LAST_CELL,
    I_N,
    I_PENDING,
    I_PERIOD,
    I_PRING_LEN,
    I_RING_LEN,
    I_SINCE,
    I_TODO,
    KC,
    NF,
    PERIODIC_CELLS,
    RING,
    S_LEVELS,
    S_PRING,
    S_RING,
    SEASON,
    SLOTS,
    TIMED,
    TODO_HW_START,
    TODO_PERIODIC,
    K,
)
from agents.forecasting.page_hinkley import WIDTH as PH_WIDTH
from agents.forecasting.page_hinkley import ph_update

_DAY_S = 86400.0
_CELL_S = 300.0
_EVERY = 12  # periodic refresh, in cells
_ALPHAS = (0.1, 0.3, 0.6)
_MEDIANS = (3, 6, 12, 24, 48)
_PROFILE_ALPHA = 0.2
_HW_ALPHA, _HW_BETA, _HW_GAMMA = 0.1, 0.01, 0.5
_Q = (0.10, 0.90, 0.05, 0.95)
_QUANTILE_RATE = 0.02
_COMBO_RATE = 0.05
_WIDEN_RATE = 0.01
_DECAY = 0.5 ** (1.0 / 288.0)  # errors: half-life of a day of scored forecasts at 5 minutes
_SCALE_DECAY = 0.5 ** (1.0 / 48.0)
# Page-Hinkley on the shortest horizon's errors
_PH_MIN, _PH_DELTA, _PH_THRESHOLD, _PH_ALPHA = 100.0, 0.1, 50.0, 1 - 0.0001


@kernel
def _median_last(f32, r, start, length, n):
    """Median of the last ``n`` (fewer while filling) of ``length`` values from ``start``."""
    m = n if n < length else length
    s = np.empty(m)
    for j in range(m):
        s[j] = f32[r, start + length - m + j]
    s.sort()
    i = m // 2
    return s[i] if m % 2 else (s[i - 1] + s[i]) / 2


@kernel
def choice(f32, f64, r, o, h):
    """The model of the least recent error at horizon ``h`` (the first of equals), or the
    default until the horizon has been scored a few times."""
    if f64[r, o[6] + h] < 3:
        return DEFAULT
    base = o[3] + h * K
    best = 0
    for j in range(1, K):
        if f32[r, base + j] < f32[r, base + best]:
            best = j
    return best


@kernel
def _band(f64, r, o, h, point, out):
    """out[:] = point, lower 80, upper 80, lower 90, upper 90 (never below 0; a point outside
    its own 80 % interval moves to its nearer edge)."""
    scale = f64[r, o[8] + h]
    s80 = scale * math.exp(f64[r, o[9] + 2 * h])
    s90 = scale * math.exp(f64[r, o[9] + 2 * h + 1])
    i = o[7] + h * 4
    a = point + s80 * f64[r, i]
    b = point + s80 * f64[r, i + 1]
    a = a if a > 0.0 else 0.0
    b = b if b > 0.0 else 0.0
    lo80 = b if b < a else a
    hi80 = b if b > a else a
    lo90 = point + s90 * f64[r, i + 2]
    lo90 = lo80 if lo80 < lo90 else lo90
    lo90 = lo90 if lo90 > 0.0 else 0.0
    hi90 = point + s90 * f64[r, i + 3]
    hi90 = hi80 if hi80 > hi90 else hi90
    point = lo80 if lo80 > point else point
    out[0] = hi80 if hi80 < point else point
    out[1] = lo80
    out[2] = hi80
    out[3] = lo90
    out[4] = hi90


@kernel
def _or_last(v, last):
    return last if v != v else (v if v > 0.0 else 0.0)


@kernel
def _timed(f32, f64, i64, r, c, t, h_s, last):
    """Timed candidate ``c`` (daily, periodic, Holt-Winters) for ``t + h_s``."""
    if c == NF:  # the daily profile
        ts = t + h_s
        v = f32[r, S_LEVELS + int((ts % _DAY_S) / _DAY_S * SLOTS)]
        return last if v != v else v
    if c == NF + 1:  # periodic
        p = i64[r, I_PERIOD]
        n = i64[r, I_PRING_LEN]
        if p == 0:
            return last
        ahead = int((t + h_s) // _CELL_S) - i64[r, I_LAST_CELL]
        k0 = -(-ahead // p)
        k0 = k0 if k0 > 1 else 1
        i = n - 1 + ahead - k0 * p
        past = np.empty(3)
        m = 0
        for j in (i, i - p, i - 2 * p):
            if 0 <= j < n:
                past[m] = f32[r, S_PRING + j]
                m += 1
        if m == 0:
            return last
        s = np.sort(past[:m])
        v = s[m // 2] if m % 2 else (s[m // 2 - 1] + s[m // 2]) / 2
        return _or_last(v, last)
    ahead = int((t + h_s) // 3600.0) - i64[r, I_HW_HOUR]  # Holt-Winters
    if 0 <= ahead < i64[r, I_HW_PATH_LEN]:
        return _or_last(f64[r, D_HW_PATH + ahead], last)
    return last


@kernel
def flat_candidates(f32, f64, i64, r, out):
    """The flat candidates' forecasts (the first NF), in order."""
    n_ring = i64[r, I_RING_LEN]
    last = float(f32[r, S_RING + n_ring - 1]) if i64[r, I_N] else 0.0
    out[0] = last
    for i in range(3):
        out[1 + i] = f64[r, D_EWMA + i]
    for i in range(5):
        out[4 + i] = _median_last(f32, r, S_RING, n_ring, _MEDIANS[i]) if n_ring else 0.0
    for i in range(2):
        v = f64[r, D_LONG + i]
        out[9 + i] = v if v == v else last


@kernel
def _one(f32, f64, i64, r, c, t, h_s):
    """Candidate ``c``'s forecast at one horizon, computing none of the others."""
    n_ring = i64[r, I_RING_LEN]
    last = float(f32[r, S_RING + n_ring - 1]) if i64[r, I_N] else 0.0
    if c >= NF:
        return _timed(f32, f64, i64, r, c, t, h_s, last)
    if c == 0:
        return last
    if c <= 3:
        return f64[r, D_EWMA + c - 1]
    c -= 4
    if c < 5:
        return _median_last(f32, r, S_RING, n_ring, _MEDIANS[c]) if n_ring else 0.0
    v = f64[r, D_LONG + c - 5]
    return v if v == v else last


@kernel
def _combo(f32, r, o, h, cands):
    total = 0.0
    base = o[4] + h * KC
    for j in range(KC):
        total += f32[r, base + j] * cands[j]
    return total


@kernel
def forecast_rows(f32, f64, i64, rows, t, o, hs, out, chosen):
    """out[k, h] = (point, lower 80, upper 80, lower 90, upper 90) of row ``rows[k]`` from
    ``t[k]`` at each horizon ``hs[h]``; chosen[k, h] the model used."""
    cands = np.empty(KC)
    for k in range(rows.shape[0]):
        r = rows[k]
        have_paths = False
        for h in range(o[0]):
            c = choice(f32, f64, r, o, h)
            chosen[k, h] = c
            if c < KC:
                point = _one(f32, f64, i64, r, c, t[k], hs[h])
            else:
                if not have_paths:
                    flat_candidates(f32, f64, i64, r, cands)
                    have_paths = True
                for j in range(NF, KC):
                    cands[j] = _timed(f32, f64, i64, r, j, t[k], hs[h], cands[0])
                point = _combo(f32, r, o, h, cands)
            _band(f64, r, o, h, point, out[k, h])


@kernel
def _score(f32, f64, i64, r, o, hs, grid_s, t, y, res):
    """Score the pending forecasts whose target time is ``t`` against ``y``. res: [drifted,
    |error|, |actual| (NaN: none scored at the shortest horizon), model before a drift]."""
    n_h = o[0]
    tol = grid_s / 2.0
    n_p = i64[r, I_PENDING]
    made = o[10]
    before = np.empty(K)
    for j in range(K):
        before[j] = f32[r, o[3] + j]
    before_scored = f64[r, o[6]]
    band = np.empty(5)
    fc = np.empty(K + 1)
    for idx in range(n_p):
        m = f64[r, made + idx]
        for h in range(n_h):
            h_s = hs[h]
            if not (t - h_s - tol - 1.0 <= m <= t - h_s + tol + 1.0):
                continue
            if i64[r, o[11] + idx] & (1 << h):
                continue
            if m + hs[0] - t > tol:
                return  # later rows are not due either
            if abs(m + h_s - t) > tol:
                continue
            row = o[5] + idx * o[2]
            at = row + NF + TIMED * h
            for j in range(NF):
                fc[j] = f32[r, row + j]
            for j in range(TIMED):
                fc[NF + j] = f32[r, at + j]
            base = o[3] + h * K
            fresh = 1 - _DECAY
            for j in range(K):
                f32[r, base + j] = _DECAY * f32[r, base + j] + fresh * abs(y - fc[j])
            f64[r, o[6] + h] = _DECAY * f64[r, o[6] + h] + 1.0
            chosen = fc[K]
            _update_weights(f32, f64, r, o, h, fc, fc[KC], y)
            _update_widths(f64, r, o, h, chosen, y, band)
            _update_quantiles(f64, r, o, h, y - chosen)
            if h == 0:
                _watch_drift(f32, f64, i64, r, o, abs(y - chosen), before, before_scored,
                             res)
                res[1] = abs(y - chosen)
                res[2] = abs(y)
            i64[r, o[11] + idx] |= 1 << h


@kernel
def _update_weights(f32, f64, r, o, h, cands, combo, y):
    scale = f64[r, o[8] + h]
    if not scale or combo == y:
        return
    sign = 1.0 if combo > y else -1.0
    base = o[4] + h * KC
    stepped = np.empty(KC, dtype=np.float32)
    for j in range(KC):
        z = sign * (cands[j] - combo) / scale
        z = z if z < 3.0 else 3.0
        z = z if z > -3.0 else -3.0
        stepped[j] = f32[r, base + j] * math.exp(-_COMBO_RATE * z)
    total = 0.0
    for j in range(KC):
        total += stepped[j]
    for j in range(KC):
        w = stepped[j] / total
        f32[r, base + j] = 1e-4 if w < 1e-4 else w


@kernel
def _update_widths(f64, r, o, h, point, y, band):
    if not f64[r, o[8] + h]:
        return
    _band(f64, r, o, h, point, band)
    i = o[9] + 2 * h
    for lo, hi, miss_rate in ((band[1], band[2], 0.2), (band[3], band[4], 0.1)):
        missed = 0.0 if lo <= y <= hi else 1.0
        w = f64[r, i] + _WIDEN_RATE * (missed - miss_rate) / miss_rate
        w = w if w < 3.0 else 3.0
        f64[r, i] = w if w > -3.0 else -3.0
        i += 1


@kernel
def _update_quantiles(f64, r, o, h, residual):
    scale = f64[r, o[8] + h]
    if scale > 0:
        z = residual / scale
        j = o[7] + h * 4
        for tau in _Q:
            q = f64[r, j]
            f64[r, j] = q + _QUANTILE_RATE * (tau - (1.0 if z < q else 0.0))
            j += 1
    d = _SCALE_DECAY
    f64[r, o[8] + h] = d * scale + (1 - d) * abs(residual) if scale else abs(residual)


@kernel
def _watch_drift(f32, f64, i64, r, o, abs_error, before, before_scored, res):
    ref = f64[r, o[8]]
    if not ref:
        ref = abs_error if abs_error else 1.0
    x = abs_error / ref
    x = 50.0 if x > 50.0 else x
    if ph_update(f64[r, D_PH:D_PH + PH_WIDTH], x, _PH_MIN, _PH_DELTA, _PH_THRESHOLD,
                 _PH_ALPHA):
        i64[r, I_DRIFTS] += 1
        res[0] = 1.0
        if before_scored < 3:
            res[3] = DEFAULT
        else:
            best = 0
            for j in range(1, K):
                if before[j] < before[best]:
                    best = j
            res[3] = best
        # Forget how the candidates did before the change: reselect on fresh evidence.
        for h in range(o[0]):
            s = f64[r, o[6] + h]
            f64[r, o[6] + h] = 2.0 if s > 2.0 else s
        for j in range(o[3], o[3] + K * o[0]):
            f32[r, j] *= 0.1


@kernel
def _learn_candidates(f32, f64, i64, r, t, y):
    # the recent values
    n_ring = i64[r, I_RING_LEN]
    if n_ring < RING:
        f32[r, S_RING + n_ring] = y
        i64[r, I_RING_LEN] = n_ring + 1
    else:
        for j in range(RING - 1):
            f32[r, S_RING + j] = f32[r, S_RING + j + 1]
        f32[r, S_RING + RING - 1] = y
    # exponential averages
    if i64[r, I_N]:
        for i in range(3):
            e = f64[r, D_EWMA + i]
            f64[r, D_EWMA + i] = e + _ALPHAS[i] * (y - e)
    else:
        for i in range(3):
            f64[r, D_EWMA + i] = y
    # the daily profile
    i = S_LEVELS + int((t % _DAY_S) / _DAY_S * SLOTS)
    old = f32[r, i]
    f32[r, i] = y if old != old else old + _PROFILE_ALPHA * (y - old)
    _learn_periodic(f32, f64, i64, r, t, y)
    _learn_holt_winters(f64, i64, r, t, y)
    i64[r, I_N] += 1


@kernel
def _learn_periodic(f32, f64, i64, r, t, y):
    cell = int(t // _CELL_S)
    n = i64[r, I_PRING_LEN]
    last_cell = i64[r, I_LAST_CELL]
    if cell == last_cell and n:
        f32[r, S_PRING + n - 1] = y
        return
    gap = 1
    if last_cell >= 0:
        gap = cell - last_cell
        gap = gap if gap < PERIODIC_CELLS else PERIODIC_CELLS
    gap = gap if gap > 1 else 1
    for _ in range(gap):
        if n < PERIODIC_CELLS:
            f32[r, S_PRING + n] = y
            n += 1
        else:
            for j in range(PERIODIC_CELLS - 1):
                f32[r, S_PRING + j] = f32[r, S_PRING + j + 1]
            f32[r, S_PRING + PERIODIC_CELLS - 1] = y
    i64[r, I_PRING_LEN] = n
    i64[r, I_LAST_CELL] = cell
    i64[r, I_SINCE] += 1
    if i64[r, I_SINCE] >= _EVERY or f64[r, D_LONG] != f64[r, D_LONG]:
        i64[r, I_SINCE] = 0
        i64[r, I_TODO] |= TODO_PERIODIC


@kernel
def _learn_holt_winters(f64, i64, r, t, y):
    hour = int(t // 3600.0)
    count = i64[r, I_HW_COUNT]
    if hour != i64[r, I_HW_HOUR] and count:
        # Shifted by one (and back in the forecasts), as River divides by the first day's mean.
        _learn_hour(f64, i64, r, f64[r, D_HW_TOTAL] / count + 1.0)
        f64[r, D_HW_TOTAL] = 0.0
        i64[r, I_HW_COUNT] = 0
    i64[r, I_HW_HOUR] = hour
    f64[r, D_HW_TOTAL] += y
    i64[r, I_HW_COUNT] += 1


@kernel
def _learn_hour(f64, i64, r, y):
    if not i64[r, I_HW_READY]:
        n = i64[r, I_HW_FIRST_LEN]
        f64[r, D_HW_FIRST + n] = y
        i64[r, I_HW_FIRST_LEN] = n + 1
        if n + 1 == SEASON:
            i64[r, I_TODO] |= TODO_HW_START  # statistics.mean, in Python
        return
    pos = i64[r, I_HW_POS]
    level, trend = f64[r, D_HW_LEVEL + 1], f64[r, D_HW_TREND + 1]
    s = f64[r, D_HW_SEASON + pos]
    new_level = _HW_ALPHA * (y - s) + (1 - _HW_ALPHA) * (level + trend)
    new_trend = _HW_BETA * (new_level - level) + (1 - _HW_BETA) * trend
    f64[r, D_HW_SEASON + pos] = _HW_GAMMA * (y - level - trend) + (1 - _HW_GAMMA) * s
    pos = (pos + 1) % SEASON
    i64[r, I_HW_POS] = pos
    f64[r, D_HW_LEVEL] = level
    f64[r, D_HW_LEVEL + 1] = new_level
    f64[r, D_HW_TREND] = trend
    f64[r, D_HW_TREND + 1] = new_trend
    hw_path(f64, i64, r)


@kernel
def hw_path(f64, i64, r):
    """The next hours' Holt-Winters forecasts from the current level, trend and season."""
    level, trend = f64[r, D_HW_LEVEL + 1], f64[r, D_HW_TREND + 1]
    pos = i64[r, I_HW_POS]
    for h in range(3):
        f64[r, D_HW_PATH + h] = (level + (h + 1) * trend
                                 + f64[r, D_HW_SEASON + (pos + h) % SEASON] - 1.0)
    i64[r, I_HW_PATH_LEN] = 3


@kernel
def learn_rows(f32, f64, i64, rows, t, y, o, hs, grid_s, res):
    """Score what is due, then learn ``y[k]`` at ``t[k]`` in row ``rows[k]`` (distinct rows);
    res[k] as :func:`_score` sets it. Then call the Python steps flagged, then
    :func:`grid_rows`."""
    for k in range(rows.shape[0]):
        r = rows[k]
        res[k, 0] = 0.0
        res[k, 1] = math.nan
        res[k, 2] = math.nan
        res[k, 3] = -1.0
        f64[r, D_NOW] = t[k]
        _score(f32, f64, i64, r, o, hs, grid_s, t[k], y[k], res[k])
        _learn_candidates(f32, f64, i64, r, t[k], y[k])


@kernel
def grid_rows(f32, f64, i64, rows, t, o, hs, grid_s):
    """Remember every candidate's forecasts (for scoring later) in the rows whose grid time
    has come."""
    n_h = o[0]
    cands = np.empty(KC)
    kept_s = hs.max() + grid_s
    for k in range(rows.shape[0]):
        r = rows[k]
        tk = t[k]
        if not tk - f64[r, D_LAST_GRID] >= grid_s:
            continue
        f64[r, D_LAST_GRID] = tk
        n_p = i64[r, I_PENDING]
        # drop the rows past every target time first (the new row is never one of them),
        # and the oldest if the rows are full (cannot happen with rows made grid_s apart)
        drop = 0
        while drop < n_p and tk - f64[r, o[10] + drop] > kept_s:
            drop += 1
        if n_p - drop == o[1]:
            drop += 1
        if drop:
            for idx in range(n_p - drop):
                f64[r, o[10] + idx] = f64[r, o[10] + idx + drop]
                i64[r, o[11] + idx] = i64[r, o[11] + idx + drop]
                src, dst = o[5] + (idx + drop) * o[2], o[5] + idx * o[2]
                for j in range(o[2]):
                    f32[r, dst + j] = f32[r, src + j]
            n_p -= drop
        row = o[5] + n_p * o[2]
        f64[r, o[10] + n_p] = tk
        i64[r, o[11] + n_p] = 0
        i64[r, I_PENDING] = n_p + 1
        flat_candidates(f32, f64, i64, r, cands)
        for j in range(NF):
            f32[r, row + j] = cands[j]
        at = row + NF
        for h in range(n_h):
            for j in range(NF, KC):
                cands[j] = _timed(f32, f64, i64, r, j, tk, hs[h], cands[0])
            combo = _combo(f32, r, o, h, cands)
            c = choice(f32, f64, r, o, h)
            for j in range(NF, KC):
                f32[r, at] = cands[j]
                at += 1
            f32[r, at] = combo
            f32[r, at + 1] = cands[c] if c < KC else combo
            at += 2
