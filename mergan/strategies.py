"""Continual-learning strategies: small plug-ins to the one WGAN-GP + AC-GAN loop of ``mergan.trainer``.

The loop owns the game on the current task. A strategy may only
- choose the labels the generator is asked for (``fake_labels``),
- add terms to the critic's loss (``critic_terms``) and to the generator's (``generator_terms``),
- act at task boundaries (``begin_task``, ``end_task``) and carry tensors in the resumable state.

Read side by side they are the columns of the paper's Table 1. ``t`` is the index of the current task, which
is also the number of classes already learned; old class i is conditioning label i.

Replays are regenerated at every step from fresh noise; nothing is stored. On digits (the 32x32 model) one
batch of 64 replays is shared by the old classes (64 // t each); on LSUN (64x64) each old class gets a full
batch (``mergan.py:276, 307``). Each class is normalised with its own batch statistics (``groups``).
"""
from __future__ import annotations

import logging

import torch

from .config import DEFAULTS
from .losses import aux_classifier_loss, critic_loss, generator_loss, replay_alignment

# lambda_RA per dataset: paper section 4 and train.sh (the argparse default 1e-4 is not what the paper used).
RA_LAMBDA = {"mnist": 1e-3, "svhn": 1e-2, "lsun": 1e-3, "folder": 1e-3}
PAPER_BATCH = DEFAULTS["batch_size"]
log = logging.getLogger("mergan")  # the batch the paper's lambdas are for


def default_ra_lambda(dataset: str, batch_size: int = PAPER_BATCH) -> float:
    """The paper's lambda_RA, for the paper's batch of 64, rescaled to keep the same balance at another batch.

    The RA term is a *sum* over the replay batch (about one batch of replays) while the GAN losses are means,
    so its weight against them grows with the batch: at batch b the same balance needs lambda * 64 / b.
    """
    return RA_LAMBDA[dataset] * PAPER_BATCH / batch_size


class Strategy:
    """Sequential fine-tuning (SFT): the base game on the current class only; forgets the old ones."""

    name = "sft"
    joint = False                 # all classes in one task
    uses_old_generator = False    # keeps a frozen copy of the previous task's generator

    def __init__(self, dataset: str = "mnist", ra_lambda: float | None = None, ewc_lambda: float = 1e9):
        self.dataset = dataset

    conditional = True            # the generator is asked for a class (and its fakes must be classified as it)

    def fake_labels(self, tr, t: int, n: int) -> torch.Tensor:
        return torch.full((n,), t, dtype=torch.long, device=tr.device)

    def real_batch(self, tr, t: int, real: torch.Tensor, real_y: torch.Tensor):
        """What the critic sees as real data (with labels for its auxiliary classifier)."""
        return real, real_y

    def deliverable(self, tr, t: int):
        """The module saved as the task's generator, and its constructor arguments."""
        return tr.G_out, tr.cfg.model

    def critic_terms(self, tr, t: int):
        return None

    def generator_terms(self, tr, t: int):
        return None

    def begin_task(self, tr, t: int) -> None:
        pass

    def end_task(self, tr, t: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def to(self, device) -> None:
        """Move the strategy's tensors (after loading a state) to the training device."""


def replay_batch(tr, t: int):
    """Fresh noise and labels for the old classes 0..t-1, class by class in equal consecutive chunks: (z, y).

    Digits share one batch (``batch_size // t`` per class, ``mergan.py:276``); LSUN gives each old class a full
    batch (``mergan.py:307``). Generate it with ``groups=t``: each class keeps its own batch statistics, as the
    original's one forward call per class, in one call.
    """
    n = max(2, tr.batch_size // t) if tr.reduce_replay else tr.batch_size
    y = torch.arange(t, device=tr.device).repeat_interleave(n)
    return tr.noise(n * t), y


class JTR(Strategy):
    """MeRGAN Joint Training with Replay (``mergan.py:285-323``).

    The previous generator's replays of each old class play "real" for the critic (no gradient penalty on
    them) and teach its auxiliary classifier the old labels; the new generator's replays of the same noise
    play "fake" and must be classified as their class. The original's terms are per old class and summed
    (averaged over classes on LSUN); the critic scores every replay in one call, which changes nothing since
    the critic treats each sample on its own.
    """

    name = "jtr"
    uses_old_generator = True

    def critic_terms(self, tr, t):
        if t == 0:
            return None
        z, y = replay_batch(tr, t)
        with torch.no_grad(), tr.autocast():
            old, new = tr.old_G(z, y, groups=t), tr.G_raw(z, y, groups=t)
        d, logits = tr.D(torch.cat([new, old]))
        d_new, d_old = d.float().chunk(2)
        # The original's per-class means summed over the t classes: t times the mean, the chunks being equal.
        total = t * (critic_loss(tr.cfg.loss, d_old, d_new) + aux_classifier_loss(logits[len(y):], y))
        return total if tr.reduce_replay else total / t

    def generator_terms(self, tr, t):
        if t == 0:
            return None
        z, y = replay_batch(tr, t)
        d_new, logits_new = tr.D_raw(tr.G(z, y, groups=t))
        total = t * (aux_classifier_loss(logits_new, y) + generator_loss(tr.cfg.loss, d_new))
        return total if tr.reduce_replay else total / t


class RA(Strategy):
    """MeRGAN Replay Alignment (``mergan.py:268-283``, paper eq. 13).

    The new generator must draw, for the same noise and old label, the same pixels as the frozen previous
    one: lambda * sum over old classes of 1/2 ||G_t(z, i) - G_{t-1}(z, i)||^2, divided by t on digits.
    """

    name = "ra"
    uses_old_generator = True

    def __init__(self, dataset="mnist", ra_lambda=None, ewc_lambda=1e9):
        super().__init__(dataset)
        self.lam = RA_LAMBDA[dataset] if ra_lambda is None else ra_lambda

    def generator_terms(self, tr, t):
        if t == 0:
            return None
        z, y = replay_batch(tr, t)
        with torch.no_grad(), tr.autocast():
            old = tr.old_G(z, y, groups=t)
        total = replay_alignment(tr.G(z, y, groups=t), old)
        return self.lam * total / (t if tr.reduce_replay else 1)


class Joint(Strategy):
    """Joint training (JT, ``joint.py``): every class at once with true real labels and uniform fake labels;
    the upper bound. Its one task has the summed budget of the sequential tasks."""

    name = "joint"
    joint = True

    def fake_labels(self, tr, t, n):
        return torch.randint(0, tr.n_seen, (n,), generator=tr.rng).to(tr.device)


class EWC(Strategy):
    """Elastic weight consolidation for conditional GANs (Seff et al. 2017; paper eq. 9), lambda_EWC = 1e9.

    After each task the diagonal Fisher information of the generator's parameters is estimated as the mean
    squared gradient of the generator's loss (WGAN + auxiliary classifier) on every class learned so far,
    over ``fisher_batches`` batches per class; later tasks add lambda/2 * sum F (theta - theta*)^2, anchored
    at the parameters that ended the task. The original released no EWC code; this follows the paper's text.
    """

    name = "ewc"
    fisher_batches = 8

    def __init__(self, dataset="mnist", ra_lambda=None, ewc_lambda=1e9):
        super().__init__(dataset)
        self.lam = ewc_lambda
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def penalty(self, G) -> torch.Tensor:
        total = 0.0
        for name, p in G.named_parameters():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p.float() - self.anchor[name]).pow(2)).sum()
        return 0.5 * self.lam * total

    def generator_terms(self, tr, t):
        if not self.fisher:
            return None
        return self.penalty(tr.G_raw)

    def end_task(self, tr, t):
        G, D = tr.G_raw, tr.D_raw
        params = dict(G.named_parameters())
        fisher = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
        D.requires_grad_(False)
        count = 0
        for label in range(t + 1):
            for _ in range(self.fisher_batches):
                z, y = tr.noise(tr.batch_size), tr.labels(tr.batch_size, label)
                with tr.autocast():
                    d, logits = D(G(z, y))
                    loss = generator_loss(tr.cfg.loss, d) + aux_classifier_loss(logits, y)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (k, _), g in zip(params.items(), grads):
                    if g is not None:
                        fisher[k] += g.float().pow(2)
                count += 1
        D.requires_grad_(True)
        reduce = getattr(tr, "reduce_mean", lambda x: x)  # the same Fisher on every process
        self.fisher = {k: reduce(v / count) for k, v in fisher.items()}
        self.anchor = {k: p.detach().float().clone() for k, p in params.items()}
        # The Fisher's scale decides what lambda means: lambda * F is the stiffness of each weight.
        for k, f in self.fisher.items():
            log.info("EWC after task %d: Fisher of %s: mean %.3g, max %.3g (lambda x mean %.3g)", t, k,
                     float(f.mean()), float(f.max()), self.lam * float(f.mean()))

    def state_dict(self):
        return {"fisher": self.fisher, "anchor": self.anchor}

    def load_state_dict(self, state):
        self.fisher = dict(state.get("fisher", {}))
        self.anchor = dict(state.get("anchor", {}))

    def to(self, device):
        self.fisher = {k: v.to(device) for k, v in self.fisher.items()}
        self.anchor = {k: v.to(device) for k, v in self.anchor.items()}


class DGR(Strategy):
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
    uses_old_generator = True
    conditional = False

    def fake_labels(self, tr, t, n):
        return torch.zeros(n, dtype=torch.long, device=tr.device)

    def real_batch(self, tr, t, real, real_y):
        if t == 0:
            return real, real_y
        n_old = round(len(real) * t / (t + 1))
        z = tr.noise(n_old)
        with torch.no_grad(), tr.autocast():
            replay = tr.old_G.generator(z, torch.zeros(n_old, dtype=torch.long, device=tr.device))
            labels = tr.old_G.classify(replay)
        return torch.cat([replay.float(), real[n_old:]]), torch.cat([labels, real_y[n_old:]])

    def deliverable(self, tr, t):
        from .models import ReplayGenerator

        cfg = {**tr.cfg.model, "replay": "dgr", "seen": t + 1}
        module = ReplayGenerator(**{k: cfg[k] for k in ("z_dim", "n_classes", "dim", "channels", "arch")},
                                 seen=t + 1)
        module.generator.load_state_dict(tr.G_out.state_dict())
        module.solver.load_state_dict(tr.D_raw.state_dict())
        return module.to(tr.device), cfg


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Strategy, JTR, RA, Joint, EWC, DGR)}
