"""Gradient-flow diagnostics of a run: how the loss gradient decays (or explodes) with the lag.

For a loss at the last step, the Numba reference kernels give, for every lag k = T - t:
‖∂L/∂h_t‖ (the BPTT error δ carried back k steps), the norm of the Jacobian product
Π W diag f'(net), the seed's bound (β_W β_f)^k, and for the LSTM the product of forget gates
along the direct cell path. Measured on layer 0, forward direction, in float64.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import reference

COLUMNS = ["phase", "step", "lag", "grad_norm", "jacobian_norm", "bound", "forget_product"]


def gradient_flow(cfg, params: dict, x, grad_last, phase: str, step: int) -> pd.DataFrame:
    """One profile as tidy rows. `x` is batch-first (B, L, I) like the tasks produce;
    `grad_last` (B, H) is dL/dh_T of the real loss through the readout."""
    xt = np.ascontiguousarray(np.asarray(x, dtype=np.float64).transpose(1, 0, 2))
    batch, hidden = xt.shape[1], params["weight_hh"].shape[1]
    h0 = np.zeros((batch, hidden))
    c0 = h0.copy() if cfg.cell == "lstm" else None
    grad_last = np.asarray(grad_last, dtype=np.float64)
    if not np.any(grad_last):  # e.g. a saturated readout: show the propagation of a unit vector
        grad_last = None
    with np.errstate(all="ignore"):
        profile = reference.jacobian_profile(cfg.cell, params, xt, h0, c0,
                                             activation=cfg.activation, grad_last=grad_last)
    frame = pd.DataFrame({k: profile[k] for k in COLUMNS[2:]})
    frame.insert(0, "step", step)
    frame.insert(0, "phase", phase)
    return frame
