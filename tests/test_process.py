"""rnnbench.process: a job's imports kept out of the collector's way, and its exit without the
interpreter's teardown."""
from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

import pytest

from rnnbench.process import imports_settled


class _Node:
    pass


def _cycle():
    """A weak reference to an object that only a reference cycle keeps alive."""
    node = _Node()
    node.self = node
    return weakref.ref(node)


def test_imports_settled_pauses_the_collector_then_freezes_what_the_block_made():
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with imports_settled():
        assert not gc.isenabled()
        made = [[i] for i in range(2000)]  # tracked containers, like a module's objects
        inside = _cycle()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)
    after = _cycle()
    gc.collect()
    assert inside() is not None  # frozen: no collection looks at it again
    assert after() is None       # made later: collected as usual


def test_imports_settled_keeps_a_disabled_collector_disabled_and_lets_errors_through():
    gc.disable()
    try:
        with imports_settled():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError, match="boom"):
        with imports_settled():
            raise RuntimeError("boom")
    assert gc.isenabled()


def _run(script: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("status, code", [(3, 3), (0, 0), (None, 0)])
def test_end_process_runs_exit_handlers_flushes_and_skips_the_teardown(tmp_path, status, code):
    proc = _run(f"""
        import atexit, sys
        from pathlib import Path
        from rnnbench.process import end_process

        class Torn:  # a module-level object: only the interpreter's teardown deletes it
            def __del__(self):
                sys.stderr.write("torn down\\n")

        keep = Torn()
        atexit.register(lambda: Path("handler-ran").write_text("yes"))
        sys.stdout.write("buffered, no newline")
        end_process({status!r})
        print("not reached")
        """, tmp_path)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "handler-ran").read_text() == "yes"
    assert "torn down" not in proc.stderr


def test_the_command_line_entry_point_keeps_its_exit_status(tmp_path):
    """`python -m rnnbench` ends through end_process: a bad study file is still status 2 with
    its message, and a good one status 0 with its output."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: s\nfixed: {task: adding, T: 10, cell: nope}\n")
    proc = subprocess.run([sys.executable, "-m", "rnnbench", "validate", str(bad)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "field 'cell'" in proc.stderr and "'nope'" in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text("study: s\nfixed: {task: adding, T: 10, cell: gru}\nseeds: 2\n")
    proc = subprocess.run([sys.executable, "-m", "rnnbench", "validate", str(good)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "study 's': 2 runs" in proc.stdout
