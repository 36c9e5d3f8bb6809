"""The torch backend: any registered cell (built-in or plug-in), on the CPU or a GPU, trained
with torch.optim and autograd (Pascanu's regulariser included)."""
from __future__ import annotations

import numpy as np
import torch

from .. import clip, models
from ..config import RunConfig
from ..diagnostics import autograd_gradient_flow, gradient_flow
from ..init import build_initialised_model
from ..optim import torch_optimizer
from ..regularizer import loss_and_omega
from ..tasks.losses import torch_loss
from .precision import set_precision
from ..cell_table import kernels_cover
from .selection import resolve_device


class TorchBackend:
    name = "torch"

    def __init__(self, cfg: RunConfig, task):
        self.cfg, self.task = cfg, task
        self.device = resolve_device(cfg.device)
        self.autocast = set_precision(self.device, cfg.precision)
        self.dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.model = build_initialised_model(cfg, task).to(self.device)
        self.optimizer = torch_optimizer(cfg, self.model.parameters())

    def _tensor(self, array, dtype=None):
        return torch.as_tensor(array, dtype=dtype or self.dtype, device=self.device)

    def _targets(self, y):
        dtype = self.dtype if self.task.loss_kind == "mse" else torch.long
        return self._tensor(y, dtype)

    def step(self, batch):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.regularizer:  # Pascanu 2013's Omega: the loop keeps every h_t in the graph
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
        x = self._tensor(batch.x)
        output, _ = self.model.rnn(x)
        output.retain_grad()
        out = self.model.readout(output)
        torch_loss(self.task.loss_kind, out, self._targets(batch.y)).backward()
        self.model.zero_grad(set_to_none=True)
        return output.grad[:, -1, : self.model.rnn.hidden_size].double().cpu().numpy()

    def gradflow(self, batch, phase, step):
        if models.is_plugin(self.cfg.cell):  # a black box to the kernels: autograd measures
            return autograd_gradient_flow(self.model, batch.x, batch.y, self.task.loss_kind,
                                          phase, step)
        if not kernels_cover(self.cfg):
            return None  # the instrument measures single-layer reference cells (forward part)
        return gradient_flow(self.cfg, self.layer0_params(), batch.x,
                             self.last_hidden_grad(batch), phase, step)

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
