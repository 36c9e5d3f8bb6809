"""Fixtures shared by the test modules. Plain helpers (workflow copies, Snakemake commands,
result-table comparison, unvalidated configs) live in tests/support.py, imported by name."""
from __future__ import annotations

import pytest
import torch

from support import make_workdir


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny models only pay for synchronisation with more,
    and CI has two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workflow_copy(tmp_path):
    """A function writing a copy of the workflow (Snakefile, workflow/) with a study file into a
    fresh folder under tmp_path: workflow_copy(study_dict, name="study.yaml", extra=()) -> Path."""
    count = 0

    def make(study=None, name: str = "study.yaml", extra: tuple[str, ...] = ()):
        nonlocal count
        count += 1
        return make_workdir(tmp_path / f"workflow-{count}", study, name, extra)
    return make
