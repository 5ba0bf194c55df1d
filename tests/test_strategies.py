"""Each strategy's terms against the original's formulas, on a stand-in for the trainer."""
import contextlib
import copy
from types import SimpleNamespace

import pytest
import torch

import torch.nn.functional as F

from mergan.losses import aux_classifier_loss
from mergan.models import build_critic, build_generator, model_config
from mergan.strategies import RA_LAMBDA, STRATEGIES, replay_batch


class FakeTrainer:
    """What a strategy may touch: the generator/critic pair, the frozen old generator and the noise source."""

    def __init__(self, arch="dcgan32", seed=0, loss="wgan-gp"):
        torch.manual_seed(seed)
        cfg = model_config(arch, channels=1 if arch == "dcgan32" else 3, dim=4)
        self.cfg = SimpleNamespace(loss=loss, model=cfg)
        self.G = self.G_raw = self.G_out = build_generator(cfg)
        self.D = self.D_raw = build_critic(cfg)
        self.old_G = copy.deepcopy(self.G).requires_grad_(False)
        with torch.no_grad():  # make the new generator differ from the old one
            for p in self.G.parameters():
                p.add_(0.05 * torch.randn_like(p))
        self.batch_size = 64 if arch == "dcgan32" else 8
        self.reduce_replay = arch == "dcgan32"
        self.device = torch.device("cpu")
        self.rng = torch.Generator().manual_seed(123)
        self.n_seen = 3

    def noise(self, n):
        return torch.randn(n, 128, generator=self.rng)

    def labels(self, n, label):
        return torch.full((n,), label, dtype=torch.long)

    def autocast(self):
        return contextlib.nullcontext()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_first_task_is_plain_gan_for_every_strategy(name):
    tr, s = FakeTrainer(), STRATEGIES[name]("mnist")
    if name in ("sft", "ra", "jtr"):
        assert s.critic_terms(tr, 0) is None and s.generator_terms(tr, 0) is None


def test_sft_adds_nothing_and_asks_for_the_current_class():
    tr, s = FakeTrainer(), STRATEGIES["sft"]("mnist")
    assert s.critic_terms(tr, 3) is None and s.generator_terms(tr, 3) is None
    assert (s.fake_labels(tr, 3, 64) == 3).all()


def replay_sizes(tr, t):
    _, y = replay_batch(tr, t)
    return torch.bincount(y, minlength=t).tolist()


def per_class_replays(tr, t):
    """The replay batch as the original drew it: one (z, y) per old class, each generated on its own."""
    z, y = replay_batch(tr, t)
    return [(z[y == i], y[y == i]) for i in range(t)]


def test_replay_sizes_digits_share_one_batch_lsun_full_batches():
    tr = FakeTrainer()
    assert replay_sizes(tr, 1) == [64] and replay_sizes(tr, 3) == [21, 21, 21] and replay_sizes(tr, 9) == [7] * 9
    _, y = replay_batch(tr, 3)
    assert y.tolist() == sorted(y.tolist())  # class by class, in consecutive chunks
    tr.reduce_replay, tr.batch_size = False, 64
    assert replay_sizes(tr, 3) == [64, 64, 64]


def test_ra_lambdas_as_paper():
    assert RA_LAMBDA["mnist"] == 1e-3 and RA_LAMBDA["svhn"] == 1e-2 and RA_LAMBDA["lsun"] == 1e-3
    assert STRATEGIES["ra"]("svhn").lam == 1e-2 and STRATEGIES["ra"]("mnist", ra_lambda=0.5).lam == 0.5


def _ra_reference(tr, t, lam, divide):
    tr.rng.manual_seed(7)
    total = 0.0
    for z, y in per_class_replays(tr, t):
        total = total + 0.5 * ((tr.G(z, y) - tr.old_G(z, y)) ** 2).sum()
    return lam * total / (t if divide else 1)


@pytest.mark.parametrize("arch", ["dcgan32", "resnet64"])
def test_ra_equals_summed_form(arch):
    tr, s = FakeTrainer(arch), STRATEGIES["ra"]("mnist")
    t = 3
    expected = _ra_reference(tr, t, s.lam, divide=arch == "dcgan32")
    tr.rng.manual_seed(7)
    got = s.generator_terms(tr, t)
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()
    assert all(p.grad is None for p in tr.old_G.parameters())
    assert tr.G.fc.weight.grad is not None and tr.G.fc.weight.grad.abs().sum() > 0


def test_ra_zero_when_generators_identical():
    tr, s = FakeTrainer(), STRATEGIES["ra"]("mnist")
    tr.old_G = copy.deepcopy(tr.G).requires_grad_(False)
    assert s.generator_terms(tr, 4) == 0


def _jtr_critic_reference(tr, t):
    tr.rng.manual_seed(11)
    total = 0.0
    for z, y in per_class_replays(tr, t):
        with torch.no_grad():
            old, new = tr.old_G(z, y), tr.G(z, y)
        d_new, _ = tr.D(new)
        d_old, logits = tr.D(old)
        if tr.cfg.loss == "wgan-gp":   # mergan.py:296
            game = d_new.mean() - d_old.mean()
        else:                          # the same roles in the non-saturating game: old replays real, new fake
            game = -F.logsigmoid(d_old).mean() - torch.log1p(-torch.sigmoid(d_new)).mean()
        total = total + game + aux_classifier_loss(logits, y)
    return total if tr.reduce_replay else total / t


@pytest.mark.parametrize("arch, loss", [("dcgan32", "wgan-gp"), ("resnet64", "wgan-gp"), ("dcgan32", "ns-r1")])
def test_jtr_critic_side_old_replays_are_real_with_ac_loss(arch, loss):
    tr, s = FakeTrainer(arch, loss=loss), STRATEGIES["jtr"]("mnist")
    expected = _jtr_critic_reference(tr, 2)
    tr.rng.manual_seed(11)
    got = s.critic_terms(tr, 2)
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()  # trains the critic only: the generator is not in this graph
    assert all(p.grad is None for p in tr.G.parameters())
    assert tr.D.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch, loss", [("dcgan32", "wgan-gp"), ("resnet64", "wgan-gp"), ("dcgan32", "ns-r1")])
def test_jtr_generator_side_equals_per_class_form(arch, loss):
    tr, s = FakeTrainer(arch, loss=loss), STRATEGIES["jtr"]("mnist")
    t = 3
    tr.rng.manual_seed(5)
    expected = 0.0
    for z, y in per_class_replays(tr, t):
        d, logits = tr.D(tr.G(z, y))
        game = -d.mean() if loss == "wgan-gp" else -F.logsigmoid(d).mean()
        expected = expected + game + aux_classifier_loss(logits, y)
    expected = expected if tr.reduce_replay else expected / t
    tr.rng.manual_seed(5)
    assert torch.allclose(s.generator_terms(tr, t), expected, rtol=1e-5)


def test_jtr_generator_side_trains_new_generator_on_old_labels():
    tr, s = FakeTrainer(), STRATEGIES["jtr"]("mnist")
    tr.D.requires_grad_(False)
    loss = s.generator_terms(tr, 3)
    loss.backward()
    assert tr.G.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tr.old_G.parameters())
    # every old label is asked for: the term changes if the class-2 tables change
    tr.rng.manual_seed(0)
    a = float(s.generator_terms(tr, 3).detach())
    with torch.no_grad():
        tr.G.norms[0].offset[2] += 3.0
    tr.rng.manual_seed(0)
    assert float(s.generator_terms(tr, 3).detach()) != a


def test_joint_asks_for_every_class_uniformly():
    tr, s = FakeTrainer(), STRATEGIES["joint"]("mnist")
    tr.n_seen = 5
    labels = s.fake_labels(tr, 4, 5000)
    counts = torch.bincount(labels, minlength=5)
    assert labels.min() == 0 and labels.max() == 4
    assert (counts > 850).all()


def test_ewc_penalty_zero_at_anchor_positive_away():
    tr, s = FakeTrainer(), STRATEGIES["ewc"]("mnist", ewc_lambda=1e9)
    s.fisher_batches = 2
    assert s.generator_terms(tr, 0) is None  # nothing learned yet
    s.end_task(tr, 1)
    assert all((f >= 0).all() for f in s.fisher.values()) and any(f.sum() > 0 for f in s.fisher.values())
    assert s.generator_terms(tr, 2) == 0
    with torch.no_grad():
        tr.G.fc.weight.add_(0.01)
    expected = 0.5 * 1e9 * (s.fisher["fc.weight"] * 0.01**2).sum()
    assert torch.allclose(s.generator_terms(tr, 2), expected, rtol=1e-4)
    state = s.state_dict()
    s2 = STRATEGIES["ewc"]("mnist")
    s2.load_state_dict(state)
    assert torch.equal(s2.penalty(tr.G), s.penalty(tr.G))


def _dgr_trainer():
    from mergan.models import ReplayGenerator

    tr = FakeTrainer()
    old = ReplayGenerator(dim=4, seen=2)
    old.generator.load_state_dict(tr.old_G.state_dict())
    old.solver.load_state_dict(tr.D.state_dict())
    tr.old_G = old.requires_grad_(False)
    return tr


def test_dgr_unconditional_generator_and_replayed_real_share():
    tr, s = _dgr_trainer(), STRATEGIES["dgr"]("mnist")
    assert not s.conditional and (s.fake_labels(tr, 2, 64) == 0).all()
    real, y = torch.zeros(64, 1, 32, 32), torch.full((64,), 2)
    r0, y0 = s.real_batch(tr, 0, real, y)
    assert r0 is real and y0 is y
    r, labels = s.real_batch(tr, 2, real, y)
    n_old = round(64 * 2 / 3)
    assert r.shape == real.shape and (r[n_old:] == 0).all() and (r[:n_old] != 0).any()
    assert (labels[n_old:] == 2).all() and labels[:n_old].max() < 2  # old solver labels old classes only


def test_dgr_deliverable_draws_classes_by_rejection_and_round_trips(tmp_path):
    from mergan import load_generator, sample
    from mergan.checkpoints import save_generator

    tr, s = _dgr_trainer(), STRATEGIES["dgr"]("mnist")
    tr.cfg = type("C", (), {"model": model_config("dcgan32", channels=1, dim=4)})()
    module, cfg = s.deliverable(tr, 1)
    assert cfg["replay"] == "dgr" and cfg["seen"] == 2
    z = torch.randn(64, 128)
    for label in (0, 1):
        x = module(z, torch.full((64,), label))
        hits = (module.classify(x) == label).float().mean()
        plain = (module.classify(module.generator(z, torch.zeros(64, dtype=torch.long))) == label).float().mean()
        assert hits >= plain  # rejection never makes it worse
    meta = {"strategy": "dgr", "task": 1, "classes": ["0", "1"], "dataset": "mnist", "data_source": "x",
            "model": cfg, "iters": 1}
    save_generator(tmp_path / "g.safetensors", module, meta)
    G, m = load_generator(tmp_path / "g.safetensors")
    assert m["model"]["replay"] == "dgr"
    assert torch.equal(sample(G, [0, 1, 1], seed=3), sample(module, [0, 1, 1], seed=3))


def test_default_ra_lambda_keeps_the_papers_balance_at_another_batch():
    from mergan.strategies import default_ra_lambda
    assert default_ra_lambda("mnist") == 1e-3 and default_ra_lambda("svhn") == 1e-2
    assert default_ra_lambda("mnist", 32) == pytest.approx(2e-3)
    # the summed RA term over a batch of 32, times the scaled lambda, weighs what it weighs at 64
    tr, s = FakeTrainer(), STRATEGIES["ra"]("mnist", ra_lambda=default_ra_lambda("mnist", 32))
    tr.batch_size = 32
    small = s.generator_terms(tr, 2)
    tr.batch_size, s.lam = 64, default_ra_lambda("mnist")
    big = s.generator_terms(tr, 2)
    assert torch.allclose(small, big, rtol=0.2)
