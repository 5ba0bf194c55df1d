"""Each strategy's terms against the original's formulas, on a hand-made ``Context``."""
import contextlib
import copy

import pytest
import torch

import torch.nn.functional as F

from mergan.losses import aux_classifier_loss, game
from mergan.models import build_critic, build_generator, model_config
from mergan.config import DEFAULTS, RA_LAMBDA, default_ra_lambda
from mergan.batches import to_float
from mergan.strategies import STRATEGIES, Context, replay_batch


class Nets:
    """What a strategy is lent (``Context``): the generator/critic pair, the noise source, and a frozen previous
    generator for the strategies that replay it."""

    def __init__(self, arch="dcgan32", seed=0, loss="wgan-gp"):
        torch.manual_seed(seed)
        self.model = model_config(arch, channels=1 if arch == "dcgan32" else 3, dim=4)
        self.loss = loss
        self.G = build_generator(self.model)
        self.D = build_critic(self.model)
        self.old_G = copy.deepcopy(self.G).requires_grad_(False)
        with torch.no_grad():  # make the new generator differ from the old one
            for p in self.G.parameters():
                p.add_(0.05 * torch.randn_like(p))
        self.batch_size = 64 if arch == "dcgan32" else 8
        self.reduce_replay = arch == "dcgan32"
        self.rng = torch.Generator().manual_seed(123)

    def noise(self, n):
        return torch.randn(n, 128, generator=self.rng)

    def ctx(self, t):
        return Context(task=t, G_raw=self.G, G=self.G, G_out=self.G, D_raw=self.D, D=self.D, noise=self.noise,
                       labels=lambda n, label: torch.full((n,), label, dtype=torch.long),
                       autocast=contextlib.nullcontext, rng=self.rng, device=torch.device("cpu"),
                       batch_size=self.batch_size, reduce_replay=self.reduce_replay, game=game(self.loss),
                       model=self.model, load_generator=lambda i: self.old_G)


def make(name, tr, **settings):
    """A strategy with its own settings only (RA and EWC: lambda), past its first task if it replays."""
    s = STRATEGIES[name](**settings) if settings or name not in ("ra", "jtr-ra", "ewc") else \
        STRATEGIES[name](lam=DEFAULTS["ewc_lambda"] if name == "ewc" else default_ra_lambda("mnist"))
    s.begin_task(tr.ctx(1))   # replaying strategies load the generator of task 0
    return s


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_first_task_is_plain_gan_for_every_strategy(name):
    tr = Nets()
    s = STRATEGIES[name](lam=1.0) if name in ("ra", "jtr-ra", "ewc") else STRATEGIES[name]()
    s.begin_task(tr.ctx(0))
    assert s.critic_terms(tr.ctx(0)) is None and s.generator_terms(tr.ctx(0)) is None


def test_sft_adds_nothing_and_asks_for_the_current_class():
    tr = Nets()
    s = make("sft", tr)
    assert s.critic_terms(tr.ctx(3)) is None and s.generator_terms(tr.ctx(3)) is None
    assert (s.fake_labels(tr.ctx(3), 64) == 3).all()


def replay_sizes(tr, t):
    _, y = replay_batch(tr.ctx(t))
    return torch.bincount(y, minlength=t).tolist()


def per_class_replays(tr, t):
    """The replay batch as the original drew it: one (z, y) per old class, each generated on its own."""
    z, y = replay_batch(tr.ctx(t))
    return [(z[y == i], y[y == i]) for i in range(t)]


def test_replay_sizes_digits_share_one_batch_lsun_full_batches():
    tr = Nets()
    assert replay_sizes(tr, 1) == [64] and replay_sizes(tr, 3) == [21, 21, 21] and replay_sizes(tr, 9) == [7] * 9
    _, y = replay_batch(tr.ctx(3))
    assert y.tolist() == sorted(y.tolist())  # class by class, in consecutive chunks
    tr.reduce_replay, tr.batch_size = False, 64
    assert replay_sizes(tr, 3) == [64, 64, 64]


def test_replay_batch_setting_takes_the_batch_sizes_place():
    """The quick preset's 32 replays per step: shared on digits (8 per class at task 4), per class on LSUN."""
    tr = Nets()
    ctx = tr.ctx(4)
    ctx.replay_batch = 32
    _, y = replay_batch(ctx)
    assert torch.bincount(y).tolist() == [8, 8, 8, 8]
    tr.reduce_replay = False
    ctx = tr.ctx(2)
    ctx.replay_batch = 32
    assert torch.bincount(replay_batch(ctx)[1]).tolist() == [32, 32]


def test_replay_split_overrides_the_datasets_sharing():
    """``--replay-split per-class`` (the quick preset) gives each old digit the full replay batch; ``shared``
    splits it on LSUN too."""
    tr = Nets()
    ctx = tr.ctx(4)
    ctx.replay_batch, ctx.replay_shared = 16, False
    assert torch.bincount(replay_batch(ctx)[1]).tolist() == [16, 16, 16, 16]
    tr.reduce_replay = False
    ctx = tr.ctx(4)
    ctx.replay_batch, ctx.replay_shared = 16, True
    assert torch.bincount(replay_batch(ctx)[1]).tolist() == [4, 4, 4, 4]


class _Shifted(torch.nn.Module):
    """A previous generator that draws the new one's image plus 0.1 everywhere: every replay's RA error is
    1/2 * 0.01 * 1,024 pixels."""

    def __init__(self, G):
        super().__init__()
        self.G = G

    def forward(self, z, y, groups=1):
        return self.G(z, y, groups=groups) + 0.1


@pytest.mark.parametrize("shared", [True, False])
def test_ra_weight_per_old_class_falls_as_1_over_t_squared_only_when_shared(shared):
    """The reason for the quick preset's per-class replays (README, "Why RA lost variety"): with the original's
    shared batch RA's total weight is lambda * 64 / t, each old class's 64 / t^2; per class it stays put."""
    tr = Nets()
    s = make("ra", tr, lam=1.0)
    s.old_G = _Shifted(tr.G)
    per_replay = 0.5 * 0.01 * 32 * 32
    for t in (1, 2, 4, 8):
        ctx = tr.ctx(t)
        ctx.replay_batch, ctx.replay_shared = 64 if shared else 16, shared
        n = 64 // t * t if shared else 16 * t
        got = s.generator_terms(ctx).item()
        assert got == pytest.approx(per_replay * n / t, rel=1e-3)
        assert got == pytest.approx(per_replay * (64 // t if shared else 16), rel=1e-3)


def test_ra_lambdas_as_paper():
    assert RA_LAMBDA["mnist"] == 1e-3 and RA_LAMBDA["svhn"] == 1e-2 and RA_LAMBDA["lsun"] == 1e-3
    assert STRATEGIES["ra"](lam=0.5).lam == 0.5


def _ra_reference(tr, t, lam, divide, seed=7):
    tr.rng.manual_seed(seed)
    total = 0.0
    for z, y in per_class_replays(tr, t):
        total = total + 0.5 * ((tr.G(z, y) - tr.old_G(z, y)) ** 2).sum()
    return lam * total / (t if divide else 1)


@pytest.mark.parametrize("arch", ["dcgan32", "resnet64"])
def test_ra_equals_summed_form(arch):
    tr = Nets(arch)
    s = make("ra", tr)
    t = 3
    expected = _ra_reference(tr, t, s.lam, divide=arch == "dcgan32")
    tr.rng.manual_seed(7)
    got = s.generator_terms(tr.ctx(t))
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()
    assert all(p.grad is None for p in tr.old_G.parameters())
    assert tr.G.fc.weight.grad is not None and tr.G.fc.weight.grad.abs().sum() > 0


def test_ra_zero_when_generators_identical():
    tr = Nets()
    tr.old_G = copy.deepcopy(tr.G).requires_grad_(False)
    s = make("ra", tr)
    assert s.generator_terms(tr.ctx(4)) == 0


def _jtr_critic_reference(tr, t):
    tr.rng.manual_seed(11)
    total = 0.0
    for z, y in per_class_replays(tr, t):
        with torch.no_grad():
            old, new = tr.old_G(z, y), tr.G(z, y)
        d_new, _ = tr.D(new)
        d_old, logits = tr.D(old)
        if tr.loss == "wgan-gp":   # mergan.py:296
            game = d_new.mean() - d_old.mean()
        else:                          # the same roles in the non-saturating game: old replays real, new fake
            game = -F.logsigmoid(d_old).mean() - torch.log1p(-torch.sigmoid(d_new)).mean()
        total = total + game + aux_classifier_loss(logits, y)
    return total if tr.reduce_replay else total / t


@pytest.mark.parametrize("arch, loss", [("dcgan32", "wgan-gp"), ("resnet64", "wgan-gp"), ("dcgan32", "ns-r1")])
def test_jtr_critic_side_old_replays_are_real_with_ac_loss(arch, loss):
    tr = Nets(arch, loss=loss)
    s = make("jtr", tr)
    expected = _jtr_critic_reference(tr, 2)
    tr.rng.manual_seed(11)
    got = s.critic_terms(tr.ctx(2))
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()  # trains the critic only: the generator is not in this graph
    assert all(p.grad is None for p in tr.G.parameters())
    assert tr.D.classifier.weight.grad.abs().sum() > 0


def _jtr_generator_reference(tr, t, seed):
    tr.rng.manual_seed(seed)
    total = 0.0
    for z, y in per_class_replays(tr, t):
        d, logits = tr.D(tr.G(z, y))
        game = -d.mean() if tr.loss == "wgan-gp" else -F.logsigmoid(d).mean()
        total = total + game + aux_classifier_loss(logits, y)
    return total if tr.reduce_replay else total / t


@pytest.mark.parametrize("arch, loss", [("dcgan32", "wgan-gp"), ("resnet64", "wgan-gp"), ("dcgan32", "ns-r1")])
def test_jtr_generator_side_equals_per_class_form(arch, loss):
    tr = Nets(arch, loss=loss)
    s = make("jtr", tr)
    expected = _jtr_generator_reference(tr, 3, seed=5)
    tr.rng.manual_seed(5)
    assert torch.allclose(s.generator_terms(tr.ctx(3)), expected, rtol=1e-5)


@pytest.mark.parametrize("arch", ["dcgan32", "resnet64"])
def test_jtr_ra_is_both_terms_on_the_same_replays(arch):
    """mergan.py:325-326 with --JTR --RA: the critic as JTR's; the generator JTR's term plus RA's, each with its own
    reduction (digits: JTR's per-class terms summed, RA's sum divided by t; LSUN: JTR's averaged over the old
    classes, RA's summed)."""
    tr = Nets(arch, loss="ns-r1")
    s = make("jtr-ra", tr)
    assert s.lam == default_ra_lambda("mnist") and s.info().paper_column is None
    t = 3
    jtr = _jtr_generator_reference(tr, t, seed=5)
    ra = _ra_reference(tr, t, s.lam, divide=tr.reduce_replay, seed=5)   # the same replays as JTR's term
    tr.rng.manual_seed(5)
    got = s.generator_terms(tr.ctx(t))
    assert torch.allclose(got, jtr + ra, rtol=1e-5) and float(ra.detach()) > 0.01 * abs(float(jtr.detach()))
    expected = _jtr_critic_reference(tr, 2)
    tr.rng.manual_seed(11)
    assert torch.allclose(s.critic_terms(tr.ctx(2)), expected, rtol=1e-5)


def test_jtr_generator_side_trains_new_generator_on_old_labels():
    tr = Nets()
    s = make("jtr", tr)
    tr.D.requires_grad_(False)
    loss = s.generator_terms(tr.ctx(3))
    loss.backward()
    assert tr.G.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tr.old_G.parameters())
    # every old label is asked for: the term changes if the class-2 tables change
    tr.rng.manual_seed(0)
    a = float(s.generator_terms(tr.ctx(3)).detach())
    with torch.no_grad():
        tr.G.norms[0].offset[2] += 3.0
    tr.rng.manual_seed(0)
    assert float(s.generator_terms(tr.ctx(3)).detach()) != a


def test_joint_asks_for_every_class_uniformly():
    tr = Nets()
    s = make("joint", tr)
    labels = s.fake_labels(tr.ctx(4), 5000)   # task 4: five classes seen
    counts = torch.bincount(labels, minlength=5)
    assert labels.min() == 0 and labels.max() == 4
    assert (counts > 850).all()


def test_ewc_penalty_zero_at_anchor_positive_away():
    tr = Nets()
    s = make("ewc", tr, lam=1e9)
    s.fisher_batches = 2
    assert s.generator_terms(tr.ctx(0)) is None  # nothing learned yet
    s.end_task(tr.ctx(1))
    assert all((f >= 0).all() for f in s.fisher.values()) and any(f.sum() > 0 for f in s.fisher.values())
    assert s.generator_terms(tr.ctx(2)) == 0
    with torch.no_grad():
        tr.G.fc.weight.add_(0.01)
    expected = 0.5 * 1e9 * (s.fisher["fc.weight"] * 0.01**2).sum()
    assert torch.allclose(s.generator_terms(tr.ctx(2)), expected, rtol=1e-4)
    state = s.state_dict()
    s2 = STRATEGIES["ewc"](lam=1e9)
    s2.load_state_dict(state)
    assert torch.equal(s2.penalty(tr.G), s.penalty(tr.G))


def test_ewc_fisher_is_the_mean_squared_gradient_computed_by_hand():
    """G(z) = w * z[:, 0], D(x) = x with constant class logits, WGAN's generator loss -mean D(G(z)): the gradient
    of a batch is -mean(z[:, 0]). Batches z0 = (1, 3) and (0, 2) give gradients -2 and -1, so F = (4 + 1) / 2."""

    class Line(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, z, y):
            return self.w * z[:, 0]

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x, torch.zeros(len(x), 2)

    G, D = Line(), Identity()
    batches = iter([torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [2.0]])])
    ctx = Context(task=0, G_raw=G, G=G, G_out=G, D_raw=D, D=D, noise=lambda n: next(batches),
                  labels=lambda n, label: torch.full((n,), label, dtype=torch.long),
                  autocast=contextlib.nullcontext, rng=torch.Generator(), device=torch.device("cpu"),
                  batch_size=2, reduce_replay=True, game=game("wgan-gp"), model={}, load_generator=None)
    s = STRATEGIES["ewc"](lam=2.0)
    s.fisher_batches = 2
    s.end_task(ctx)
    assert s.fisher["w"].item() == pytest.approx(2.5)
    assert s.anchor["w"].item() == 0.5
    with torch.no_grad():
        G.w.add_(0.1)
    # lambda / 2 * F * (w - w*)^2 = 1 * 2.5 * 0.01
    assert s.generator_terms(ctx).item() == pytest.approx(0.025)


def _dgr_trainer():
    from mergan.models import ReplayGenerator

    tr = Nets()
    old = ReplayGenerator(dim=4, seen=2)
    old.generator.load_state_dict(tr.old_G.state_dict())
    old.solver.load_state_dict(tr.D.state_dict())
    tr.old_G = old.requires_grad_(False)
    return tr


def test_dgr_unconditional_generator_and_replayed_real_share():
    tr = _dgr_trainer()
    s = make("dgr", tr)
    assert s.fake_class_loss(torch.zeros(64, 10), torch.zeros(64, dtype=torch.long)) is None   # unconditional
    assert (s.fake_labels(tr.ctx(2), 64) == 0).all()
    batch = torch.full((64, 1, 32, 32), 200, dtype=torch.uint8)
    real = to_float(batch.clone())
    r0, y0 = s.real_batch(tr.ctx(0), batch)
    assert torch.equal(r0, real) and (y0 == 0).all()
    r, labels = s.real_batch(tr.ctx(2), batch)
    n_old = round(64 * 2 / 3)
    assert r.shape == real.shape and torch.equal(r[n_old:], real[n_old:]) and (r[:n_old] != real[:n_old]).any()
    assert (labels[n_old:] == 2).all() and labels[:n_old].max() < 2  # old solver labels old classes only


def test_dgr_deliverable_draws_classes_by_rejection_and_round_trips(tmp_path):
    from mergan import load_generator, sample
    from mergan.checkpoints import save_generator

    tr = _dgr_trainer()

    s = make("dgr", tr)
    module, cfg = s.deliverable(tr.ctx(1))
    assert cfg["seen"] == 2 and s.task_file == "generator+solver"
    z = torch.randn(64, 128)
    for label in (0, 1):
        x = module(z, torch.full((64,), label))
        hits = (module.classify(x) == label).float().mean()
        plain = (module.classify(module.generator(z, torch.zeros(64, dtype=torch.long))) == label).float().mean()
        assert hits >= plain  # rejection never makes it worse
    from helpers import task_meta

    save_generator(tmp_path / "g.safetensors", module, task_meta(cfg, task=1, classes="01", strategy="dgr"))
    G, m = load_generator(tmp_path / "g.safetensors")
    assert m.deliverable == "generator+solver" and m.model["seen"] == 2 and not m.strategy.conditional
    assert torch.equal(sample(G, [0, 1, 1], seed=3), sample(module, [0, 1, 1], seed=3))


def test_default_ra_lambda_keeps_the_papers_balance_at_another_batch():
    assert default_ra_lambda("mnist") == 1e-3 and default_ra_lambda("svhn") == 1e-2
    assert default_ra_lambda("mnist", 32) == pytest.approx(2e-3)
    # the summed RA term over a batch of 32, times the scaled lambda, weighs what it weighs at 64
    tr = Nets()
    s = make("ra", tr, lam=default_ra_lambda("mnist", 32))
    tr.batch_size = 32
    small = s.generator_terms(tr.ctx(2))
    tr.batch_size, s.lam = 64, default_ra_lambda("mnist")
    big = s.generator_terms(tr.ctx(2))
    assert torch.allclose(small, big, rtol=0.2)
