"""The contract every training backend fulfils: what `train.run` calls on it.

A backend holds one run's parameters and optimiser state and does one optimisation step at a
time; `train.run` owns the loop, the data stream, evaluation and the records. The classes do
not inherit from `Backend`: it is a `typing.Protocol` (structural), checked in
tests/test_backends.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..config import RunConfig
    from ..tasks import Batch


@runtime_checkable
class Backend(Protocol):
    name: str
    """The backend's name ("torch", "numba"): the run's `backend_used` column."""

    device: str
    """Where it computes ("cpu", "cuda", "cuda:1"): the run's `device_used` column, and the
    device its provenance describes."""

    cfg: RunConfig
    """The run's configuration, as the backend was built from it."""

    def step(self, batch: Batch) -> tuple[float, float, bool]:
        """One optimisation step on `batch`: returns (training loss before the step, gradient
        norm before clipping, whether clipping changed the gradient). A non-finite gradient
        norm skips the update: the loop then records the run as diverged."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Model outputs for inputs x (B, L, I), as float64 numpy: (B, C) for last-step tasks,
        (B, L, C) for per-step ones; no state changes."""
        ...

    def spectral_radius(self) -> float:
        """Spectral radius of layer 0's forward recurrent weight (`models.spectral_radius`:
        for gated cells the largest over the gate blocks); NaN where it is undefined."""
        ...

    def gradflow(self, batch: Batch, phase: str, step: int) -> pd.DataFrame | None:
        """The gradient-flow profile (`diagnostics` columns) of a last-step loss on `batch`,
        labelled `phase` ("start", "end", "step N") and `step`; None where the instrument does
        not cover the model."""
        ...

    def n_params(self) -> int:
        """Number of trainable scalars (recurrent stack and head)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: parameters and optimiser state (a checkpoint)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, so that training continues as if never
        interrupted."""
        ...
