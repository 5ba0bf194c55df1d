"""Loss terms, named after the paper and the original code (``mergan.py:139-176, 268-323``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GP_WEIGHT = 10.0  # WGAN-GP's lambda, mergan.py:102


def input_gradient(scores: torch.Tensor, x: torch.Tensor, loss_scale: float | None = None) -> torch.Tensor:
    """d(sum of the critic's scores)/dx, kept in the graph so that a penalty on it trains the critic. Under fp16
    loss scaling pass the scaler's current scale: the scores are scaled before differentiation (so small fp16
    gradients do not flush to zero) and the gradient is unscaled again, as PyTorch's AMP recipe for gradient
    penalties does."""
    out = scores.float().sum()
    if loss_scale is not None:
        out = out * loss_scale
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    grad = grad.float()
    return grad / loss_scale if loss_scale is not None else grad


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                     loss_scale: float | None = None) -> torch.Tensor:
    """WGAN-GP penalty mean((||grad_x D(x_hat)||_2 - 1)^2) on per-sample interpolates x_hat.

    ``alpha`` has one U(0,1) value per sample; ``loss_scale`` as in ``input_gradient``.
    """
    alpha = alpha.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x_hat = (real + alpha * (fake - real)).detach().requires_grad_(True)
    out, _ = critic(x_hat)
    grad = input_gradient(out, x_hat, loss_scale)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def wasserstein_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Critic side of the Wasserstein estimate: mean D(fake) - mean D(real)."""
    return d_fake.float().mean() - d_real.float().mean()


def wasserstein_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.float().mean()


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor, loss_scale: float | None = None) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean ||grad_x D(x)||^2 on real images ``real`` (which must require grad and
    have produced ``d_real``). The caller weighs it by gamma / 2; ``loss_scale`` as in ``input_gradient``."""
    return input_gradient(d_real, real, loss_scale).pow(2).flatten(1).sum(1).mean()


class Game:
    """One GAN game: the critic's and the generator's sides on critic scores, and the critic's gradient penalty.

    ``critic_loss`` also takes replays: JTR's old-generator replays play "real" and the new generator's "fake".
    """

    name: str
    penalty_on_real = False      # the penalty differentiates the critic at the real images themselves

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def draw(self, n: int, rng: torch.Generator) -> torch.Tensor | None:
        """Random numbers the penalty needs, drawn from the run's generator (on its device) at every critic step."""
        return None

    def penalty(self, critic, real, fake, d_real, drawn, weight: float, loss_scale=None) -> torch.Tensor:
        """The penalty term, weighted, as added to the critic's loss."""
        raise NotImplementedError


class WassersteinGP(Game):
    """WGAN-GP (Gulrajani et al. 2017), the original's game: mean D(fake) - mean D(real) for the critic,
    -mean D(fake) for the generator, lambda * GP on per-sample interpolates (``mergan.py:149-166``)."""

    name = "wgan-gp"

    def critic_loss(self, d_real, d_fake):
        return wasserstein_critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake):
        return wasserstein_generator_loss(d_fake)

    def draw(self, n, rng):
        return torch.rand(n, generator=rng, device=rng.device)   # the interpolation's alpha, one per sample

    def penalty(self, critic, real, fake, d_real, drawn, weight, loss_scale=None):
        return weight * gradient_penalty(critic, real, fake.float(), drawn.to(real.device), loss_scale)


class NonSaturatingR1(Game):
    """The non-saturating GAN loss (softplus form) with R1 on real images (Mescheder et al. 2018): the critic's
    -log sigmoid D(real) - log(1 - sigmoid D(fake)), the generator's -log sigmoid D(fake), gamma/2 * R1."""

    name = "ns-r1"
    penalty_on_real = True

    def critic_loss(self, d_real, d_fake):
        return F.softplus(-d_real.float()).mean() + F.softplus(d_fake.float()).mean()

    def generator_loss(self, d_fake):
        return F.softplus(-d_fake.float()).mean()

    def penalty(self, critic, real, fake, d_real, drawn, weight, loss_scale=None):
        return 0.5 * weight * r1_penalty(d_real, real, loss_scale)


GAMES: dict[str, Game] = {g.name: g for g in (WassersteinGP(), NonSaturatingR1())}


def game(name: str) -> Game:
    """The game of ``--loss name``; ``ValueError`` naming the choices for any other."""
    if name not in GAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(GAMES)}")
    return GAMES[name]


def aux_classifier_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AC-GAN cross-entropy (lambda_CLS = 1 on both sides, mergan.py:96-98)."""
    return F.cross_entropy(logits.float(), labels)


def replay_alignment(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``tf.nn.l2_loss(old - new)``: half the *sum* (not mean) of squared differences over samples and pixels.

    The strategy multiplies by lambda_RA and, for digits, divides by the number of old classes (paper eq. 13
    with the code's reduction, mergan.py:275-281).
    """
    return 0.5 * (new.float() - old.detach().float()).pow(2).sum()
