"""Input checks and the saved-activation record shared by the three cell kernels.

Plain Python only: the Numba kernels live in rnn.py / lstm.py / gru.py, each self-contained so
that `cache=True` notices edits to them. Everything here runs once per call, never per step.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from ..cell_table import BUILTIN_CELLS, GATE_COUNT, KERNEL_ACTIVATIONS

PARAM_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ForwardStates(NamedTuple):
    """Everything one forward pass saves for BPTT (returned by `forward_states`).

    Inputs are kept (validated, C-contiguous, no copies when they already were) so that
    `backward(states, grad_h)` needs nothing else.

    cell, activation : the cell name and (rnn) activation name.
    params           : dict of the four weight arrays (PyTorch shapes).
    x                : (T, B, I) input; h0, c0: (B, H) initial states (c0 None except lstm).
    h                : (T, B, H) every output hidden state h_t.
    c                : lstm: (T, B, H) cell states c_t; else None.
    gates            : lstm: (T, B, 4H) post-activation gates [i | f | g | o];
                       gru:  (T, B, 3H) post-activation gates [r | z | n]; rnn: None
                       (the rnn derivative f'(net_t) is recovered from h_t itself).
    hn               : gru: (T, B, H) W_hn h_{t-1} + b_hn (needed for dL/dr); else None.
    """
    cell: str
    activation: str
    params: dict
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    h: np.ndarray
    c: np.ndarray | None
    gates: np.ndarray | None
    hn: np.ndarray | None


def check_cell(cell, activation) -> tuple[str, str]:
    """Validate the cell name and the activation (only the rnn cell takes one other than tanh)."""
    if cell not in BUILTIN_CELLS:
        raise ValueError(f"cell: unknown cell {cell!r}; expected one of {list(BUILTIN_CELLS)}")
    if cell == "rnn":
        if activation not in KERNEL_ACTIVATIONS:
            raise ValueError(f"activation: unknown rnn activation {activation!r}; "
                             f"expected one of {list(KERNEL_ACTIVATIONS)}")
    elif activation != "tanh":
        raise ValueError(f"activation: the {cell} cell has fixed activations; "
                         f"activation must be 'tanh', got {activation!r}")
    return cell, activation


def _as_float_array(name: str, value, dtype=None) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name}: expected an array, got None")
    array = np.asarray(value)
    if array.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: dtype must be float32 or float64, got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{name}: dtype {array.dtype} differs from x's dtype {dtype}; "
                         f"all inputs must share one dtype")
    return np.ascontiguousarray(array)


def _check_shape(name: str, array: np.ndarray, shape: tuple) -> None:
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")


def check_inputs(cell, params, x, h0, c0, activation):
    """Validate and normalise the inputs of a forward pass.

    Returns (cell, activation, params, x, h0, c0) with every array C-contiguous and of x's dtype.
    h0 None -> zeros; lstm c0 None -> zeros. Raises ValueError naming the offending argument.
    """
    cell, activation = check_cell(cell, activation)
    x = _as_float_array("x", x)
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(f"x: expected a non-empty (T, B, I) array, got shape {x.shape}")
    T, B, I = x.shape
    dtype = x.dtype

    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict with keys {list(PARAM_KEYS)}, "
                         f"got {type(params).__name__}")
    missing = [k for k in PARAM_KEYS if k not in params]
    extra = sorted(str(k) for k in params if k not in PARAM_KEYS)
    if missing or extra:
        raise ValueError(f"params: missing keys {missing}, unexpected keys {extra}; "
                         f"expected exactly {list(PARAM_KEYS)}")
    arrays = {k: _as_float_array(f"params['{k}']", params[k], dtype) for k in PARAM_KEYS}
    w_hh = arrays["weight_hh"]
    if w_hh.ndim != 2 or w_hh.shape[1] < 1:
        raise ValueError(f"params['weight_hh']: expected a 2-d (G*H, H) array, got {w_hh.shape}")
    G, H = GATE_COUNT[cell], w_hh.shape[1]
    _check_shape("params['weight_hh']", w_hh, (G * H, H))
    _check_shape("params['weight_ih']", arrays["weight_ih"], (G * H, I))
    _check_shape("params['bias_ih']", arrays["bias_ih"], (G * H,))
    _check_shape("params['bias_hh']", arrays["bias_hh"], (G * H,))

    h0 = np.zeros((B, H), dtype) if h0 is None else _as_float_array("h0", h0, dtype)
    _check_shape("h0", h0, (B, H))
    if cell == "lstm":
        c0 = np.zeros((B, H), dtype) if c0 is None else _as_float_array("c0", c0, dtype)
        _check_shape("c0", c0, (B, H))
    elif c0 is not None:
        raise ValueError(f"c0: only the lstm cell has a cell state; pass c0=None for {cell!r}")
    return cell, activation, arrays, x, h0, c0


def check_grad_h(grad_h, states: ForwardStates) -> np.ndarray:
    """Validate the external gradient dLoss/dh_t for every t: shape (T, B, H), x's dtype."""
    grad_h = _as_float_array("grad_h", grad_h, states.x.dtype)
    _check_shape("grad_h", grad_h, states.h.shape)
    return grad_h


_scratch = threading.local()


def scratch(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous work array, reused across calls in the same thread.

    The backward kernels' δ arrays are T·B·G·H elements. Arrays that large (above glibc's
    mmap threshold, at most 32 MB) get fresh pages from the kernel on every allocation, and
    the page faults of first touching them can cost as much as a small backward pass itself
    (tens of ms per 64 MB; docs/performance.md). Reusing one growing buffer per thread and
    dtype pays that once; the price is that the largest such buffer stays alive. Never hand
    out a view of it: it is overwritten by the next call.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    buffer = buffers.get(dtype)
    if buffer is None or buffer.size < size:
        buffer = buffers[dtype] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)
