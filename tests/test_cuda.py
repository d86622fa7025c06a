"""GPU parity: every fast path on CUDA against the CPU float64 reference.

CI has no GPU, so these run where one is present (``pytest tests/test_cuda.py`` on a CUDA machine);
the figures they produced are in the README's benchmark section.
"""

from __future__ import annotations

import pytest
import torch

from probattn.attention import AttentionContext, available_attention, build_attention
from probattn.model import GPT, GPTConfig
from probattn.studies.support_tokens.moments import strict_cov
from probattn.studies.support_tokens.objective import BarrierObjective

from .conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _mechanism(name: str, T: int = 64):
    torch.manual_seed(0)
    ctx = AttentionContext(n_head=4, head_dim=32, layer_idx=1, n_layer=3, block_size=T)
    return build_attention(name, ctx).eval()


def _qkv(T: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, T, 32, generator=g, dtype=torch.float64) for _ in range(3)]


def _forward_backward(mech, qkv, device, dtype, **kwargs):
    leaves = [t.to(device=device, dtype=dtype).detach().clone().requires_grad_() for t in qkv]
    y = mech.to(device=device, dtype=dtype)(*leaves, **kwargs)[0]
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    (y * w.to(device=device, dtype=dtype)).sum().backward()
    return [y.double().cpu()] + [t.grad.double().cpu() for t in leaves]


@pytest.mark.parametrize("name", available_attention())
def test_fast_path_on_cuda_float32_matches_cpu_float64_reference(name):
    """The CUDA fused kernels (float32) against the materialised weights on CPU in float64."""
    qkv = _qkv()
    reference = _forward_backward(_mechanism(name), qkv, "cpu", torch.float64, need_weights=True)
    fast = _forward_backward(_mechanism(name), qkv, CUDA, torch.float32)
    for a, b in zip(fast, reference):
        # TF32 may be on for matmuls: a 1e-3 relative budget covers it, a wrong formula is O(1)
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", available_attention())
def test_bf16_fast_path_stays_within_bf16_error(name):
    qkv = _qkv(T=256)
    reference = _forward_backward(_mechanism(name, 256), qkv, "cpu", torch.float64)[0]
    fast = _forward_backward(_mechanism(name, 256), qkv, CUDA, torch.bfloat16)[0]
    err = (fast - reference).abs().max() / reference.abs().max()
    assert err < 3e-2, f"{name}: bf16 relative error {err:.3g}"


@pytest.mark.parametrize("name", available_attention())
def test_fast_path_is_finite_at_long_context_on_cuda(name):
    qkv = [t.float() for t in _qkv(T=4096)]
    y = _mechanism(name, 4096).to(CUDA)(*[t.to(CUDA) for t in qkv])[0]
    assert torch.isfinite(y).all()


def test_barrier_moments_on_cuda_match_the_cpu_float64_reference():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 128, 8, generator=g, dtype=torch.float64)
    k = torch.randn(2, 3, 128, 8, generator=g, dtype=torch.float64)
    ref, _ = strict_cov(q, k, impl="reference")
    fast, _ = strict_cov(q.float().to(CUDA), k.float().to(CUDA), impl="fast")
    torch.testing.assert_close(fast.double().cpu(), ref, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("placement", ["embedding", "layers"])
def test_barrier_objective_on_cuda_matches_cpu(placement):
    """Loss, penalty and gradients of one batch agree between CPU float64 and CUDA float32 (exact terms)."""
    cfg = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 50, (4, 32), generator=g)
    y = torch.randint(0, 50, (4, 32), generator=g)
    results = []
    for device, dtype in (("cpu", torch.float64), (CUDA, torch.float32)):
        torch.manual_seed(0)
        model = GPT(cfg).to(device=device, dtype=dtype)
        objective = BarrierObjective(model, lam=0.05, placement=placement, sample_sequences=None,
                                     sample_positions=None).to(device=device, dtype=dtype)
        loss, parts = objective(model, x.to(device), y.to(device))
        loss.backward()
        grads = [p.grad.double().cpu() for p in model.parameters()]
        results.append((loss.double().cpu(), parts["penalty"].double().cpu(), grads))
    (l64, p64, g64), (l32, p32, g32) = results
    torch.testing.assert_close(l32, l64, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(p32, p64, rtol=1e-3, atol=1e-5)
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a, b, rtol=5e-3, atol=5e-4)


def test_model_on_cuda_matches_cpu_and_greedy_generation_follows_its_logits():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=48, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    model = GPT(cfg).double().eval()
    idx = torch.randint(0, 40, (2, 5))
    out = model.to(CUDA).float().generate(idx.to(CUDA), 20, temperature=0)
    logits, _ = model(out[:, :-1])
    assert torch.equal(logits[:, 4:].argmax(-1), out[:, 5:])
    cpu_logits, _ = model.cpu().double()(out[:, :-1].cpu())
    torch.testing.assert_close(logits.double().cpu(), cpu_logits, rtol=2e-3, atol=2e-3)


def test_trainer_on_cuda_with_bf16_and_compile_writes_a_checkpoint_the_cpu_loads(tmp_path):
    from probattn.runs import load_run
    from probattn.train import train

    cfg = tiny_config(train={"device": "cuda", "compile": "on", "max_steps": 8, "eval_interval": 4})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 8 and result.best_val_loss < 10
    run = load_run(tmp_path / "run", device="cpu")
    assert next(run.model.parameters()).device.type == "cpu"


def test_smooth_logdet_backward_for_small_matrices_never_waits_on_the_host():
    from probattn.studies.support_tokens.smooth import smooth_logdet

    g = torch.Generator().manual_seed(0)
    M = torch.randn(4096, 8, 8, generator=g, dtype=torch.float64)
    M[:7] = 0.0  # exactly singular ones take the same path
    X = M.clone().to(CUDA).requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        smooth_logdet(X, 0.05).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(X.grad).all()
    Y = M.clone().requires_grad_()
    smooth_logdet(Y, 0.05).sum().backward()
    torch.testing.assert_close(X.grad.cpu(), Y.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("placement", ["embedding", "layers"])
def test_barrier_objective_through_a_compiled_model_equals_eager(placement):
    """The trainer hands the objective the torch.compile wrapper: same loss and gradients."""
    cfg = GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 50, (8, 64), generator=g).to(CUDA)
    y = torch.randint(0, 50, (8, 64), generator=g).to(CUDA)
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = GPT(cfg).to(CUDA)
        runner = torch.compile(model) if compiled else model
        objective = BarrierObjective(model, lam=0.05, placement=placement, sample_sequences=None,
                                     sample_positions=None).to(CUDA)
        loss, _ = objective(runner, x, y)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-5)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
