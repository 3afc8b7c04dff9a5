"""Reward-model losses. Each takes the head's outputs and returns a scalar to minimise."""
import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged over pairs."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def regression_loss(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every attribute of every response (HelpSteer2 regression RMs)."""
    return F.mse_loss(predicted, targets)
