"""BNRM, the Bayesian non-negative reward head (arXiv 2602.10623): reward = theta^T Phi + bias, all >= 0.

From the last token's hidden state h, instance factors theta (K of them) get a Weibull posterior with shape
k = softplus(W_k h) + 1 and mean z = ReLU(W_z h), i.e. scale lambda = z / Gamma(1 + 1/k); the global loadings
Phi (K x 1) get a Weibull posterior over ReLU'd weights the same way. Priors are Gamma(1, 1). Training draws
theta and Phi by reparameterisation, theta = lambda (-log(1 - u))^(1/k); evaluation uses the posterior means
(z, by construction). The loss adds KL_WEIGHT x the closed-form KL(Weibull || Gamma) to Bradley-Terry.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

FACTORS = 1024
KL_WEIGHT = 1e-5
EULER_GAMMA = 0.5772156649015329
EPSILON = 1e-6  # keeps the Weibull scale, and log of it, finite where ReLU gives 0


def weibull_scale(shape: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """lambda such that Weibull(shape, lambda) has the given mean."""
    return mean / torch.exp(torch.lgamma(1 + 1 / shape))


def sample_weibull(shape: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """A reparameterised draw: gradients flow to shape and mean."""
    uniform = torch.rand_like(mean).clamp(EPSILON, 1 - EPSILON)
    return weibull_scale(shape, mean) * (-torch.log1p(-uniform)) ** (1 / shape)


def weibull_gamma_kl(shape: torch.Tensor, mean: torch.Tensor, alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """KL(Weibull(shape, lambda) || Gamma(alpha, beta)), elementwise, in closed form:
    gamma alpha / k - alpha log lambda + log k + beta lambda Gamma(1 + 1/k) - gamma - 1
    - alpha log beta + log Gamma(alpha), gamma being the Euler-Mascheroni constant.
    """
    scale = weibull_scale(shape, mean)
    return (EULER_GAMMA * alpha / shape - alpha * torch.log(scale) + torch.log(shape)
            + beta * scale * torch.exp(torch.lgamma(1 + 1 / shape)) - EULER_GAMMA - 1
            - alpha * math.log(beta) + math.lgamma(alpha))


class BNRMHead(nn.Module):
    """Drop-in for a sequence-classification model's `score` layer: (batch, hidden) -> (batch, 1) rewards.

    After each forward pass `kl` holds that pass's KL term: the mean over the batch of theta's KL summed over
    factors, plus Phi's KL summed over factors.
    """

    def __init__(self, hidden_size: int, factors: int = FACTORS):
        super().__init__()
        self.factor_shape = nn.Linear(hidden_size, factors)
        self.factor_mean = nn.Linear(hidden_size, factors)
        self.loading_shape = nn.Parameter(torch.zeros(factors))
        # Positive to start with, so that ReLU passes gradients to every loading.
        self.loading_mean = nn.Parameter(torch.full((factors,), 1 / math.sqrt(factors)))
        self.bias = nn.Parameter(torch.zeros(1))
        self.kl = torch.zeros(())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.to(self.factor_mean.weight.dtype)
        shape = F.softplus(self.factor_shape(hidden)) + 1
        mean = F.relu(self.factor_mean(hidden)) + EPSILON
        loading_shape = F.softplus(self.loading_shape) + 1
        loading_mean = F.relu(self.loading_mean) + EPSILON
        self.kl = (weibull_gamma_kl(shape, mean).sum(-1).mean()
                   + weibull_gamma_kl(loading_shape, loading_mean).sum())
        if self.training:
            factors, loadings = sample_weibull(shape, mean), sample_weibull(loading_shape, loading_mean)
        else:
            factors, loadings = mean, loading_mean
        return (factors @ loadings + F.softplus(self.bias))[:, None]
