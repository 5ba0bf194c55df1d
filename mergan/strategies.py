"""Continual-learning strategies: small plug-ins to the one GAN + AC-GAN loop of ``mergan.trainer``.

The loop owns the game on the current task. A strategy may only
- choose the labels the generator is asked for (``fake_labels``) and what the critic sees as real
  (``real_batch``),
- add terms to the critic's loss (``critic_terms``) and to the generator's (``generator_terms``),
- act at task boundaries (``begin_task``, ``end_task``) and carry tensors in the resumable state,
- plan the tasks (``plan``, ``task_data``) and choose what is saved per task (``deliverable``).

Every hook gets a ``Context``: what the loop lends a strategy for one task, and nothing else (a strategy never
sees the trainer). Read side by side the strategies are the columns of the paper's Table 1. ``ctx.task`` is the
index of the current task, which is also the number of classes already learned; old class i is conditioning
label i.

Replays are regenerated at every step from fresh noise; nothing is stored (how many: ``replay_batch``).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

import torch

from .batches import to_float
from .config import default_ra_lambda
from .losses import Game, aux_classifier_loss, replay_alignment
from .records import StrategyInfo

log = logging.getLogger("mergan")


@dataclass
class Context:
    """What the loop lends a strategy during one task.

    Two views of each network. The *raw* modules (``G_raw``, ``D_raw``) own the parameters: read or copy them,
    and run the critic through ``D_raw`` in the generator's step, where it is frozen. The *prepared* ones
    (``G``, ``D``; wrapped for several processes by the Accelerator) are the ones whose forward passes train:
    a generator output that must send gradients to the generator goes through ``G``, a critic output whose
    gradients train the critic goes through ``D``. ``G_out`` is the generator that is delivered and replayed
    (the weight average if there is one, else ``G_raw``).
    """

    task: int                                   # t: the index of the current task, the classes already learned
    G_raw: torch.nn.Module
    G: torch.nn.Module
    G_out: torch.nn.Module
    D_raw: torch.nn.Module
    D: torch.nn.Module
    noise: Callable[[int], torch.Tensor]        # n noise vectors from the run's generator of random numbers
    labels: Callable[[int, int], torch.Tensor]  # labels(n, label): n copies of a conditioning label
    autocast: Callable                          # the mixed-precision context of forward passes
    rng: torch.Generator                        # the run's generator of random numbers (its state is saved)
    device: torch.device
    batch_size: int
    reduce_replay: bool                         # digits: the old classes share one replay batch
    game: Game                                  # the GAN game's two sides (``mergan.losses``)
    model: dict                                 # the generator's constructor arguments
    load_generator: Callable[[int], torch.nn.Module]  # the generator saved after task i, frozen
    reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda x: x  # the mean over processes
    replay_batch: int | None = None             # replays per step (digits: shared; None: the batch size)
    replay_shared: bool | None = None           # the old classes share replay_batch (None: as reduce_replay)

    @property
    def n_seen(self) -> int:
        """Classes seen so far, the current one included."""
        return self.task + 1


class Strategy:
    """Sequential fine-tuning (SFT): the base game on the current class only; forgets the old ones.

    A strategy class carries its identity and capabilities (``info``: written with every run, so that what shows
    or reports a run needs no training code) and its behaviour (the hooks below). A new strategy is a subclass
    and one line in ``STRATEGIES``.
    """

    name = "sft"
    title = "SFT (sequential fine-tuning)"
    short = "SFT"
    paper_column = "SFT"          # the column of the paper's Table 1 it reproduces (None: not in the paper)
    order = 1                     # its place among the paper's columns
    role = "lower bound"          # lower bound (forgets), mergan, baseline, upper bound (not continual)
    about = "trains on the new class only: the baseline that forgets"
    color = "#d62728"
    one_task = False              # every class in one task (the run cannot be extended)
    conditional = True            # asked for a class, its generator draws it
    replays = False               # replays the previous task's generator
    task_file = "generator"       # what its task file holds: "generator", or "generator+solver"

    @classmethod
    def info(cls) -> StrategyInfo:
        return StrategyInfo(cls.name, cls.title, cls.short, cls.paper_column, cls.order, cls.role, cls.about,
                            cls.color, cls.one_task, cls.conditional, cls.replays, cls.task_file)

    @classmethod
    def resolve(cls, cfg, preset: dict):
        """The run's settings with this strategy's own defaults filled in (``config.resolve``)."""
        return cfg

    @classmethod
    def from_config(cls, cfg) -> "Strategy":
        """The strategy of a ``RunConfig``, built with only its own settings."""
        return cls()

    # ---------------------------------------------------------------------------------------- the plan
    @classmethod
    def plan(cls, n_classes: int, iters: int) -> tuple[list[int], int]:
        """The tasks to train (indices into the class order) and generator updates per task: ``one_task``, one task
        of all classes with the updates they would have had. A class method: a report asks it of a finished run."""
        return ([n_classes - 1], iters * n_classes) if cls.one_task else (list(range(n_classes)), iters)

    def task_data(self, data, classes: list[str], t: int):
        """The real images of task ``t`` and its name in the logs."""
        return data.train[classes[t]], classes[t]

    # ---------------------------------------------------------------------------------------- the steps
    def real_batch(self, ctx: Context, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """What the critic sees as real data (on the device, floats), with labels for its classifier."""
        return to_float(batch.to(ctx.device)), ctx.labels(ctx.batch_size, ctx.task)

    def fake_labels(self, ctx: Context, n: int) -> torch.Tensor:
        return ctx.labels(n, ctx.task)

    def fake_class_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The generator's auxiliary-classifier term: its fakes must be classified as the class asked for."""
        return aux_classifier_loss(logits, y)

    def critic_terms(self, ctx: Context) -> torch.Tensor | None:
        return None

    def generator_terms(self, ctx: Context) -> torch.Tensor | None:
        return None

    # ---------------------------------------------------------------------------------------- boundaries
    def begin_task(self, ctx: Context) -> None:
        pass

    def end_task(self, ctx: Context) -> None:
        pass

    def deliverable(self, ctx: Context):
        """The module saved as the task's generator, and its constructor arguments."""
        return ctx.G_out, ctx.model

    def state_dict(self) -> dict:
        return {}

    def grow(self, G, added: int) -> None:
        """Fit the strategy's own tensors to a generator whose label tables grew by ``added`` (an extended run)."""

    def load_state_dict(self, state: dict) -> None:
        pass

    def to(self, device) -> None:
        """Move the strategy's tensors (after loading a state) to the training device."""


class Replaying(Strategy):
    """A strategy that replays the previous task's generator (``old_G``, frozen, loaded at each task start)."""

    replays = True
    old_G: torch.nn.Module | None = None

    def begin_task(self, ctx):
        if ctx.task > 0:
            self.old_G = ctx.load_generator(ctx.task - 1)


def replay_batch(ctx: Context):
    """Fresh noise and labels for the old classes 0..t-1, class by class in equal consecutive chunks: (z, y).

    Digits (the 32x32 model) share one batch (``batch_size // t`` per class, ``mergan.py:276``); LSUN gives each
    old class a full batch (``mergan.py:307``). ``ctx.replay_batch``, if set, takes the batch size's place;
    ``ctx.replay_shared`` (``--replay-split``) overrides the dataset's sharing: the ``quick`` preset gives each
    old digit 16, so RA's weight per old class no longer falls as 1/t^2. Generate it with ``groups=t``: each
    class keeps its own batch statistics, as the original's one forward call per class.
    """
    t = ctx.task
    size = ctx.replay_batch or ctx.batch_size
    shared = ctx.reduce_replay if ctx.replay_shared is None else ctx.replay_shared
    n = max(2, size // t) if shared else size
    y = torch.arange(t, device=ctx.device).repeat_interleave(n)
    return ctx.noise(n * t), y


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
        t = ctx.task
        if t == 0:
            return None
        z, y = replay_batch(ctx)
        d_new, logits_new = ctx.D_raw(ctx.G(z, y, groups=t))
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
        t = ctx.task
        if t == 0:
            return None
        z, y = replay_batch(ctx)
        with torch.no_grad(), ctx.autocast():
            old = self.old_G(z, y, groups=t)
        total = replay_alignment(ctx.G(z, y, groups=t), old)
        return self.lam * total / (t if ctx.reduce_replay else 1)


class JTRRA(JTR, RA):
    """Both MeRGAN terms at once, as the original code allows (``--JTR --RA``: G loss = base + L_RA + JTR_G,
    D loss = base + JTR_D, ``mergan.py:325-326``); the paper never combines them.

    The critic learns the old classes from the previous generator's replays as in ``JTR``; the generator's replays
    of the old classes must both pass that critic and redraw the previous generator's pixels for the same noise
    and label, as in ``RA`` (lambda_RA as RA's). One replay batch serves both generator terms.
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

    def generator_terms(self, ctx):
        t = ctx.task
        if t == 0:
            return None
        z, y = replay_batch(ctx)
        with torch.no_grad(), ctx.autocast():
            old = self.old_G(z, y, groups=t)
        new = ctx.G(z, y, groups=t)
        d_new, logits_new = ctx.D_raw(new)
        jtr = t * (aux_classifier_loss(logits_new, y) + ctx.game.generator_loss(d_new))
        ra = self.lam * replay_alignment(new, old)
        return jtr + ra / t if ctx.reduce_replay else jtr / t + ra


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
