"""The built-in cells' gate layout: one table that every implementation reads (the torch
modules, the Numba kernels, the ensemble's stacked weights, backend selection, the cost model).

Gate row blocks follow PyTorch's order (torch/nn/modules/rnn.py): a weight or bias of a cell
with G gates has G * hidden rows, block g holding gate GATE_ROWS[cell][g]. No imports, so
that the torch-free parts of the suite (the Numba kernels, the chunk planner) can read it.
"""
GATE_ROWS = {
    "rnn": ("h",),                  # h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    "lstm": ("i", "f", "g", "o"),   # input, forget, cell candidate, output
    "gru": ("r", "z", "n"),         # reset, update, new
}
BUILTIN_CELLS = tuple(GATE_ROWS)
GATES = {cell: len(rows) for cell, rows in GATE_ROWS.items()}   # row blocks per weight
FORGET_GATE = GATE_ROWS["lstm"].index("f")                      # the LSTM's forget-gate block
# The rnn activations the Numba kernels implement (other activations train on torch).
KERNEL_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
