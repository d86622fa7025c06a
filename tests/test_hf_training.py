"""Barrier fine-tuning of HF models: the loss in a plain loop and in transformers' Trainer."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")

from probattn.errors import ConfigError  # noqa: E402
from probattn.integrations.hf import use_probattn_attention  # noqa: E402
from probattn.integrations.hf.margins import hf_margins  # noqa: E402
from probattn.integrations.hf.training import HFBarrierLoss  # noqa: E402
from probattn.studies.support_tokens.smooth import smooth_margin_from_det  # noqa: E402

from .hf_models import ids, tiny_gpt2, tiny_llama  # noqa: E402


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_barrier_loss_is_the_models_loss_plus_lambda_times_the_mean_barrier(build):
    model = build()
    tokens = ids(2, 10)
    mask = torch.ones_like(tokens)
    mask[1, 7:] = 0  # right padding
    labels = tokens.masked_fill(mask == 0, -100)
    loss, metrics = HFBarrierLoss(lam=0.3)(model, {"input_ids": tokens, "attention_mask": mask, "labels": labels})
    plain = model(tokens, attention_mask=mask, labels=labels).loss
    lm = hf_margins(model, tokens, reference=True)  # float64 slogdet route; the loss: the smooth log-det's forward
    m = smooth_margin_from_det(lm.sign, lm.logabs, 0.01)  # (L, B, H, T)
    keep = torch.zeros(2, 10, dtype=torch.bool)
    keep[0, 2:] = True
    keep[1, 2:7] = True  # real positions of the short row: its margins see only its real tokens
    expected = -m.permute(1, 3, 0, 2)[keep].mean()
    torch.testing.assert_close(metrics["barrier"], expected)
    torch.testing.assert_close(loss, plain + 0.3 * expected.float())
    torch.testing.assert_close(metrics["min_margin"], m.permute(1, 3, 0, 2)[keep].min())


def test_a_few_steps_of_a_plain_loop_raise_the_margins():
    model = use_probattn_attention(tiny_llama(), "gpam", {"trainable": True}).train()
    barrier = HFBarrierLoss(lam=5.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batch = {"input_ids": ids(4, 12), "labels": ids(4, 12)}
    history = []
    for _ in range(4):
        loss, metrics = barrier(model, batch)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # through the margins too
        opt.step()
        history.append(metrics)
    assert history[-1]["barrier"] < history[0]["barrier"]
    assert history[-1]["mean_margin"] > history[0]["mean_margin"]


def test_barrier_trainer_runs_and_logs_like_the_native_trainer(tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (the 'pretrained' extra)")
    from probattn.integrations.hf.training import BarrierTrainer

    tokens = ids(8, 12)
    data = [{"input_ids": row, "labels": row} for row in tokens]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                          logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                                          learning_rate=1e-3, disable_tqdm=True)
    trainer = BarrierTrainer(model=tiny_llama().train(), args=args, train_dataset=data,
                             barrier=HFBarrierLoss(lam=0.1))
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 3
    for h in logged:
        assert {"ce", "penalty", "barrier", "mean_margin", "min_margin"} <= set(h)
        assert h["loss"] == pytest.approx(h["ce"] + h["penalty"], rel=1e-4)


def test_barrier_loss_refuses_what_it_cannot_compute():
    model = tiny_llama()
    tokens = ids(2, 8)
    with pytest.raises(ConfigError, match="needs labels"):
        HFBarrierLoss()(model, {"input_ids": tokens})
    left = torch.ones_like(tokens)
    left[0, :2] = 0
    with pytest.raises(ConfigError, match="right-padded"):
        HFBarrierLoss()(model, {"input_ids": tokens, "attention_mask": left, "labels": tokens})
    with pytest.raises(ConfigError, match="lam"):
        HFBarrierLoss(lam=-1)


def test_training_mode_samples_tokens_and_the_estimate_uses_their_exact_margins():
    from probattn.studies.support_tokens.prior import draw_subset

    model = tiny_llama().train()  # no dropout in the tiny Llama: train mode only switches sampling on
    tokens = ids(3, 10)
    barrier = HFBarrierLoss(lam=1.0, sample_sequences=2, sample_positions=3,
                            generator=torch.Generator().manual_seed(5))
    _, metrics = barrier(model, {"input_ids": tokens, "labels": tokens})
    rows, positions = draw_subset(3, 10, 2, 3, None, torch.Generator().manual_seed(5), first=2)
    lm = hf_margins(model, tokens)
    m = smooth_margin_from_det(lm.sign, lm.logabs, 0.01)[:, rows]  # (L, 2, H, T)
    picked = torch.gather(m, 3, positions[None, :, None, :].expand(m.shape[0], -1, m.shape[2], -1))
    torch.testing.assert_close(metrics["barrier"], -picked.mean())
    assert model.training
    with pytest.raises(ConfigError, match="sample_positions"):
        HFBarrierLoss(sample_positions=0)
