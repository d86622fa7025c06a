"""Study logging lives in callbacks: ``log_query_grad_norms`` installs :class:`QueryGradNorms`,
whose records match an independent computation and the order the trainer used to log them in."""

import torch

from probattn.diagnostics.query_grads import QueryGradNorms, query_grad_norms
from probattn.train import Callback, train
from probattn.train import trainer as trainer_module
from probattn.train.metrics import read_jsonl

from .conftest import tiny_config


class Independent(Callback):
    """After backward: each layer's query-row gradient norm in float64, straight from the
    parameters by name (rows 0..C of c_attn, daGPAM's W_Q- apart)."""

    def __init__(self):
        self.seen: dict[int, dict[str, float]] = {}

    def on_after_backward(self, trainer, step):
        C = trainer.model.config.n_embd
        norms = {}
        for name, p in trainer.model.named_parameters():
            parts = name.split(".")
            if parts[0] == "blocks" and parts[2:] == ["attn", "c_attn", "weight"]:
                norms[f"grad_norm_q.{parts[1]}"] = float(p.grad[:C].double().pow(2).sum().sqrt())
            if parts[0] == "blocks" and parts[-1] == "w_q_neg":
                norms[f"grad_norm_q_extra.{parts[1]}"] = float(p.grad.double().pow(2).sum().sqrt())
        self.seen[step] = norms
        return {"after": 1.0}


def config(**train_overrides):
    return tiny_config(model={"attention": "gpam"},
                       train={"max_steps": 4, "eval_interval": 4, "log_interval": 2, **train_overrides})


def train_rows(run_dir):
    return [{k: v for k, v in r.items() if k != "tokens_per_s"}  # timing: differs run to run
            for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "train"]


def test_flag_logs_what_an_independent_computation_gives_in_the_old_order(tmp_path):
    check = Independent()
    train(config(log_query_grad_norms=True), tmp_path, progress=False, callbacks=[check])
    rows = train_rows(tmp_path)
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        expected = check.seen[r["step"]]
        assert set(expected) == {"grad_norm_q.0", "grad_norm_q.1", "grad_norm_q_extra.0", "grad_norm_q_extra.1"}
        for key, value in expected.items():
            assert abs(r[key] - value) <= 1e-5 * value and value > 0, key
        # as the trainer logged them inline: after the objective's parts, before other callbacks and clipping
        keys = list(r)
        assert keys[:4] == ["step", "split", "loss", "lr"]
        assert keys.index("ce") < keys.index("grad_norm_q.0") < keys.index("after") < keys.index("grad_norm")


def test_flag_is_the_callback_installed_once(tmp_path):
    train(config(log_query_grad_norms=True), tmp_path / "flag", progress=False)
    train(config(), tmp_path / "callback", progress=False, callbacks=[QueryGradNorms()])
    train(config(log_query_grad_norms=True), tmp_path / "both", progress=False, callbacks=[QueryGradNorms()])
    flag = train_rows(tmp_path / "flag")
    assert flag == train_rows(tmp_path / "callback") == train_rows(tmp_path / "both")
    assert "grad_norm_q.0" in flag[0]


def test_without_the_flag_no_query_norms_and_the_old_import_still_works(tmp_path):
    train(config(), tmp_path, progress=False)
    assert not any(k.startswith("grad_norm_q") for r in train_rows(tmp_path) for k in r)
    assert trainer_module.query_grad_norms is query_grad_norms
    assert query_grad_norms(torch.nn.Linear(2, 2)) == {}  # not a GPT: nothing to log
