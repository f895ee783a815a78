"""A latency table's error model: whole networks measured against the table's per-op sums.

A table times every candidate op alone, so its sum over a network's chosen ops leaves out the fixed part of the
network (stem, head, pooling, classifier), the Python and dispatch overhead between modules and the memory traffic
between layers. ``dnas lut --calibrate N`` measures that on the same device: it draws N random architectures of the
space, builds each discrete network as ``dnas export`` does, times each whole with the table's settings and fits

    measured ≈ intercept + slope · table_sum        (ordinary least squares, :func:`numpy.linalg.lstsq`)

The error is the **leave-one-out** relative error: each architecture predicted by the line fitted to the other N − 1,
``e = |measured − predicted| / measured`` (relative to the measurement, which is always > 0, so a noisy fit whose
line dips below zero still has a finite error); the record keeps its maximum and root mean square. In-sample
residuals would understate the error of a network the fit has not seen (two parameters fitted to a handful of
points). The band of a prediction ``p`` is every latency ``m`` with ``|m − p| ≤ e_max · m``, i.e.
``p / (1 + e_max) ≤ m ≤ p / (1 − e_max)`` (no upper end when ``e_max ≥ 1``).

The record (``meta["calibration"]`` of the table, checked by :func:`check_record` when a table is read)::

    {"intercept_ms": 3.1, "slope": 1.8, "max_rel_error": 0.07, "rms_rel_error": 0.03, "archs": 8,
     "table_sums_ms": [...], "measured_ms": [...], "warmup": 10, "min_run_time_s": 0.3, "seed": 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnas.safe_read import is_finite_number, short

MIN_ARCHS = 3
"""Fewest calibration architectures: a line plus one point to leave out."""

FLOAT_FIELDS = ("intercept_ms", "slope", "max_rel_error", "rms_rel_error", "min_run_time_s")
INT_FIELDS = ("archs", "warmup", "seed")
LIST_FIELDS = ("table_sums_ms", "measured_ms")


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``(intercept, slope)`` minimising ``Σ (y − intercept − slope · x)²``.

    Raises:
        ValueError: fewer than two points, or every ``x`` equal (the slope is not determined).
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.size < 2:
        raise ValueError(f"a line needs at least two (x, y) pairs of equal length, got {xs.size} and {ys.size}")
    if np.ptp(xs) == 0:
        raise ValueError(f"every table sum is {xs[0]:.6g}: the slope is not determined; calibrate on more networks")
    design = np.stack([np.ones_like(xs), xs], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, ys, rcond=None)
    return float(intercept), float(slope)


def loo_relative_errors(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """``|y_i − p_i| / y_i`` where ``p_i`` is the line fitted without point ``i`` evaluated at ``x_i``.

    Raises:
        ValueError: a ``y`` is not > 0 (a latency).
    """
    if not all(v > 0 for v in y):
        raise ValueError(f"measured latencies must be > 0, got {list(y)}")
    out = []
    for i in range(len(x)):
        rest = [j for j in range(len(x)) if j != i]
        a, b = fit_line([x[j] for j in rest], [y[j] for j in rest])
        out.append(abs(y[i] - (a + b * x[i])) / y[i])
    return out


def make_record(
    table_sums: Sequence[float], measured: Sequence[float], warmup: int, min_run_time: float, seed: int
) -> dict[str, Any]:
    """The ``meta["calibration"]`` record of ``measured ≈ intercept + slope · table_sums`` (module docstring).

    Raises:
        ValueError: fewer than :data:`MIN_ARCHS` architectures, equal table sums, or a measurement <= 0.
    """
    if len(table_sums) < MIN_ARCHS:
        raise ValueError(f"calibration needs at least {MIN_ARCHS} architectures, got {len(table_sums)}")
    intercept, slope = fit_line(table_sums, measured)
    errors = loo_relative_errors(table_sums, measured)
    return {
        "intercept_ms": intercept,
        "slope": slope,
        "max_rel_error": max(errors),
        "rms_rel_error": math.sqrt(math.fsum(e * e for e in errors) / len(errors)),
        "archs": len(table_sums),
        "table_sums_ms": [float(v) for v in table_sums],
        "measured_ms": [float(v) for v in measured],
        "warmup": int(warmup),
        "min_run_time_s": float(min_run_time),
        "seed": int(seed),
    }


def check_record(record: Any, source: str, error: type[Exception]) -> dict[str, Any]:
    """``record`` if it is a valid calibration record, else ``error`` naming the first bad field."""
    where = f"{source}: field 'meta.calibration"
    if not isinstance(record, dict):
        raise error(f"{where}' must be an object, got {type(record).__name__}")
    for key in FLOAT_FIELDS:
        if not is_finite_number(record.get(key)):
            raise error(f"{where}.{key}' must be a finite number, got {short(record.get(key))}")
    for key in INT_FIELDS:
        if not isinstance(record.get(key), int) or isinstance(record.get(key), bool):
            raise error(f"{where}.{key}' must be an integer, got {short(record.get(key))}")
    for key in ("max_rel_error", "rms_rel_error", "min_run_time_s", "warmup"):
        if record[key] < 0:
            raise error(f"{where}.{key}' must be >= 0, got {record[key]}")
    if record["archs"] < MIN_ARCHS:
        raise error(f"{where}.archs' must be >= {MIN_ARCHS}, got {record['archs']}")
    for key in LIST_FIELDS:
        v = record.get(key)
        if not isinstance(v, list) or len(v) != record["archs"] or not all(is_finite_number(x) and x >= 0 for x in v):
            raise error(f"{where}.{key}' must be a list of {record['archs']} (archs) finite numbers >= 0")
    return record


@dataclass(frozen=True)
class Prediction:
    """A network's latency by the table: the sum of its ops and, with a calibration, the whole network and its band.

    Without a calibration: intercept 0, slope 1, ``rel_error`` None (``max_rel_error`` of the record), ``archs`` 0.
    """

    table_sum: float
    intercept: float = 0.0
    slope: float = 1.0
    rel_error: float | None = None
    archs: int = 0
    unit: str = "ms"

    @classmethod
    def of(cls, table_sum: float, calibration: Mapping[str, Any] | None, unit: str = "ms") -> Prediction:
        """The prediction for ``table_sum`` under ``calibration`` (a checked record, or None)."""
        if calibration is None:
            return cls(table_sum, unit=unit)
        c = calibration
        return cls(table_sum, c["intercept_ms"], c["slope"], c["max_rel_error"], c["archs"], unit)

    @property
    def value(self) -> float:
        """``intercept + slope · table_sum``: the whole network (the table sum itself without a calibration)."""
        return self.at(self.table_sum)

    def at(self, table_sum: float) -> float:
        """The calibrated whole-network latency of any table sum (e.g. a budget)."""
        return self.intercept + self.slope * table_sum

    @property
    def band(self) -> tuple[float, float] | None:
        """``(low, high)``: the latencies ``m`` with ``|m − value| ≤ rel_error · m``, or None without a calibration.

        ``high`` is ``inf`` when ``rel_error ≥ 1``.
        """
        if self.rel_error is None:
            return None
        e = self.rel_error
        return self.value / (1 + e), (self.value / (1 - e) if e < 1 else math.inf)

    def contains(self, measured: float) -> bool | None:
        """Whether ``measured`` is within the calibration's error of the prediction (None: no calibration)."""
        return None if self.rel_error is None else abs(measured - self.value) <= self.rel_error * measured

    def rows(
        self, measured: float | None = None, budget: float | None = None, table_sum: bool = True
    ) -> list[list[str]]:
        """``[quantity, value]`` rows for ``dnas export`` and the search report (``table_sum``: include its row)."""
        u = self.unit
        rows = [["table sum of the chosen ops", f"{self.table_sum:.4g} {u}"]] if table_sum else []
        band = self.band
        if band is None and u == "ms":
            rows.append(["predicted whole network", "unknown: the table has no calibration (dnas lut --calibrate N)"])
        elif band is not None:
            rows.append(
                [
                    f"predicted whole network ({self.intercept:.4g} {u} + {self.slope:.4g} × table sum, "
                    f"error measured on {self.archs} architectures)",
                    f"{self.value:.4g} {u}, band {band[0]:.4g} – {band[1]:.4g} {u} (error ≤ "
                    f"{100 * self.rel_error:.1f} % of the measured latency)",
                ]
            )
        if measured is not None:
            inside = self.contains(measured)
            verdict = "" if inside is None else (" (within the band)" if inside else " (OUTSIDE the band)")
            rows.append(["measured whole network", f"{measured:.4g} {u}{verdict}"])
        if budget is not None:
            text = f"{budget:.4g} {u} on the table sum ({'within' if self.table_sum <= budget else 'OVER'})"
            if band is not None:
                text += f"; a network at the budget: {self.at(budget):.4g} {u} whole by the calibration"
            rows.append(["budget", text])
        return rows
