"""Loss terms against their closed forms."""
import pytest
import torch

from mergan.losses import (aux_classifier_loss, gradient_penalty, replay_alignment, wasserstein_critic_loss,
                           wasserstein_generator_loss)


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1), torch.zeros(len(x), 10)


def test_gradient_penalty_of_linear_critic():
    w = torch.randn(1, 4, 4)
    D = LinearCritic(w)
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    gp = gradient_penalty(D, real, fake, torch.rand(5))
    assert torch.allclose(gp, (w.norm() - 1) ** 2, rtol=1e-5)


def test_gradient_penalty_zero_for_unit_norm_and_scale_invariant():
    w = torch.randn(1, 4, 4)
    D = LinearCritic(w / w.norm())
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    assert gradient_penalty(D, real, fake, torch.rand(3)) < 1e-10
    D2 = LinearCritic(3 * w)
    alpha = torch.rand(3)
    assert torch.allclose(gradient_penalty(D2, real, fake, alpha),
                          gradient_penalty(D2, real, fake, alpha, loss_scale=65536.0), rtol=1e-5)


def test_gradient_penalty_is_differentiable_in_critic_parameters():
    D = LinearCritic(torch.randn(1, 2, 2))
    gp = gradient_penalty(D, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2), torch.rand(2))
    gp.backward()
    w = D.w.detach()
    assert torch.allclose(D.w.grad, 2 * (w.norm() - 1) * w / w.norm(), rtol=1e-4)


def test_wasserstein_terms():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert wasserstein_critic_loss(real, fake) == -1.0 - 2.0
    assert wasserstein_generator_loss(fake) == 1.0


def test_aux_loss_is_cross_entropy():
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert aux_classifier_loss(logits, torch.tensor([0, 1])) < 1e-3
    assert aux_classifier_loss(logits, torch.tensor([1, 0])) > 9


def test_replay_alignment_is_half_summed_squared_error():
    a = torch.randn(4, 1, 8, 8)
    assert replay_alignment(a, a.clone()) == 0
    b = torch.randn(4, 1, 8, 8)
    assert torch.allclose(replay_alignment(a, b), 0.5 * ((a - b) ** 2).sum())
    # a sum, not a mean: doubling the batch doubles the term
    assert torch.allclose(replay_alignment(torch.cat([a, a]), torch.cat([b, b])), 2 * replay_alignment(a, b))


def test_replay_alignment_gradient_flows_only_to_new():
    new = torch.randn(2, 3, requires_grad=True)
    old = torch.randn(2, 3, requires_grad=True)
    replay_alignment(new, old).backward()
    assert torch.allclose(new.grad, new.detach() - old.detach())
    assert old.grad is None


def test_non_saturating_losses_are_the_logistic_game():
    from mergan.losses import game

    d_real, d_fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected_d = -torch.log(torch.sigmoid(d_real)).mean() - torch.log(1 - torch.sigmoid(d_fake)).mean()
    assert torch.allclose(game("ns-r1").critic_loss(d_real, d_fake), expected_d)
    assert torch.allclose(game("ns-r1").generator_loss(d_fake), -torch.log(torch.sigmoid(d_fake)).mean())
    # the original's game is unchanged
    assert torch.allclose(game("wgan-gp").critic_loss(d_real, d_fake), d_fake.mean() - d_real.mean())
    assert torch.allclose(game("wgan-gp").generator_loss(d_fake), -d_fake.mean())


def test_an_unknown_game_is_refused_and_every_game_is_a_setting():
    from mergan.config import LOSSES
    from mergan.losses import GAMES, game

    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose one of wgan-gp, ns-r1"):
        game("hinge")
    assert tuple(GAMES) == LOSSES


def test_r1_of_a_linear_critic_is_the_squared_weight_norm():
    from mergan.losses import r1_penalty

    w = torch.randn(1, 3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    d = (x * w).flatten(1).sum(1)      # D(x) = <w, x>: the gradient is w for every sample
    assert torch.allclose(r1_penalty(d, x), w.pow(2).sum())
