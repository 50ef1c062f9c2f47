"""The CPU-fast building blocks of msabench_builtins.nn against torch's own."""

import pytest
import torch

from msabench_builtins.nn import FastDropout, fused_adam


def test_fast_dropout_keeps_1_minus_p_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    drop = FastDropout(0.3).train()
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 400k draws: sd ~0.0007
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    # the same expectation as nn.Dropout: E[y] = x
    assert abs(y.mean().item() - 1.0) < 0.01


def test_fast_dropout_is_identity_in_eval_and_at_p0_and_passes_gradients():
    x = torch.randn(8, 5, requires_grad=True)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    torch.manual_seed(1)
    y = FastDropout(0.5).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2.0)  # gradient 1/(1-p) where kept, else 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FastDropout(1.0)


def test_fused_adam_matches_the_default_adam():
    torch.manual_seed(0)
    a = torch.nn.Linear(50, 7)
    b = torch.nn.Linear(50, 7)
    b.load_state_dict(a.state_dict())
    start = a.weight.detach().clone()
    opt_a = fused_adam(a.parameters(), lr=1e-2, weight_decay=1e-3)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-3, foreach=False)
    assert opt_a.defaults.get("fused") is True  # torch 2.13 has the fused CPU kernel
    x, t = torch.randn(64, 50), torch.randn(64, 7)
    for _ in range(20):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), t).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5, rtol=1e-4)
    assert (a.weight - start).abs().max() > 0.05  # 20 steps at lr 1e-2 moved the weights
