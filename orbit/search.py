"""Finding the intervals where a smooth function of time is positive: an elevation above a
station's mask (passes), a depth in the Earth's shadow (eclipses).

The way skyfield and pyorbital find passes, made cheap: sample the function on a coarse grid
(a fraction of an orbit: each pass or eclipse peaks once per orbit and is unimodal across
three samples), refine every sampled local maximum (golden section), keep those above zero,
and find where each interval starts and ends by bisection between the last sample outside
and the peak. Every refinement runs for all the intervals at once, one vectorized call of the
function per step, so a day costs about sixty calls whatever the number of passes.
A maximum is refined even when its samples are below zero: a pass that barely clears the mask
between two samples is found all the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orbit.errors import OrbitError
from orbit.frames import FloatArray

Function = Callable[[FloatArray], FloatArray]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
PEAK_TOLERANCE_S = 0.01
EDGE_TOLERANCE_S = 0.001


@dataclass(frozen=True, slots=True)
class Excursion:
    """An interval where the function is positive, and its highest point."""

    start: float
    end: float
    peak_time: float
    peak_value: float


def excursions(f: Function, start: float, end: float, step: float, pad: float) -> list[Excursion]:
    """The intervals where `f` > 0 that overlap [start, end), each whole (its start may be
    before `start`, its end after `end`), in time order. `step` must be short enough that the
    function is unimodal over any two steps around a peak; `pad` longer than any interval, so
    that one that overlaps the window starts and ends inside the sampled span."""
    count = max(math.ceil((end - start + 2.0 * pad) / step), 2) + 1
    times = np.asarray(start - pad + step * np.arange(count), dtype=np.float64)
    values = f(times)
    inner = np.arange(1, count - 1)
    peaks = inner[(values[inner - 1] < values[inner]) & (values[inner] >= values[inner + 1])]
    if not len(peaks):
        return []
    peak_times, peak_values = _maximize(f, times[peaks - 1], times[peaks + 1])
    above = peak_values > 0.0
    peak_times, peak_values = peak_times[above], peak_values[above]
    if not len(peak_times):
        return []
    # The last sample at or below zero before each peak, and the first after it.
    outside = np.flatnonzero(values <= 0.0)
    before = np.searchsorted(times[outside], peak_times, side="right") - 1
    after = np.searchsorted(times[outside], peak_times, side="left")
    # A peak in the padding may belong to an interval that began before the sampled span (or
    # ends after it): being shorter than the padding, that one does not reach the window.
    bracketed = (before >= 0) & (after < len(outside))
    if not bracketed[(peak_times >= start) & (peak_times < end)].all():
        raise OrbitError(
            f"an interval lasts longer than the {pad:.0f} s searched around the window: "
            "expected passes and eclipses shorter than an orbit"
        )
    peak_times, peak_values = peak_times[bracketed], peak_values[bracketed]
    before, after = before[bracketed], after[bracketed]
    if not len(peak_times):
        return []
    # Between that sample and the next one (inside, or past the peak) the function goes up
    # through zero; likewise down before the first sample outside after the peak.
    first_out, last_out = outside[before], outside[after]
    starts = _bisect(
        f, times[first_out], _floats(np.minimum(times[first_out + 1], peak_times)), True
    )
    ends = _bisect(f, _floats(np.maximum(times[last_out - 1], peak_times)), times[last_out], False)
    found: list[Excursion] = []
    for first, last, peak, value in zip(starts, ends, peak_times, peak_values, strict=True):
        if found and first <= found[-1].end:
            # Two sampled maxima of one interval (it dipped without going below zero).
            kept = found.pop()
            if kept.peak_value > value:
                peak, value = kept.peak_time, kept.peak_value
            first, last = kept.start, max(last, kept.end)
        found.append(Excursion(float(first), float(last), float(peak), float(value)))
    return [e for e in found if e.end > start and e.start < end]


def _maximize(f: Function, low: FloatArray, high: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Golden-section search for the maximum of `f` in each bracket [low, high], all brackets
    stepping together."""
    a, b = low.copy(), high.copy()
    c = _floats(b - GOLDEN * (b - a))
    d = _floats(a + GOLDEN * (b - a))
    fc, fd = f(c), f(d)
    while np.max(b - a) > PEAK_TOLERANCE_S:
        rising = fc < fd  # the maximum is in [c, b]
        a = np.where(rising, c, a)
        b = np.where(rising, b, d)
        # One of the two inner points carries over; the other is new.
        kept_point, kept_value = np.where(rising, d, c), np.where(rising, fd, fc)
        new_point = np.where(rising, a + GOLDEN * (b - a), b - GOLDEN * (b - a))
        new_value = f(new_point)
        c = np.where(rising, kept_point, new_point)
        fc = np.where(rising, kept_value, new_value)
        d = np.where(rising, new_point, kept_point)
        fd = np.where(rising, new_value, kept_value)
    middle = (a + b) / 2.0
    return middle, f(middle)


def _bisect(f: Function, low: FloatArray, high: FloatArray, outside_first: bool) -> FloatArray:
    """Where `f` crosses zero in each [low, high]: going up if `outside_first` (f <= 0 at low,
    > 0 at high), going down otherwise."""
    a, b = low.copy(), high.copy()
    while np.max(b - a) > EDGE_TOLERANCE_S:
        middle = (a + b) / 2.0
        inside = f(middle) > 0.0
        move_low = ~inside if outside_first else inside
        a = np.where(move_low, middle, a)
        b = np.where(move_low, b, middle)
    return (a + b) / 2.0


def _floats(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)
