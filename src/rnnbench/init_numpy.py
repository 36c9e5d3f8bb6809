"""A Numba run's starting weights without torch: `init.build_initialised_model`'s numbers, bit
for bit, for the built-in one-layer cells and the schemes made of uniform draws and zeros
("default", "glorot"), on x86 hosts. A CPU run then starts without importing torch, which
takes about two seconds of every job that trains. Elsewhere `initial_arrays` returns None and
the caller builds the torch model.

torch's draws, as reproduced here (tests/test_init_numpy.py compares the two on every cell):
- `torch.Generator().manual_seed(s)` starts a 32-bit Mersenne Twister seeded as std::mt19937
  seeds it (`init_genrand`);
- a float64 `uniform_(-b, b)` takes 64 bits per element from two 32-bit outputs (the first is
  the high word), keeps their low 53 bits v and returns x (b - (-b)) + (-b) with x = v 2^-53.
  torch compiles its CPU kernels once per instruction set and picks one at run time: the AVX2
  and AVX-512 ones compute this in one fused multiply-add, whose exact value is
  b (v - 2^52) 2^-52 (one rounding of b (v - 2^52), whose integer factor float64 holds exactly,
  then an exact scaling by a power of two); the baseline one rounds the product and the sum
  separately. Which one torch runs follows the CPU's features and ATEN_CPU_CAPABILITY;
- a tensor is filled in memory (row-major) order, the parameters one after another in
  `named_parameters()` order, then the head's weight and bias (init.apply);
- the float64 draws are rounded once to the model's dtype, and LSTM's `forget_bias` is then
  added in that dtype.
"""
from __future__ import annotations

import math
import os
import platform

import numpy as np

from .cell_table import FORGET_GATE, GATE_COUNT
from .init_schemes import DEFAULT_SCALE, scheme_entry
from .models.registry import is_builtin

NUMPY_SCHEMES = ("default", "glorot")  # what initial_arrays draws; other schemes need torch
RNN_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # named_parameters() order, layer 0
DTYPES = {"float32": np.float32, "float64": np.float64}


def init_seed(seed: int) -> int:
    """Seed of the weight initialisation (a torch.Generator's), separate from the data stream's."""
    return int(np.random.SeedSequence([seed, 0x1417]).generate_state(1)[0])


def torch_bit_stream(seed: int) -> np.random.MT19937:
    """The 32-bit words of `torch.Generator().manual_seed(seed)` (seed taken mod 2^32)."""
    key = np.empty(624, dtype=np.uint32)
    x = int(seed) & 0xFFFFFFFF
    for i in range(624):
        key[i] = x
        x = (1812433253 * (x ^ (x >> 30)) + i + 1) & 0xFFFFFFFF
    bits = np.random.MT19937(0)
    bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
    return bits


def uniform(bits: np.random.MT19937, shape, bound: float, fused: bool = True) -> np.ndarray:
    """`torch.empty(shape, dtype=torch.float64).uniform_(-bound, bound, generator=g)`, as
    torch's AVX2/AVX-512 kernels draw it (`fused`), else as its baseline kernel does."""
    n = math.prod(shape)
    words = bits.random_raw(2 * n).astype(np.uint64)
    v = ((words[0::2] << np.uint64(32)) | words[1::2]) & np.uint64((1 << 53) - 1)
    if fused:
        centred = v.astype(np.int64) - (1 << 52)  # |v - 2^52| <= 2^52: exact in float64
        values = (bound * centred.astype(np.float64)) * 2.0 ** -52
    else:
        values = (v.astype(np.float64) * 2.0 ** -53) * (bound - -bound) + -bound
    return values.reshape(shape)


def torch_kernel_fuses() -> bool | None:
    """Whether torch's uniform_ kernel on this host is its fused (AVX2/AVX-512) one; None where
    that is not known here (not x86, or an ATEN_CPU_CAPABILITY this module does not know)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    forced = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if forced == "default":
        return False
    if forced not in ("", "avx2", "avx512"):
        return None
    import llvmlite.binding  # Numba's LLVM, loaded by the kernels anyway

    features = llvmlite.binding.get_host_cpu_features()
    return bool(features.get("avx2") and features.get("fma"))


def initial_arrays(cfg, task) -> dict[str, np.ndarray] | None:
    """Layer 0's weight_ih, weight_hh, bias_ih, bias_hh and the head's head_weight, head_bias
    as `init.build_initialised_model(cfg, task)` makes them, in `cfg.dtype`; None when torch
    has to draw them (another scheme, a plug-in scheme or cell, several layers or directions,
    a host whose torch kernel is not known here)."""
    if (not is_builtin(cfg.cell) or cfg.layers != 1 or cfg.bidirectional or cfg.init not in NUMPY_SCHEMES
            or scheme_entry(cfg.init) is not None or cfg.dtype not in DTYPES
            or (cfg.forget_bias and cfg.cell != "lstm")):
        return None
    fused = torch_kernel_fuses()
    if fused is None:
        return None
    scale = cfg.init_scale if cfg.init_scale is not None else DEFAULT_SCALE[cfg.init]
    hidden, gates = cfg.hidden, GATE_COUNT[cfg.cell]
    rows, n_in, n_out = gates * hidden, task.input_dim, task.output_dim
    bits = torch_bit_stream(init_seed(cfg.seed))
    shapes = {"weight_ih": (rows, n_in), "weight_hh": (rows, hidden),
              "bias_ih": (rows,), "bias_hh": (rows,)}
    arrays = {}
    for key in RNN_KEYS:
        shape = shapes[key]
        if cfg.init == "default":
            arrays[key] = uniform(bits, shape, 1.0 / math.sqrt(hidden), fused)
        elif key.startswith("bias"):
            arrays[key] = np.zeros(shape)
        else:  # glorot, gate block after gate block: the blocks fill the rows in order
            fan_out, fan_in = hidden, shape[1]
            arrays[key] = uniform(bits, shape, scale * math.sqrt(6.0 / (fan_in + fan_out)), fused)
    head = (n_out, hidden)
    if cfg.init == "default":  # nn.Linear's rule: U(+-1/sqrt(fan_in)) for weight and bias
        bound = 1.0 / math.sqrt(hidden)
        arrays["head_weight"] = uniform(bits, head, bound, fused)
        arrays["head_bias"] = uniform(bits, (n_out,), bound, fused)
    else:
        arrays["head_weight"] = uniform(bits, head, 1.0 * math.sqrt(6.0 / (hidden + n_out)), fused)
        arrays["head_bias"] = np.zeros(n_out)
    dtype = DTYPES[cfg.dtype]
    arrays = {k: a.astype(dtype) for k, a in arrays.items()}
    if cfg.forget_bias:
        arrays["bias_ih"][FORGET_GATE * hidden:(FORGET_GATE + 1) * hidden] += cfg.forget_bias
    return arrays
