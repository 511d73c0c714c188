import math

import pytest
import torch

from hgrnn.losses import sigmoid_focal_loss


def direct_focal(logits, targets, gamma, alpha):
    """The textbook formula, one pair at a time, in float64."""
    total = 0.0
    for x, y in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1.0 / (1.0 + math.exp(-x))
        p_t = p if y == 1 else 1 - p
        a_t = 1.0 if alpha is None else (alpha if y == 1 else 1 - alpha)
        total += -a_t * (1 - p_t) ** gamma * math.log(p_t)
    return total / logits.numel()


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (2.0, 0.25), (0.0, None), (1.5, 0.75)])
def test_matches_direct_formula(gamma, alpha):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64) * 4
    targets = (torch.rand(7, 5, generator=g) < 0.3).double()
    got = sigmoid_focal_loss(logits, targets, gamma=gamma, alpha=alpha).item()
    assert got == pytest.approx(direct_focal(logits, targets, gamma, alpha), rel=1e-10)


def test_gamma_zero_is_bce():
    logits = torch.tensor([[-3.0, 0.5], [2.0, 10.0]])
    targets = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert sigmoid_focal_loss(logits, targets, gamma=0.0).item() == pytest.approx(bce.item())


def test_focal_down_weights_easy_examples():
    easy = sigmoid_focal_loss(torch.tensor([[5.0]]), torch.tensor([[1.0]])).item()
    hard = sigmoid_focal_loss(torch.tensor([[-5.0]]), torch.tensor([[1.0]])).item()
    assert easy < 1e-4 < 1.0 < hard


def test_stable_for_extreme_logits():
    logits = torch.tensor([[-200.0, 200.0, -200.0, 200.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    loss = sigmoid_focal_loss(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # two confidently wrong pairs cost |x| each, the right ones 0: mean = 400 / 4
    assert loss.item() == pytest.approx(100.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(3, 2))
