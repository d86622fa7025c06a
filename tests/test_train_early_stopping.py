"""Early stopping (``train.patience``): training stops once that many evaluations pass without a
new best validation loss, the best step is reported and kept across resumption, and an
experiment treats an early-stopped run as finished."""

import json

import pytest

from probattn.errors import ConfigError
from probattn.experiments.common import finished_result, resumable
from probattn.train import Callback, train

from .conftest import tiny_config


class ScriptedValidation(Callback):
    """Replaces the validation loss by a scripted sequence (one value per evaluation)."""

    def __init__(self, losses):
        self.losses = list(losses)

    def on_eval(self, trainer, step, metrics):
        return {"loss": self.losses.pop(0)}


def config(**train):
    return tiny_config(train={"max_steps": 20, "eval_interval": 2, "log_interval": 2, **train})


def test_stops_after_patience_evaluations_without_a_new_best(tmp_path):
    # evaluations at steps 0, 2, 4, 6, 8: best at step 4, then two without improvement
    script = ScriptedValidation([5.0, 4.0, 3.0, 3.5, 3.2, 1.0, 1.0])
    result = train(config(patience=2), tmp_path, progress=False, callbacks=[script])
    assert (result.step, result.best_step, result.stopped_early, result.best_val_loss) == (8, 4, True, 3.0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["best_step"] == 4 and summary["stopped_early"] is True
    assert finished_result(config(patience=2), tmp_path).best_step == 4  # reused, not trained again
    assert not resumable(config(patience=2), tmp_path)


def test_without_patience_every_step_runs_and_the_best_step_is_still_reported(tmp_path):
    script = ScriptedValidation([5.0, 4.0, 3.0] + [9.0] * 8)
    result = train(config(max_steps=10), tmp_path, progress=False, callbacks=[script])
    assert (result.step, result.best_step, result.stopped_early) == (10, 4, False)


def test_the_best_step_survives_an_interruption(tmp_path):
    class StopAt(Callback):
        def on_step_end(self, trainer, step, record):
            if step == 6:
                trainer.request_stop()

    first = train(config(patience=3), tmp_path, progress=False,
                  callbacks=[ScriptedValidation([5.0, 4.0, 3.0, 3.5]), StopAt()])
    assert first.interrupted and first.best_step == 4
    # resumed: evaluations at 8, 10 do not improve on 3.0 from step 4: 3 evaluations since -> stop at 10
    again = train(config(patience=3), tmp_path, progress=False, resume=True,
                  callbacks=[ScriptedValidation([3.3, 3.1, 0.5])])
    assert (again.step, again.best_step, again.stopped_early) == (10, 4, True)


def test_patience_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="patience"):
        config(patience=0)
