"""What a continual-learning strategy is: a small plug-in to the one GAN + AC-GAN loop of ``mergan.trainer``.

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

Replays are regenerated at every step from fresh noise; nothing is stored (how many: ``replay_batch``). The
strategies themselves, and the registry ``--strategy`` reads: ``mergan.strategies``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .batches import to_float
from .losses import Game, aux_classifier_loss
from .records import StrategyInfo



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
