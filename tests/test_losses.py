import math

import numpy as np
import pytest
import torch

from rmsweep.model import heads, losses

CHOSEN, REJECTED = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
MARGINS = torch.tensor([1.0, 2.0, 3.0])


def _log1p_exp(x):
    return math.log(1 + math.exp(x))  # -log sigmoid(-x)


def test_bradley_terry_loss_matches_hand_computation():
    expected = np.mean([_log1p_exp(-1), _log1p_exp(0), _log1p_exp(2)])
    assert losses.bradley_terry_loss(CHOSEN, REJECTED).item() == pytest.approx(expected, rel=1e-6)


def test_margin_bradley_terry_subtracts_the_margin_inside_the_sigmoid():
    expected = np.mean([_log1p_exp(-(1 - 1)), _log1p_exp(-(0 - 2)), _log1p_exp(-(-2 - 3))])
    assert losses.bradley_terry_loss(CHOSEN, REJECTED, MARGINS, "margin").item() == pytest.approx(expected, rel=1e-6)


def test_scaled_bradley_terry_weights_each_pair_by_its_margin():
    expected = np.mean([1 * _log1p_exp(-1), 2 * _log1p_exp(0), 3 * _log1p_exp(2)])
    assert losses.bradley_terry_loss(CHOSEN, REJECTED, MARGINS, "scaled").item() == pytest.approx(expected, rel=1e-6)


def test_reward_centering_adds_the_mean_squared_sum():
    plain = losses.bradley_terry_loss(CHOSEN, REJECTED).item()
    centered = losses.bradley_terry_loss(CHOSEN, REJECTED, centering=0.01).item()
    assert centered - plain == pytest.approx(0.01 * np.mean([1.0, 0.0, 0.0]), rel=1e-5)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown Bradley-Terry variant"):
        losses.bradley_terry_loss(CHOSEN, REJECTED, MARGINS, "hinge")


def test_regression_loss_matches_hand_computation():
    predicted = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 2.0, 3.0, 4.0, 2.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    assert losses.regression_loss(predicted, targets).item() == pytest.approx((4 + 1) / 10)


@pytest.mark.parametrize("shape, mean", [(1.0, 1.0), (1.5, 0.3), (3.0, 2.0), (8.0, 0.05)])
def test_weibull_gamma_kl_matches_a_monte_carlo_estimate(shape, mean):
    shape_t, mean_t = torch.tensor(shape, dtype=torch.float64), torch.tensor(mean, dtype=torch.float64)
    posterior = torch.distributions.Weibull(heads.weibull_scale(shape_t, mean_t), shape_t)
    prior = torch.distributions.Gamma(torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    torch.manual_seed(0)
    samples = posterior.sample((400_000,))
    log_ratio = posterior.log_prob(samples) - prior.log_prob(samples)
    standard_error = log_ratio.std().item() / math.sqrt(len(samples))
    closed_form = heads.weibull_gamma_kl(shape_t, mean_t).item()
    assert closed_form == pytest.approx(log_ratio.mean().item(), abs=5 * standard_error + 1e-4)


def test_reparameterised_weibull_draws_have_the_posterior_mean_and_carry_gradients():
    torch.manual_seed(0)
    shape = torch.full((200_000,), 2.5, requires_grad=True)
    mean = torch.full((200_000,), 0.7, requires_grad=True)
    draws = heads.sample_weibull(shape, mean)
    assert draws.min() >= 0
    assert draws.mean().item() == pytest.approx(0.7, rel=0.01)
    draws.sum().backward()
    assert mean.grad.abs().sum() > 0 and shape.grad.abs().sum() > 0


def test_bnrm_head_samples_in_training_and_uses_the_posterior_mean_in_evaluation():
    torch.manual_seed(0)
    head = heads.BNRMHead(hidden_size=8, factors=16)
    hidden = torch.randn(4, 8)
    head.train()
    assert not torch.equal(head(hidden), head(hidden))  # a fresh draw each pass
    assert head.kl.item() > 0
    head.eval()
    first = head(hidden)
    assert torch.equal(first, head(hidden))
    mean = torch.relu(head.factor_mean(hidden)) + heads.EPSILON
    loadings = torch.relu(head.loading_mean) + heads.EPSILON
    expected = mean @ loadings + torch.nn.functional.softplus(head.bias)
    torch.testing.assert_close(first[:, 0], expected)
    assert (first >= 0).all()  # non-negative factors, loadings and bias
