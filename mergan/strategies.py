"""The continual-learning strategies, read side by side as the columns of the paper's Table 1, and the registry
``--strategy`` reads (``STRATEGIES``). What a strategy may do, and the ``Context`` it is lent: ``mergan.strategy_base``.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from .batches import to_float
from .config import default_ra_lambda
from .losses import aux_classifier_loss, replay_alignment
from .strategy_base import Context, Replaying, Strategy, replay_batch

__all__ = ["Context", "Strategy", "Replaying", "replay_batch", "JTR", "RA", "JTRRA", "Joint", "EWC", "DGR",
           "STRATEGIES", "strategy_class", "build_strategy"]

log = logging.getLogger("mergan")


class JTR(Replaying):
    """MeRGAN Joint Training with Replay (``mergan.py:285-323``).

    The previous generator's replays of each old class play "real" for the critic (no gradient penalty on
    them) and teach its auxiliary classifier the old labels; the new generator's replays of the same noise
    play "fake" and must be classified as their class. The original's terms are per old class and summed
    (averaged over classes on LSUN); the critic scores every replay in one call, which changes nothing since
    the critic treats each sample on its own.
    """

    name = "jtr"
    title = "MeRGAN-JTR (joint training with replay)"
    short = "MeRGAN-JTR"
    paper_column = "MeRGAN-JTR"
    order = 4
    role = "mergan"
    about = "MeRGAN: the previous generator's images of the old classes are mixed into training as real data"
    color = "#2ca02c"

    def critic_terms(self, ctx):
        t = ctx.task
        if t == 0:
            return None
        z, y = replay_batch(ctx)
        with torch.no_grad(), ctx.autocast():
            old, new = self.old_G(z, y, groups=t), ctx.G_raw(z, y, groups=t)
        d, logits = ctx.D(torch.cat([new, old]))
        d_new, d_old = d.float().chunk(2)
        # The original's per-class means summed over the t classes: t times the mean, the chunks being equal.
        total = t * (ctx.game.critic_loss(d_old, d_new) + aux_classifier_loss(logits[len(y):], y))
        return total if ctx.reduce_replay else total / t

    def generator_terms(self, ctx):
        if ctx.task == 0:
            return None
        z, y = replay_batch(ctx)
        return self.replay_game(ctx, ctx.G(z, y, groups=ctx.task), y)

    @staticmethod
    def replay_game(ctx, new: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The generator's side for its replays ``new`` of old labels ``y``: pass the critic, be classified as y."""
        t = ctx.task
        d_new, logits_new = ctx.D_raw(new)
        total = t * (aux_classifier_loss(logits_new, y) + ctx.game.generator_loss(d_new))
        return total if ctx.reduce_replay else total / t


class RA(Replaying):
    """MeRGAN Replay Alignment (``mergan.py:268-283``, paper eq. 13).

    The new generator must draw, for the same noise and old label, the same pixels as the frozen previous
    one: lambda * sum over old classes of 1/2 ||G_t(z, i) - G_{t-1}(z, i)||^2, divided by t on digits.
    """

    name = "ra"
    title = "MeRGAN-RA (replay alignment)"
    short = "MeRGAN-RA"
    paper_column = "MeRGAN-RA"
    order = 5
    role = "mergan"
    about = "MeRGAN: the new generator must redraw its predecessor's images of the old classes, pixel for pixel"
    color = "#1f77b4"

    def __init__(self, lam: float):
        self.lam = lam

    @classmethod
    def resolve(cls, cfg, preset):
        """lambda_RA: the paper's per dataset, for its batch of 64; the term is a sum over the replays, so its
        balance against the GAN's means is kept per replay (times the preset's scale, rounded to what
        config.json shows)."""
        if cfg.ra_lambda is not None:
            return cfg
        lam = default_ra_lambda(cfg.dataset, cfg.replay_batch or cfg.batch_size) * preset.get("ra_scale", 1.0)
        return dataclasses.replace(cfg, ra_lambda=float(f"{lam:.6g}"))

    @classmethod
    def from_config(cls, cfg):
        return cls(lam=cfg.ra_lambda)

    def generator_terms(self, ctx):
        if ctx.task == 0:
            return None
        z, y = replay_batch(ctx)
        return self.alignment(ctx, z, y, ctx.G(z, y, groups=ctx.task))

    def alignment(self, ctx, z: torch.Tensor, y: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """lambda times the summed 1/2 ||new - old||^2 for the noise z and old labels y (divided by t on digits)."""
        t = ctx.task
        with torch.no_grad(), ctx.autocast():
            old = self.old_G(z, y, groups=t)
        return self.lam * replay_alignment(new, old) / (t if ctx.reduce_replay else 1)


class JTRRA(JTR, RA):
    """Both MeRGAN terms at once, as the original code allows (``--JTR --RA``: G loss = base + L_RA + JTR_G,
    D loss = base + JTR_D, ``mergan.py:325-326``); the paper never combines them.

    The critic learns the old classes from the previous generator's replays as in ``JTR``; the generator's replays
    of the old classes must both pass that critic and redraw the previous generator's pixels for the same noise
    and label, as in ``RA`` (lambda_RA: RA's, a quarter of it in ``quick``). One replay batch serves both generator
    terms.
    """

    name = "jtr-ra"
    title = "MeRGAN-JTR+RA (replay as data and alignment, the original code's combination)"
    short = "MeRGAN-JTR+RA"
    paper_column = None
    order = 6
    role = "mergan"
    about = ("MeRGAN's two terms together: the old classes' images are mixed in as real data and redrawn pixel "
             "for pixel")
    color = "#ff7f0e"

    @classmethod
    def resolve(cls, cfg, preset):
        """RA's lambda_RA (``RA.resolve``) times the preset's share of it for this strategy (``jtr_ra_share``: 1 in
        the paper preset, as the original code; a quarter in ``quick``, measured in the README)."""
        share = preset.get("jtr_ra_share", 1.0)
        return RA.resolve(cfg, {**preset, "ra_scale": preset.get("ra_scale", 1.0) * share})

    def generator_terms(self, ctx):
        if ctx.task == 0:
            return None
        z, y = replay_batch(ctx)
        new = ctx.G(z, y, groups=ctx.task)
        return self.replay_game(ctx, new, y) + self.alignment(ctx, z, y, new)


class Joint(Strategy):
    """Joint training (JT, ``joint.py``): every class at once with true real labels and uniform fake labels;
    the upper bound. Its one task has the summed budget of the sequential tasks."""

    name = "joint"
    title = "Joint training (all classes at once)"
    short = "Joint"
    paper_column = "JT"
    order = 0
    role = "upper bound"
    about = "the ceiling: every class at once, with all the data (not continual learning)"
    color = "#7f7f7f"
    one_task = True

    def task_data(self, data, classes, t):
        return data.labeled(classes), "all classes"

    def real_batch(self, ctx, batch):
        real, real_y = batch
        real_y = real_y.to(ctx.device)
        return to_float(real.to(ctx.device)), real_y

    def fake_labels(self, ctx, n):
        return torch.randint(0, ctx.n_seen, (n,), generator=ctx.rng, device=ctx.rng.device).to(ctx.device)


class EWC(Strategy):
    """Elastic weight consolidation for conditional GANs (Seff et al. 2017; paper eq. 9), lambda_EWC = 1e9.

    After each task the diagonal Fisher information of the generator's parameters is estimated as the mean
    squared gradient of the generator's loss (WGAN + auxiliary classifier) on every class learned so far,
    over ``fisher_batches`` batches per class; later tasks add lambda/2 * sum F (theta - theta*)^2, anchored
    at the parameters that ended the task. The original released no EWC code; this follows the paper's text.
    """

    name = "ewc"
    title = "EWC (elastic weight consolidation)"
    short = "EWC"
    paper_column = "EWC"
    order = 2
    role = "baseline"
    about = "baseline (Seff et al. 2017): a penalty on moving the weights that mattered for the old classes"
    color = "#9467bd"
    fisher_batches = 8

    def __init__(self, lam: float):
        self.lam = lam
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, cfg):
        return cls(lam=cfg.ewc_lambda)

    def penalty(self, G) -> torch.Tensor:
        total = 0.0
        for name, p in G.named_parameters():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p.float() - self.anchor[name]).pow(2)).sum()
        return 0.5 * self.lam * total

    def generator_terms(self, ctx):
        if not self.fisher:
            return None
        return self.penalty(ctx.G_raw)

    def end_task(self, ctx):
        G, D = ctx.G_raw, ctx.D_raw
        params = dict(G.named_parameters())
        fisher = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
        D.requires_grad_(False)
        count = 0
        for label in range(ctx.task + 1):
            for _ in range(self.fisher_batches):
                z, y = ctx.noise(ctx.batch_size), ctx.labels(ctx.batch_size, label)
                with ctx.autocast():
                    d, logits = D(G(z, y))
                    loss = ctx.game.generator_loss(d) + aux_classifier_loss(logits, y)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (k, _), g in zip(params.items(), grads):
                    if g is not None:
                        fisher[k] += g.float().pow(2)
                count += 1
        D.requires_grad_(True)
        self.fisher = {k: ctx.reduce_mean(v / count) for k, v in fisher.items()}  # the same on every process
        self.anchor = {k: p.detach().float().clone() for k, p in params.items()}
        # The Fisher's scale decides what lambda means: lambda * F is the stiffness of each weight.
        for k, f in self.fisher.items():
            log.info("EWC after task %d: Fisher of %s: mean %.3g, max %.3g (lambda x mean %.3g)", ctx.task, k,
                     float(f.mean()), float(f.max()), self.lam * float(f.mean()))

    def state_dict(self):
        return {"fisher": self.fisher, "anchor": self.anchor}

    def grow(self, G, added):   # the new labels' weights carry no information about the old classes: Fisher 0
        from .models import grow_state

        params = {k: p.detach().float() for k, p in G.named_parameters() if k in self.fisher}
        self.fisher = grow_state(self.fisher, {k: torch.zeros_like(p) for k, p in params.items()}, added)
        self.anchor = grow_state(self.anchor, params, added)

    def load_state_dict(self, state):
        self.fisher = dict(state.get("fisher", {}))
        self.anchor = dict(state.get("anchor", {}))

    def to(self, device):
        self.fisher = {k: v.to(device) for k, v in self.fisher.items()}
        self.anchor = {k: v.to(device) for k, v in self.anchor.items()}


class DGR(Replaying):
    """Deep Generative Replay (Shin et al. 2017) as the paper implemented it: an unconditional GAN followed by
    a classifier that labels its images.

    The generator is unconditional (every image gets label 0, so conditional batch norm is plain batch norm,
    and no auxiliary loss on its fakes). The critic's auxiliary-classifier head is the solver: it learns the
    current class from real images and the old classes from the previous generator's replays, labelled by the
    previous solver. Replays fill the share t/(t+1) of every real batch, so each class seen weighs the same.
    Saved per task: generator and solver together (``models.ReplayGenerator``), which draws a class by
    rejection sampling.
    """

    name = "dgr"
    title = "DGR (deep generative replay)"
    short = "DGR"
    paper_column = "DGR"
    order = 3
    role = "baseline"
    about = "baseline (Shin et al. 2017): an unconditional GAN whose replays a classifier labels"
    color = "#8c564b"
    conditional = False
    task_file = "generator+solver"

    def fake_labels(self, ctx, n):
        return torch.zeros(n, dtype=torch.long, device=ctx.device)

    def fake_class_loss(self, logits, y):
        return None  # unconditional: its fakes are not asked to be any class

    def real_batch(self, ctx, batch):
        real, real_y = super().real_batch(ctx, batch)
        t = ctx.task
        if t == 0:
            return real, real_y
        n_old = round(len(real) * t / (t + 1))
        z = ctx.noise(n_old)
        with torch.no_grad(), ctx.autocast():
            replay = self.old_G.generator(z, torch.zeros(n_old, dtype=torch.long, device=ctx.device))
            labels = self.old_G.classify(replay)
        return torch.cat([replay.float(), real[n_old:]]), torch.cat([labels, real_y[n_old:]])

    def deliverable(self, ctx):
        from .models import ReplayGenerator

        cfg = {**ctx.model, "seen": ctx.task + 1}
        module = ReplayGenerator(**{k: cfg[k] for k in ("z_dim", "n_classes", "dim", "channels", "arch")},
                                 seen=ctx.task + 1)
        module.generator.load_state_dict(ctx.G_out.state_dict())
        module.solver.load_state_dict(ctx.D_raw.state_dict())
        return module.to(ctx.device), cfg


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Strategy, JTR, RA, JTRRA, Joint, EWC, DGR)}


def strategy_class(name: str) -> type[Strategy]:
    """The class of ``--strategy name``; ``ValueError`` naming the choices if there is none."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def build_strategy(cfg) -> Strategy:
    """The strategy a ``RunConfig`` names, with its own settings."""
    return strategy_class(cfg.strategy).from_config(cfg)
