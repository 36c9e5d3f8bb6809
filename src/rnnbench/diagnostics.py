"""Gradient-flow diagnostics of a run: how the loss gradient decays (or explodes) with the lag.

For a loss at the last step, the Numba reference kernels give, for every lag k = T - t:
‖∂L/∂h_t‖ (the BPTT error δ carried back k steps), the norm of the Jacobian product
Π W diag f'(net), the seed's bound (β_W β_f)^k, and for the LSTM the product of forget gates
along the direct cell path. Measured on layer 0, forward direction, in float64.

A plug-in cell (a black box to the kernels) gets the same ‖∂L/∂h_{T−k}‖ through autograd
(`autograd_gradient_flow`); its other columns are NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

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
    from . import reference  # Numba: imported only where the kernels measure
    with np.errstate(all="ignore"):
        profile = reference.jacobian_profile(cfg.cell, params, xt, h0, c0,
                                             activation=cfg.activation, grad_last=grad_last)
    frame = pd.DataFrame({k: profile[k] for k in COLUMNS[2:]})
    frame.insert(0, "step", step)
    frame.insert(0, "phase", phase)
    return frame


# Autograd nodes that only reshape or copy their one input: looked through to find the node
# that computed a step's state.
_PASS_THROUGH = ("UnsqueezeBackward", "SqueezeBackward", "ViewBackward", "ReshapeAliasBackward",
                 "TransposeBackward", "PermuteBackward", "CloneBackward", "ToCopyBackward",
                 "AliasBackward", "ExpandBackward")


def _pass_through(node) -> bool:
    return node is not None and type(node).__name__.rstrip("0123456789") in _PASS_THROUGH


def _is_time_stack(node, length: int) -> bool:
    return (node is not None and type(node).__name__ in ("StackBackward0", "CatBackward0")
            and len(node.next_functions) == length)


def step_nodes(output):
    """(steps, direct): the per-step tensors a (B, L, H) output was built from, as
    [(node, output_nr)] per step t, the autograd node that computed step t's tensor; and
    whether the output is their stack itself (up to reshapes and copies). `steps` comes from the
    torch.stack/torch.cat of L per-step tensors nearest to the output in its graph: the output
    itself (an RNN's h_t), or the states that a readout reads (the LRU's y_t = Re(C x_t) + D u_t
    reads the stacked x_t). (None, False) when the graph holds no such stack (a parallel scan,
    writes into a preallocated tensor)."""
    length, node = output.shape[1], output.grad_fn
    while _pass_through(node):
        node = node.next_functions[0][0]
    direct = _is_time_stack(node, length)
    if not direct:  # breadth-first up the graph; a stack is not looked through
        seen, frontier, node = set(), [node], None
        while frontier and node is None:
            following = []
            for candidate in frontier:
                if candidate is None or id(candidate) in seen:
                    continue
                seen.add(id(candidate))
                if _is_time_stack(candidate, length):
                    node = candidate
                    break
                following.extend(f for f, _ in candidate.next_functions)
            frontier = following
        if node is None:
            return None, False
    steps = []
    for producer, nr in node.next_functions:
        while _pass_through(producer):
            producer, nr = producer.next_functions[0]
        steps.append((producer, nr))
    return steps, direct


def autograd_gradient_flow(model, x, y, loss_kind: str, phase: str, step: int) -> pd.DataFrame:
    """The gradient-flow profile of a plug-in cell's stack (models.PluginStack), in float64 on
    a copy of the model. Per lag k: grad_norm = ‖∂L/∂h_{T−k}‖, mean over the batch, where h_t
    is step t's tensor of layer 0's forward instance and ∂L/∂h_T comes from g, the real loss's
    gradient through the rest of the model at the last step (ones/√H where it is zero), carried
    back through the cell's recurrence: the kernels' quantity for the built-in cells.

    The cell is a black box, so h_t is the tensor its forward stacked as step t's (`step_nodes`):
    its output h_t when it returns the stack (then ∂L/∂h_T = g), or its state when its output is
    a readout of stacked states (the LRU's x_t, complex: the norm of the real and imaginary
    parts together; lag 0 is then ‖∂L/∂x_T‖, not ‖g‖). The gradient reaching h_t is read by a
    hook on the autograd node that computed it, which sums every path from the last step's
    output. A cell that stacks no per-step tensors (a parallel scan, writes into a
    preallocated tensor) has no such nodes: grad_norm is NaN for k > 0.
    jacobian_norm, bound and forget_product are NaN."""
    import copy

    import torch

    from .tasks.losses import torch_loss
    probe = copy.deepcopy(model).double().eval()
    device = next(probe.parameters()).device
    xs = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    ys = torch.as_tensor(np.asarray(y), device=device,
                         dtype=torch.float64 if loss_kind == "mse" else torch.long)
    with torch.enable_grad():
        output, _, first = probe.rnn.run(xs)
        loss = torch_loss(loss_kind, probe.readout(output), ys)
        g = torch.autograd.grad(loss, first, retain_graph=True)[0][:, -1]
        if not torch.any(g):  # e.g. a saturated readout: show the propagation of a unit vector
            g = torch.full_like(g, g.shape[1] ** -0.5)
        length, (nodes, direct) = first.shape[1], step_nodes(first)
        grads: dict[int, torch.Tensor | None] = {}
        handles = [node.register_prehook(
                       lambda grad_outputs, t=t, nr=nr: grads.__setitem__(t, grad_outputs[nr]))
                   for t, (node, nr) in enumerate(nodes or []) if node is not None]
        try:
            torch.autograd.backward(first[:, -1], grad_tensors=g)
        finally:
            for handle in handles:
                handle.remove()
    grad_norm = np.full(length, np.nan)
    for t, (node, _) in enumerate(nodes or []):
        if node is not None:  # a hook that never ran: no path from h_T to h_t, no gradient
            delta = grads.get(t)
            grad_norm[length - 1 - t] = 0.0 if delta is None else float(
                delta.detach().norm(dim=-1).mean())
    if direct or nodes is None:  # h_T is the output: its gradient is g
        grad_norm[0] = float(g.norm(dim=-1).mean())
    nan = np.full(length, np.nan)
    frame = pd.DataFrame({"lag": np.arange(length), "grad_norm": grad_norm,
                          "jacobian_norm": nan, "bound": nan, "forget_product": nan})
    frame.insert(0, "step", step)
    frame.insert(0, "phase", phase)
    return frame
