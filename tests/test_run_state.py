"""RunState, the bookkeeping of one run: step outcomes, evaluations, divergence, solving, and a
state saved mid-run that continues to the result of the uninterrupted run."""
import io
import math

import numpy as np
import pandas as pd
import pytest
import torch

import rnnbench
from rnnbench import tasks
from rnnbench.backends import make_backend
from rnnbench.config import RunConfig
from rnnbench.run_state import RunState, StepOutcome
from rnnbench.train import batch_seed

TINY = dict(task="adding", T=8, hidden=8, batch_size=8, steps=25, eval_interval=10,
            eval_size=64, dtype="float64")


def same_every_time(summary: dict) -> dict:
    """The summary without what differs between two trainings (time, provenance)."""
    return {k: v for k, v in summary.items() if k != "wall_time_s" and not k.startswith("prov_")}


def bare_state(**fields) -> RunState:
    cfg = RunConfig.from_dict({**TINY, **fields})
    return RunState(cfg, tasks.make(cfg.task, cfg.T), spectral_radius_start=1.0)


def evaluated_at_start(state: RunState, loss: float = 0.25) -> RunState:
    """A step-0 evaluation whose mse is `loss` (adding: predictions off by sqrt(loss))."""
    y = np.zeros(4)
    state.record_eval(0, np.full(4, math.sqrt(loss)), y)
    return state


def result_of(state: RunState):
    return state.to_result(backend_name="test", device="cpu", spectral_radius_end=1.0, n_params=3)


@pytest.mark.parametrize("loss,grad_norm", [(math.nan, 1.0), (0.1, math.inf), (1e9, 1.0)])
def test_non_finite_or_exploding_step_is_diverged_and_recorded(loss, grad_norm):
    state = evaluated_at_start(bare_state())
    assert state.record_step(1, 0.2, 1.0, False) is StepOutcome.LOGGED
    assert state.record_step(2, loss, grad_norm, True) is StepOutcome.DIVERGED
    assert state.diverged and state.diverged_step == 2 and not state.running()
    s = result_of(state).summary
    assert s["diverged"] is True and s["diverged_step"] == 2 and s["steps_done"] == 2
    assert s["frac_clipped"] == 0.5 and not s["solved"]
    curve = result_of(state).curve
    assert list(curve["step"]) == [0, 1, 2]          # the diverged step has its row
    assert curve["eval_loss"].notna().tolist() == [True, False, False]


def test_evaluation_steps_ask_for_an_evaluation_which_appends_the_row():
    state = evaluated_at_start(bare_state())
    outcomes = {step: state.record_step(step, 0.2, 1.0, False) for step in range(1, 26)}
    evaluate = [step for step, o in outcomes.items() if o is StepOutcome.EVALUATE]
    assert evaluate == [10, 20, 25]                  # every eval_interval, and the last step
    assert all(o is StepOutcome.LOGGED for step, o in outcomes.items() if step not in evaluate)
    assert [row["step"] for row in state.curve] == [0] + [s for s in range(1, 26) if s not in evaluate]
    state.record_eval(25, np.full(4, 0.1), np.zeros(4), 0.2, 1.0, True)
    row = state.curve[-1]
    assert row["step"] == 25 and row["train_loss"] == 0.2 and row["clipped"] is True
    assert row["eval_loss"] == pytest.approx(0.01) and state.best_eval_loss == pytest.approx(0.01)


def test_overflowing_predictions_are_a_divergence():
    state = evaluated_at_start(bare_state())
    state.record_step(10, 0.2, 1.0, False)
    state.record_eval(10, np.full(4, np.inf), np.zeros(4), 0.2, 1.0, False)
    assert state.diverged and state.diverged_step == 10 and not state.running()


@pytest.mark.parametrize("early_stop", [True, False])
def test_solving_ends_the_run_only_with_early_stop(early_stop):
    state = evaluated_at_start(bare_state(early_stop=early_stop), loss=0.25)
    assert not state.solved and state.running()
    state.record_step(10, 0.2, 1.0, False)
    state.record_eval(10, np.zeros(4), np.zeros(4), 0.2, 1.0, False)   # exact: solved
    assert state.solved and state.steps_to_solve == 10
    assert state.running() is not early_stop
    s = result_of(state).summary
    assert s["solved"] and s["steps_to_solve"] == 10 and s["best_eval_loss"] == 0.0


# --- a state saved and loaded mid-run -------------------------------------------------------

def start(cfg: RunConfig):
    task = tasks.make(cfg.task, cfg.T)
    backend = make_backend(cfg, task)
    eval_batch = task.sample(cfg.eval_size, cfg.eval_seed, split="test")
    diag_batch = task.sample(min(cfg.eval_size, 64), cfg.eval_seed + 1, split="test")
    return task, backend, eval_batch, diag_batch


def train_until(stop, state, task, backend, eval_batch, diag_batch):
    """The loop of train.run, through the public RunState API only."""
    cfg = state.cfg
    if state.step == 0 and not state.curve:
        state.record_eval(0, backend.predict(eval_batch.x), eval_batch.y)
    while state.running() and state.step < stop:
        loss, grad_norm, clipped = backend.step(
            task.sample(cfg.batch_size, batch_seed(cfg.seed, state.step), split="train"))
        step = state.step + 1
        outcome = state.record_step(step, loss, grad_norm, clipped)
        if outcome is StepOutcome.DIVERGED:
            break
        if outcome is StepOutcome.EVALUATE:
            state.record_eval(step, backend.predict(eval_batch.x), eval_batch.y,
                              loss, grad_norm, clipped)
        if state.gradflow_due(step):
            state.record_gradflow(backend.gradflow(diag_batch, f"step {step}", step))
    if not state.running():
        state.record_gradflow(backend.gradflow(diag_batch, "end", state.step))
        return state.to_result(backend_name=backend.name, device=backend.device,
                               spectral_radius_end=backend.spectral_radius(),
                               n_params=backend.n_params())
    return None


def assert_same_result(a, b):
    pd.testing.assert_frame_equal(pd.DataFrame([same_every_time(a.summary)]),
                                  pd.DataFrame([same_every_time(b.summary)]), check_exact=True)
    pd.testing.assert_frame_equal(a.curve, b.curve, check_exact=True)
    pd.testing.assert_frame_equal(a.gradflow, b.gradflow, check_exact=True)


@pytest.mark.parametrize("backend_name", ["torch", "numba"])
def test_state_saved_mid_run_continues_to_the_identical_result(backend_name):
    cfg = RunConfig.from_dict({**TINY, "steps": 30, "optimizer": "adam", "diagnostics_every": 10,
                               "backend": backend_name})
    task, backend, eval_batch, diag_batch = start(cfg)
    state = RunState.fresh(cfg, task, backend, diag_batch)
    assert train_until(13, state, task, backend, eval_batch, diag_batch) is None
    buffer = io.BytesIO()   # through bytes, as a checkpoint file: nothing shared with `state`
    torch.save({"state": state.state_dict(), "backend": backend.state_dict()}, buffer)
    whole = train_until(math.inf, state, task, backend, eval_batch, diag_batch)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    task, backend, eval_batch, diag_batch = start(cfg)
    resumed = RunState.fresh(cfg, task, backend, diag_batch)
    backend.load_state_dict(saved["backend"])
    resumed.load_state_dict(saved["state"])
    assert resumed.step == 13 and resumed.best_eval_loss == saved["state"]["best_eval_loss"]
    assert_same_result(train_until(math.inf, resumed, task, backend, eval_batch, diag_batch), whole)
    assert_same_result(rnnbench.run(cfg), whole)        # the loop above is train.run's


def test_checkpoint_file_round_trip_and_its_errors(tmp_path):
    cfg = RunConfig.from_dict({**TINY, "backend": "torch"})
    task, backend, eval_batch, diag_batch = start(cfg)
    state = RunState.fresh(cfg, task, backend, diag_batch)
    train_until(12, state, task, backend, eval_batch, diag_batch)
    state.save_checkpoint(tmp_path / "c.pt", backend)
    task, backend2, eval_batch, diag_batch = start(cfg)
    loaded = RunState.fresh(cfg, task, backend2, diag_batch)
    loaded.load_checkpoint(tmp_path / "c.pt", backend2)
    assert loaded.state_dict().keys() == state.state_dict().keys()
    assert loaded.step == 12 and len(loaded.curve) == 13
    pd.testing.assert_frame_equal(pd.DataFrame(loaded.curve), pd.DataFrame(state.curve))
    for a, b in zip(backend.model.parameters(), backend2.model.parameters()):
        assert torch.equal(a, b)

    other = RunState.fresh(cfg.replace(seed=9), task, backend2, diag_batch)
    with pytest.raises(ValueError, match="another config"):
        other.load_checkpoint(tmp_path / "c.pt", backend2)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        loaded.load_checkpoint(tmp_path / "bad.pt", backend2)
    incomplete = {k: v for k, v in state.state_dict().items() if k != "n_clipped"}
    with pytest.raises(ValueError, match="n_clipped"):
        loaded.load_state_dict(incomplete)
    # `auto` may now pick another backend than the one that wrote it: named, not a KeyError
    from rnnbench.backends.numba_backend import NumbaBackend
    with pytest.raises(ValueError, match="written by backend 'torch'.*'numba'"):
        loaded.load_checkpoint(tmp_path / "c.pt", NumbaBackend(cfg, task))


def test_checkpoints_written_before_run_state_still_load():
    # then "solved_any" meant solved, and "solved" that the run stopped (early stop)
    state = evaluated_at_start(bare_state(early_stop=False))
    state.record_step(10, 0.2, 1.0, False)
    state.record_eval(10, np.zeros(4), np.zeros(4), 0.2, 1.0, False)
    old = {**state.state_dict(), "solved_any": True, "solved": False}
    loaded = bare_state(early_stop=False)
    loaded.load_state_dict(old)
    assert loaded.solved and loaded.steps_to_solve == 10 and loaded.running()
