"""The built-in cells' gate layout, their options and what the Numba kernels cover: one table
for the cell registry, the torch modules, the kernels' input checks, the ensemble's stacked weights, backend selection and the
chunk planner's cost model.

Gate row blocks follow PyTorch's order (torch/nn/modules/rnn.py): a weight or bias of a cell
with G gates has G * hidden rows, block g holding gate GATE_ROWS[cell][g] (the kernels slice
their gates in this order and check the shapes against GATE_COUNT). No imports, so that the
torch-free parts of the suite (the kernels, the chunk planner) can read it.
"""
GATE_ROWS = {
    "rnn": ("h",),                  # h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    "lstm": ("i", "f", "g", "o"),   # input, forget, cell candidate, output
    "gru": ("r", "z", "n"),         # reset, update, new
}
BUILTIN_CELLS = tuple(GATE_ROWS)
# The run fields each built-in cell understands beyond the common ones (models.registry).
BUILTIN_OPTIONS = {"rnn": ("activation",), "lstm": ("forget_bias",), "gru": ()}
GATE_COUNT = {cell: len(rows) for cell, rows in GATE_ROWS.items()}  # row blocks per weight
FORGET_GATE = GATE_ROWS["lstm"].index("f")                      # the LSTM's forget-gate block
# The rnn activations the Numba kernels implement (other activations train on torch).
KERNEL_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")


def kernels_cover(cfg) -> bool:
    """The Numba kernels implement layer 0 of this model: a built-in cell (the rnn with a
    kernel activation), single layer (their gradient-flow profile needs no more)."""
    return (cfg.cell in BUILTIN_CELLS and cfg.layers == 1
            and (cfg.cell != "rnn" or cfg.activation in KERNEL_ACTIVATIONS))


def numba_trains(cfg) -> bool:
    """The Numba backend can train this run: what the kernels cover, one direction (Omega,
    which rnnbench.regularizer.check restricts to the one-layer rnn, included)."""
    return kernels_cover(cfg) and not cfg.bidirectional
