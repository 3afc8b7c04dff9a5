"""Reward-model losses. Each takes the head's outputs and returns a scalar to minimise."""
import torch
import torch.nn.functional as F

BT_VARIANTS = ("plain", "margin", "scaled")


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margins: torch.Tensor | None = None, variant: str = "plain",
                       centering: float = 0.0) -> torch.Tensor:
    """Bradley-Terry over pairs, averaged; `margins` m are the pairs' |preference strength|.

    plain:  -log sigmoid(r_c - r_r)
    margin: -log sigmoid(r_c - r_r - m)
    scaled: -m log sigmoid(r_c - r_r)   (the best BT variant of the HelpSteer2-Preference paper)
    centering c adds c x mean((r_c + r_r)^2), which keeps rewards near zero.
    """
    difference = chosen_rewards - rejected_rewards
    if variant == "plain":
        loss = -F.logsigmoid(difference).mean()
    elif variant == "margin":
        loss = -F.logsigmoid(difference - margins).mean()
    elif variant == "scaled":
        loss = -(margins * F.logsigmoid(difference)).mean()
    else:
        raise ValueError(f"unknown Bradley-Terry variant {variant!r} (known: {', '.join(BT_VARIANTS)})")
    if centering:
        loss = loss + centering * ((chosen_rewards + rejected_rewards) ** 2).mean()
    return loss


def regression_loss(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every attribute of every response (HelpSteer2 regression RMs)."""
    return F.mse_loss(predicted, targets)
