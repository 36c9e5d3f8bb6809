"""Training backends: who holds the parameters and computes one optimisation step.

Every backend offers the same small interface used by `train.run`:
`step(batch) -> (loss, grad_norm_before_clip, clipped)`, `predict(x) -> numpy`,
`spectral_radius()`, `gradflow(batch, phase, step) -> DataFrame | None`, `n_params()`,
`state_dict()` / `load_state_dict()` (checkpoints), and the attributes `name`, `device`, `cfg`.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import clip, init, models
from .config import RunConfig
from .optim import torch_optimizer

REFERENCE_CELLS = ("rnn", "lstm", "gru")
REFERENCE_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("field 'device': 'cuda' requested but no CUDA device is available")
    return device


def reference_covers(cfg: RunConfig) -> bool:
    """The Numba kernels cover layer 0 of this model (rnn with a kernel activation, lstm, gru)."""
    return (cfg.cell in REFERENCE_CELLS and cfg.layers == 1
            and (cfg.cell != "rnn" or cfg.activation in REFERENCE_ACTIVATIONS))


def numba_supports(cfg: RunConfig) -> bool:
    """The Numba backend trains single-layer, one-direction rnn/lstm/gru (without Omega)."""
    return reference_covers(cfg) and not cfg.bidirectional and not cfg.regularizer


def resolve_backend(cfg: RunConfig) -> str:
    device = resolve_device(cfg.device)
    if cfg.backend == "auto":
        return "numba" if device == "cpu" and numba_supports(cfg) else "torch"
    if cfg.backend == "numba":
        if device != "cpu":
            raise ValueError("field 'backend': 'numba' runs on the CPU; set device: cpu or auto")
        if models.is_plugin(cfg.cell):
            raise ValueError(f"field 'backend': 'numba' has kernels for rnn/lstm/gru only; "
                             f"cell {cfg.cell!r} is a plug-in: use backend torch or auto")
        if not numba_supports(cfg):
            raise ValueError("field 'backend': 'numba' supports single-layer, unidirectional "
                             f"rnn ({'/'.join(REFERENCE_ACTIVATIONS)}), lstm and gru; "
                             f"got cell={cfg.cell!r} activation={cfg.activation!r} "
                             f"layers={cfg.layers} bidirectional={cfg.bidirectional}")
    return cfg.backend


def make_backend(cfg: RunConfig, task):
    name = resolve_backend(cfg)
    if name == "numba":
        from .numba_backend import NumbaBackend
        return NumbaBackend(cfg, task)
    if name == "ensemble":
        raise ValueError("field 'backend': 'ensemble' trains groups of runs; use "
                         "rnnbench.ensemble.run_group (the pipeline does this for you)")
    return TorchBackend(cfg, task)


def init_seed(seed: int) -> int:
    """Seed of the weight initialisation, separate from the data stream's."""
    return int(np.random.SeedSequence([seed, 0x1417]).generate_state(1)[0])


def build_initialised_model(cfg: RunConfig, task) -> torch.nn.Module:
    """The model every backend starts from: same seed -> same weights, on every backend."""
    generator = torch.Generator().manual_seed(init_seed(cfg.seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(cfg.seed))
        model = models.build(cfg, task)
    init.apply(model, cfg, generator)
    return model


def make_optimizer(cfg: RunConfig, parameters):
    """The torch.optim optimiser of the run (the table: rnnbench.optim)."""
    return torch_optimizer(cfg, parameters)


def set_precision(device: str, precision: str):
    """FP32 means no TF32 anywhere (cuDNN allows it by default); BF16 autocasts matmuls."""
    if device.startswith("cuda"):
        allow = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
    if device.startswith("cuda") and precision == "bf16":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


class TorchBackend:
    name = "torch"

    def __init__(self, cfg: RunConfig, task):
        self.cfg, self.task = cfg, task
        self.device = resolve_device(cfg.device)
        self.autocast = set_precision(self.device, cfg.precision)
        self.dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.model = build_initialised_model(cfg, task).to(self.device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())

    def _tensor(self, array, dtype=None):
        return torch.as_tensor(array, dtype=dtype or self.dtype, device=self.device)

    def _targets(self, y):
        dtype = self.dtype if self.task.loss_kind == "mse" else torch.long
        return self._tensor(y, dtype)

    def step(self, batch):
        from .tasks.losses import torch_loss
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.regularizer:  # Pascanu 2013's Omega: the loop keeps every h_t in the graph
            from .regularizer import loss_and_omega
            loss, omega = loss_and_omega(self.model, self._tensor(batch.x),
                                         self._targets(batch.y), self.task.loss_kind)
            (loss + self.cfg.regularizer * omega).backward()
        else:
            with self.autocast():
                out = self.model(self._tensor(batch.x))
            loss = torch_loss(self.task.loss_kind, out.to(self.dtype), self._targets(batch.y))
            loss.backward()
        grad_norm, clipped = clip.clip_(self.model.parameters(), self.cfg)
        if np.isfinite(grad_norm):
            self.optimizer.step()
            if models.is_plugin(self.cfg.cell):
                self.model.rnn.after_step()  # plug-in cells' after-step hooks (constraints)
        return float(loss.detach()), float(grad_norm), bool(clipped)

    @torch.no_grad()
    def predict(self, x, chunk: int = 1024):
        self.model.eval()
        outs = []
        for i in range(0, len(x), chunk):
            with self.autocast():
                outs.append(self.model(self._tensor(x[i:i + chunk])).double().cpu().numpy())
        return np.concatenate(outs)

    def spectral_radius(self) -> float:
        return float(models.spectral_radius(self.model))

    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def layer0_params(self) -> dict:
        rnn = self.model.rnn
        return {k: getattr(rnn, f"{k}_l0").detach().double().cpu().numpy()
                for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

    def last_hidden_grad(self, batch) -> np.ndarray:
        """dL/dh_T of layer 0's forward direction through the readout at the last step."""
        from .tasks.losses import torch_loss
        x = self._tensor(batch.x)
        output, _ = self.model.rnn(x)
        output.retain_grad()
        out = self.model.readout(output)
        torch_loss(self.task.loss_kind, out, self._targets(batch.y)).backward()
        self.model.zero_grad(set_to_none=True)
        return output.grad[:, -1, : self.model.rnn.hidden_size].double().cpu().numpy()

    def gradflow(self, batch, phase, step):
        if models.is_plugin(self.cfg.cell):  # a black box to the kernels: autograd measures
            from .diagnostics import autograd_gradient_flow
            return autograd_gradient_flow(self.model, batch.x, batch.y, self.task.loss_kind,
                                          phase, step)
        if not reference_covers(self.cfg):
            return None  # the instrument measures single-layer reference cells (forward part)
        from .diagnostics import gradient_flow
        return gradient_flow(self.cfg, self.layer0_params(), batch.x,
                             self.last_hidden_grad(batch), phase, step)

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
