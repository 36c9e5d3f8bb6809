"""Noiseless memorisation (Hochreiter & Schmidhuber 1997; Martens & Sutskever 2011)."""
from __future__ import annotations

import numpy as np

from .base import Task
from .registry import register_task
from .copy import Copy


@register_task
class Memorization(Copy):
    """Memorise `items` symbols (default 10) of `values` values each (default 5), recall all.

    Layout as copy (see copy.py), L = T + 2 * items:
        steps 0 .. items-1         the symbols, classes 1..values
        steps items .. T+items-2   blanks (class 0), T - 1 of them
        step  T+items-1            the cue (class values+1)
        last `items` steps         blanks in the input; the targets are the symbols in order
    Targets are blank (class 0) on every other step; the loss is CE averaged over all L steps.
    The best input-independent predictor (blank where the layout says so, uniform over the
    values during recall) has CE items * ln(values) / L; it recalls a whole sequence with
    probability values^-items, so its error is 1 - 5^-10, i.e. 100% for practical purposes.
    error: fraction of sequences with at least one wrong recalled item; solved: error < 1%.
    Unlike copy (per-symbol error), a sequence counts only if it is recalled entirely.
    """

    name = "memorization"
    description = ("noiseless memorisation (Hochreiter & Schmidhuber 1997; Martens & Sutskever "
                   "2011): recall 10 items of 5 values after T-1 blanks and a cue")
    defaults = {**Task.defaults, "items": 10, "values": 5}

    @classmethod
    def check_values(cls, T, options):
        super().check_values(T, options)
        if options["items"] < 1:
            raise ValueError(f"task '{cls.name}': option 'items' must be >= 1, got {options['items']}")
        if options["values"] < 2:
            raise ValueError(f"task '{cls.name}': option 'values' must be >= 2, got {options['values']}")

    def layout(self):
        return int(self.options["items"]), int(self.options["values"])

    def __init__(self, T, **options):
        super().__init__(T, **options)
        items, values = self.layout()
        self.baseline_error = 1 - float(values) ** -items

    def error(self, pred, y):
        return float(np.mean(self.recalled_wrong(pred, y).any(axis=1)))
