"""Forward pass and exact BPTT of any cell: checks the inputs and dispatches to the cell's
module (rnn.py, lstm.py, gru.py). The public API of rnnbench.reference (re-exported there)."""
from __future__ import annotations

import numpy as np

from . import gru, lstm, rnn
from ._common import ForwardStates, check_grad_h, check_inputs

_CELL_MODULES = {"rnn": rnn, "lstm": lstm, "gru": gru}


def forward_states(cell, params, x, h0=None, c0=None, activation="tanh") -> ForwardStates:
    """Forward pass that keeps what BPTT needs: h for every step, plus (lstm) c and the gate
    activations, (gru) the gate activations and W_hn h + b_hn. See `ForwardStates`."""
    cell, activation, params, x, h0, c0 = check_inputs(cell, params, x, h0, c0, activation)
    h, c, gates, hn = _CELL_MODULES[cell].forward(params, x, h0, c0, activation)
    return ForwardStates(cell, activation, params, x, h0, c0, h, c, gates, hn)


def forward(cell, params, x, h0=None, c0=None, activation="tanh") -> np.ndarray:
    """Every output hidden state h (T, B, H). For the lstm cell states use `forward_states`."""
    return forward_states(cell, params, x, h0, c0, activation).h


def backward(states: ForwardStates, grad_h, return_dh: bool = False) -> dict:
    """BPTT from saved forward states and the external gradient grad_h = dLoss/dh_t (T, B, H).

    Returns the gradients dict. With return_dh=True it also holds "dh": (T, B, H) the total
    dLoss/dh_t at every step (external plus recurrent part; c_t held fixed for the lstm), which
    the gradient-flow diagnostics read as ‖∂L/∂h_t‖ and Pascanu's Omega as dE/dh_t.
    """
    grad_h = check_grad_h(grad_h, states)
    T, B, H = states.h.shape
    dh_trace = np.empty((T if return_dh else 0, B, H), dtype=states.x.dtype)
    grads = _CELL_MODULES[states.cell].backward(states, grad_h, dh_trace)
    if return_dh:
        grads["dh"] = dh_trace
    return grads


def forward_backward(cell, params, x, h0, grad_h, c0=None, activation="tanh"):
    """One forward pass and its BPTT: returns (h (T, B, H), grads dict)."""
    states = forward_states(cell, params, x, h0, c0, activation)
    return states.h, backward(states, grad_h)
