"""CPU training through the Numba reference kernels: forward, BPTT, clipping and the optimiser
update, all in numpy/Numba. Same seed and init as the torch backend (the starting weights are
`init.build_initialised_model`'s: drawn in numpy where `init_numpy` reproduces torch's draws,
which spares the process importing torch, else copied once from that torch model), and the
same update rules as torch.optim, so in float64 the two learning curves agree to rounding
(tests/test_train.py, test_numba_backend_learning_curve_equals_torch_float64).

float32 steps run with subnormal numbers flushed to zero (`subnormals_flushed`).
"""
from __future__ import annotations

import contextlib
import math
import platform

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from .. import reference
from ..cell_table import GATE_COUNT
from ..config import RunConfig
from ..diagnostics import gradient_flow
from ..init_numpy import RNN_KEYS, initial_arrays
from ..optim import NumpyOptimizer, numpy_clip
from ..reference.rnn import slope as rnn_slope
from ..regularizer import omega_and_grad
from ..spectral import gated_spectral_radius
from ..tasks.losses import loss_grad, numpy_loss

# x86's SSE control register MXCSR, read and written through LLVM's intrinsics: torch's
# set_flush_denormal sets the same bits, but importing torch costs a job two seconds.
X86 = platform.machine().lower() in ("x86_64", "amd64")
MXCSR_DAZ_FTZ = (1 << 6) | (1 << 15)  # denormals-are-zero, flush-to-zero


class NumbaBackend:
    name = "numba"
    device = "cpu"

    def __init__(self, cfg: RunConfig, task):
        self.cfg, self.task = cfg, task
        self.dtype = np.float64 if cfg.dtype == "float64" else np.float32
        arrays = initial_arrays(cfg, task)  # the torch backend's starting weights
        if arrays is None:  # a scheme that only torch draws
            arrays = _torch_initial_arrays(cfg, task)
        arrays = {k: np.ascontiguousarray(a, dtype=self.dtype) for k, a in arrays.items()}
        # All parameters live in one buffer (self.params are views of it): clipping and the
        # optimiser update are then a few numpy calls on one array instead of a few per array.
        self.flat = np.concatenate([a.ravel() for a in arrays.values()])
        self.params, offset = {}, 0
        for k, a in arrays.items():
            self.params[k] = self.flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size
        self.hidden = cfg.hidden
        self.optimizer = NumpyOptimizer(cfg, {"all": self.flat})

    # --- forward and readout ------------------------------------------------------------
    def _rnn_params(self):
        return {k: self.params[k] for k in RNN_KEYS}

    def _zeros(self, batch):
        return np.zeros((batch, self.hidden), dtype=self.dtype)

    def _states(self, x):
        xt = np.ascontiguousarray(np.asarray(x, dtype=self.dtype).transpose(1, 0, 2))
        h0 = self._zeros(xt.shape[1])
        c0 = h0.copy() if self.cfg.cell == "lstm" else None
        return reference.forward_states(self.cfg.cell, self._rnn_params(), xt, h0, c0,
                                        activation=self.cfg.activation)

    def _readout(self, h):
        """h (L, B, H) -> outputs shaped like the torch model's: (B, C) or (B, L, C)."""
        w, b = self.params["head_weight"], self.params["head_bias"]
        if self.task.per_step:
            return (h @ w.T + b).transpose(1, 0, 2)
        return h[-1] @ w.T + b

    def predict(self, x, chunk: int = 64):
        """Outputs for the sequences `x`, `chunk` at a time: a chunk's saved states (T x chunk
        x gates x H) then stay in the core's cache, where a thousand sequences at once would
        not. A sequence's output does not depend on the chunk, up to rounding."""
        with subnormals_flushed(self.dtype == np.float32):
            outs = [self._readout(self._states(x[i:i + chunk]).h)
                    for i in range(0, len(x), chunk)]
        return np.concatenate(outs).astype(np.float64)

    # --- one optimisation step ----------------------------------------------------------
    def gradients(self, batch):
        """Loss and the gradient of every parameter (head included) for one batch."""
        states = self._states(batch.x)
        h = states.h
        out = self._readout(h)
        kind = self.task.loss_kind
        loss = float(numpy_loss(kind, out, batch.y))
        d_out = np.asarray(loss_grad(kind, out, batch.y), dtype=self.dtype).reshape(out.shape)
        w = self.params["head_weight"]
        grad_h = np.zeros_like(h)
        if self.task.per_step:
            d_out_t = np.ascontiguousarray(d_out.transpose(1, 0, 2))     # (L, B, C)
            grad_h[:] = d_out_t @ w
            head_w = np.einsum("lbc,lbh->ch", d_out_t, h)
            head_b = d_out_t.sum(axis=(0, 1))
        else:
            grad_h[-1] = d_out @ w
            head_w, head_b = d_out.T @ h[-1], d_out.sum(axis=0)
        regularised = self.cfg.regularizer > 0
        grads = reference.backward(states, grad_h, return_dh=regularised)
        if regularised:  # Pascanu 2013's Omega; its gradient reaches W_hh only (regularizer.py)
            _, d_omega = omega_and_grad(grads["dh"], rnn_slope(self.cfg.activation, h),
                                        self.params["weight_hh"])
            grads["weight_hh"] = grads["weight_hh"] + self.cfg.regularizer * d_omega
        grads = {k: grads[k] for k in RNN_KEYS}
        grads["head_weight"], grads["head_bias"] = head_w, head_b
        return loss, grads

    def step(self, batch):
        with subnormals_flushed(self.dtype == np.float32):
            loss, grads = self.gradients(batch)
            flat_grad = {"all": np.concatenate([grads[k].ravel() for k in self.params]).astype(
                self.dtype, copy=False)}
            grad_norm, clipped = numpy_clip(flat_grad, self.cfg)
            if math.isfinite(grad_norm):
                self.optimizer.update({"all": self.flat}, flat_grad)
        return loss, grad_norm, clipped

    # --- measurements -------------------------------------------------------------------
    def spectral_radius(self) -> float:
        return gated_spectral_radius(self.params["weight_hh"], GATE_COUNT[self.cfg.cell])

    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def gradflow(self, batch, phase, step):
        states = self._states(batch.x)
        out = self._readout(states.h)
        d_out = np.asarray(loss_grad(self.task.loss_kind, out, batch.y), dtype=np.float64)
        d_last = d_out[:, -1] if self.task.per_step else d_out
        grad_last = d_last.reshape(len(batch.x), -1) @ self.params["head_weight"].astype(np.float64)
        params = {k: v.astype(np.float64) for k, v in self._rnn_params().items()}
        return gradient_flow(self.cfg, params, batch.x, grad_last, phase, step)

    def state_dict(self):
        return {"params": {k: v.copy() for k, v in self.params.items()},
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        for k, v in state["params"].items():
            self.params[k][...] = v  # into the views of the one parameter buffer
        self.optimizer.load_state_dict(state["optimizer"])


def flushing_subnormals() -> bool:
    """Whether this thread now flushes subnormal float results to zero."""
    return np.float32(2e-38) * np.float32(0.25) == 0  # 5e-39: subnormal in float32


@contextlib.contextmanager
def subnormals_flushed(enabled: bool = True):
    """Inside the block this thread reads subnormal floats as zero and flushes subnormal results
    to zero (x86's DAZ and FTZ; elsewhere what torch.set_flush_denormal sets, if anything).

    Why: where gradients vanish, the BPTT error δ_t falls below float32's smallest normal number
    (1.2e-38) after some dozens of steps back, and on x86 each operation on a subnormal takes a
    slow microcode path: a backward pass with many subnormal δ runs several times slower.
    Flushing loses nothing a float32 run can see. A subnormal changes a sum only when every term
    is below about 2e-31 (2^-102), and no step here divides by a value that can be subnormal:
    the gates' denominators are >= 1, clipping divides by a norm above its threshold, and the
    optimisers add an epsilon. So a run that reaches subnormals takes the same steps with and
    without flushing (tests/test_backends.py). The torch backend does not flush: a plug-in cell
    may divide by anything."""
    if not enabled or flushing_subnormals():
        yield
        return
    if not X86 or numba.config.DISABLE_JIT:  # torch knows the other architectures' flags
        import torch
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)
        return
    saved = mxcsr()
    set_mxcsr(saved | MXCSR_DAZ_FTZ)
    try:
        yield
    finally:  # DAZ and FTZ as they were; any other bit changed inside stays
        set_mxcsr((mxcsr() & ~MXCSR_DAZ_FTZ) | (saved & MXCSR_DAZ_FTZ))


def _mxcsr_call(builder, name, slot):
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]), name)
    builder.call(function, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)
    return numba.types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()
    return numba.types.void(numba.types.uint32), codegen


@numba.njit(cache=True)
def mxcsr() -> int:
    """This thread's MXCSR."""
    return _read_mxcsr()


@numba.njit(cache=True)
def set_mxcsr(value):
    """Write this thread's MXCSR."""
    _write_mxcsr(np.uint32(value))


def _torch_initial_arrays(cfg, task) -> dict[str, np.ndarray]:
    from ..init import build_initialised_model  # imports torch

    model = build_initialised_model(cfg, task)
    arrays = {k: getattr(model.rnn, f"{k}_l0") for k in RNN_KEYS}
    arrays["head_weight"], arrays["head_bias"] = model.head.weight, model.head.bias
    return {k: p.detach().cpu().numpy() for k, p in arrays.items()}
