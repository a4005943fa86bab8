"""TeaCache rescaling polynomials as a data table.

The published values live in ``data/teacache_coefficients.json`` with their sources; this module
only reads the table and evaluates a profile. Calibrated profiles (made by ``cache_core.calibrate``)
use the same :class:`CoefficientProfile` type.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("data") / "teacache_coefficients.json"


@dataclass(frozen=True)
class CoefficientProfile:
    name: str
    coefficients: tuple[float, ...]  # numpy.poly1d order, highest power first
    input_range: tuple[float, float]  # inputs are clamped into this range before evaluation
    source: str = ""
    published_thresholds: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if len(self.coefficients) == 0:
            raise ValueError(f"profile {self.name!r}: no coefficients")
        lo, hi = self.input_range
        if not (lo <= hi):
            raise ValueError(f"profile {self.name!r}: input_range {self.input_range} has low > high")

    def rescale(self, x: float) -> float:
        """Estimated relative output change for an indicator change ``x``.

        Clamping to the declared range keeps us where the fit is meaningful (published polynomials
        swing negative or turn over outside it); the final ``max(0, .)`` guarantees the accumulator
        never decreases even for user-supplied polynomials.
        """
        lo, hi = self.input_range
        x = min(max(x, lo), hi)
        y = 0.0
        for c in self.coefficients:  # Horner; avoids a numpy call on the per-step path
            y = y * x + c
        return y if y > 0.0 else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "coefficients": list(self.coefficients),
                "input_range": list(self.input_range), "source": self.source}


@lru_cache(maxsize=1)
def _table() -> dict:
    with open(DATA_FILE, "r", encoding="utf-8") as f:
        return json.load(f)["profiles"]


def published_profiles() -> dict[str, CoefficientProfile]:
    """Every profile of the shipped table, by name."""
    return {name: _from_entry(name, e) for name, e in _table().items()}


def get_profile(name: str) -> CoefficientProfile:
    table = _table()
    if name not in table:
        raise KeyError(f"unknown TeaCache coefficient set {name!r}; known: {', '.join(sorted(table))}")
    return _from_entry(name, table[name])


def _from_entry(name: str, e: dict) -> CoefficientProfile:
    return CoefficientProfile(name=name, coefficients=tuple(float(c) for c in e["coefficients"]),
                              input_range=tuple(float(v) for v in e["input_range"]),
                              source=e.get("source", ""),
                              published_thresholds=dict(e.get("published_thresholds", {})))
