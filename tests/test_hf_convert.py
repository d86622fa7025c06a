"""Pretrained softmax -> daGPAM at an unchanged output, then a warm-up of the negative branch."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")

from probattn.errors import ConfigError  # noqa: E402
from probattn.integrations.hf.convert import convert_to_dual, set_negative_weight  # noqa: E402

from .hf_models import ids, tiny_gpt2, tiny_llama  # noqa: E402


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_converted_model_has_the_pretrained_logits_at_step_0_then_fine_tunes(build):
    model = build()
    tokens = ids(2, 12)
    pretrained = model(tokens).logits
    convert_to_dual(model, "gpam", {"init": "random"})
    torch.testing.assert_close(model(tokens).logits, pretrained, rtol=1e-6, atol=1e-6)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    w_neg = next(p for n, p in model.named_parameters() if n.endswith("w_q_neg"))
    lams = []
    for step in range(4):
        lams.append(set_negative_weight(model, step, warmup_steps=2, target=0.5))
        loss = model(tokens, labels=tokens).loss
        opt.zero_grad()
        loss.backward()
        grad = w_neg.grad.abs().sum()
        assert (grad == 0) if step == 0 else (grad > 0)  # the branch is silent only while lambda = 0
        opt.step()
    assert lams == [0.0, 0.25, 0.5, 0.5]
    assert not torch.allclose(model.eval()(tokens).logits, pretrained, atol=1e-3)


def test_warmup_callback_in_the_trainer(tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (the 'pretrained' extra)")
    from probattn.integrations.hf.convert import negative_weight_callback

    model = convert_to_dual(tiny_llama().train(), "gpam")
    data = [{"input_ids": row, "labels": row} for row in ids(4, 10)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2,
                                          report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=data,
                         callbacks=[negative_weight_callback(warmup_steps=4, target=1.0)]).train()
    lam = model.model.layers[0].self_attn.probattn_mechanism.lambdas()[0]
    assert float(lam) == pytest.approx(0.5)  # set before the third step (global step 2 of 4)


def test_diff_and_misuse_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="pairs the model's heads"):
        convert_to_dual(tiny_llama(), "diff")
    with pytest.raises(ConfigError, match="sets gpam option lam"):
        convert_to_dual(tiny_llama(), "gpam", {"lam": 0.3})
    with pytest.raises(ConfigError, match="convert_to_dual"):
        from probattn.integrations.hf import use_probattn_attention

        set_negative_weight(use_probattn_attention(tiny_llama(), "gpam", {"trainable": True}), 1, 2)
