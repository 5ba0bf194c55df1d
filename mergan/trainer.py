"""The one training loop: a conditional WGAN-GP with an auxiliary classifier, one class per task.

Per task (``mergan.py:344-384``): iteration 0 trains only the critic; every later iteration makes one generator
update, then ``critic_iters`` critic updates, each on a fresh real batch of the current class. The critic
carries over between tasks; both Adam optimisers are reset at every task start. ``Trainer.task_steps`` is the
one place this schedule is written: training (``train``), live teaching (``mergan.live``) and the benchmark
(``mergan.bench``) all step through it. The strategy adds its terms
through the interface of ``mergan.strategies`` (it sees a ``Context``, never the trainer); the loop knows no
strategy by name. Every backward goes through the Accelerator, so the same code runs on the CPU,
one GPU, several GPUs (DDP) and in mixed precision.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from . import graphs
from .batches import BatchStream
from .checkpoints import CheckpointError, load_generator, save_generator, save_state
from .config import RunConfig
from .data import TaskData
from .losses import aux_classifier_loss, game
from .models import build_critic, build_generator, grow_state, with_labels
from .records import RunRecord, TaskMeta, TrainingState
from .runs import RunFolder, run_id
from .sampling import class_grid, save_png
from .strategies import Context, Strategy, build_strategy
from .trackers import log_grid, step

log = logging.getLogger("mergan")

# Decoding workers for datasets read from disk (LSUN lmdb, image folders); in-memory ones need none.
LOADER_WORKERS = min(4, max(1, (os.cpu_count() or 2) // 2))


class TrainingError(Exception):
    """Training cannot go on (for example a NaN loss); the message says what to change."""


@dataclass
class Step:
    """One iteration of a task, done: iteration 0 is the critic-only warm-up, every later one a generator update
    and its critic updates."""

    task: int
    iteration: int
    d_loss: torch.Tensor
    g_loss: torch.Tensor | None
    logs: dict | None           # the losses as floats when this iteration is logged, else None


@dataclass
class Weights:
    """State dicts a trainer starts from (a finished run's raw generator, critic and weight average)."""

    G: dict
    D: dict
    G_ema: dict | None = None


class Trainer:
    """The training of one run. ``previous(t)`` gives the frozen generator delivered after task t to strategies
    that replay it (default: read from the run folder); ``weights`` are the state dicts to start from (default:
    the seed's initialisation). Every attribute is made here; the optimisers are made anew at each task start."""

    def __init__(self, cfg: RunConfig, data: TaskData, run_dir: str | Path, accelerator,
                 strategy: Strategy | None = None, *, previous: Callable[[int], torch.nn.Module] | None = None,
                 weights: Weights | None = None, cuda_graphs: bool | None = None, device_rng: bool | None = None):
        """``cuda_graphs``: capture the step as CUDA graphs (None: wherever it can hold, ``graphs.plan``; False:
        the eager step). ``device_rng``: draw the step's random numbers on the device (default: when captured;
        the eager step draws them on the CPU, as every run before, so its files stay the same)."""
        self.cfg, self.data, self.run, self.acc = cfg, data, RunFolder(run_dir), accelerator
        self.strategy = strategy if strategy is not None else build_strategy(cfg)
        self.record = RunRecord(cfg, self.strategy.info(), run_id(cfg))
        self.game = game(cfg.loss)
        self.device = accelerator.device
        self.batch_size = cfg.batch_size
        self.reduce_replay = cfg.model["arch"] == "dcgan32"  # digits share one replay batch (REDUCE_BATCH)
        self.model = with_labels(cfg.model, len(cfg.classes))   # an extended run's label tables grow
        torch.manual_seed(cfg.seed)
        self.G_raw = build_generator(self.model)
        self.D_raw = build_critic(self.model)
        self.G_ema = None
        if cfg.ema:
            self.G_ema = build_generator(self.model).requires_grad_(False)
            self.G_ema.load_state_dict(self.G_raw.state_dict())
        self.added_labels = 0   # labels the weights started from lacked (``load_weights``)
        if weights is not None:
            self.load_weights(weights)
        self.capture, self.step_line = graphs.plan(self.device, accelerator.num_processes,
                                                   str(accelerator.mixed_precision), cuda_graphs)
        self.device_rng = self.capture if device_rng is None else device_rng
        seed = cfg.seed * 7919 + 104729 * accelerator.process_index
        if self.device_rng and self.device.type == "cuda":   # the generator a CUDA graph may draw from
            self.rng = torch.cuda.default_generators[self.device.index or 0]
            self.rng.manual_seed(seed)
        else:
            self.rng = torch.Generator().manual_seed(seed)
        self.graphs: graphs.StepGraphs | None = None
        self._previous = previous or (lambda t: load_generator(self.run.task_path(t), self.device)[0])
        self.G, self.D = self.acc.prepare(self.G_raw, self.D_raw)
        if self.G_ema is not None:
            self.G_ema.to(self.device)
        self.opt_G = self.opt_D = None
        self.ctx: Context | None = None
        self.stream: BatchStream | None = None   # the current task's real batches
        self._config_saved = False

    def load_weights(self, weights: Weights) -> None:
        """Start from ``weights``; those of a run with fewer labels grow into this one's (``models.grow_state``:
        the learned entries unchanged, the new labels' as initialised)."""
        saved = weights.D.get("classifier.bias")   # one entry per label
        added = self.model["n_classes"] - (len(saved) if saved is not None else 0)

        def fit(module, state):
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            try:
                module.load_state_dict(grow_state(state, module.state_dict(), added))
            except (ValueError, RuntimeError) as e:
                raise CheckpointError(f"the saved weights do not fit this run's networks ({str(e)[:120]}); restore "
                                      f"the run's own state.pt, or train into another --out") from None

        self.added_labels = added
        fit(self.G_raw, weights.G)
        fit(self.D_raw, weights.D)
        if self.G_ema is not None and weights.G_ema is not None:
            fit(self.G_ema, weights.G_ema)

    # ------------------------------------------------------------------------------------------ helpers
    def noise(self, n: int) -> torch.Tensor:
        if self.rng.device.type != "cpu":
            return torch.randn(n, self.cfg.model["z_dim"], generator=self.rng, device=self.rng.device)
        return torch.randn(n, self.cfg.model["z_dim"], generator=self.rng).to(self.device)

    def labels(self, n: int, label: int) -> torch.Tensor:
        return torch.full((n,), label, dtype=torch.long, device=self.device)

    def autocast(self):
        return self.acc.autocast()

    def reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over processes (identity on one process)."""
        return self.acc.reduce(x.to(self.device), "mean") if self.acc.num_processes > 1 else x

    def _loss_scale(self):
        scaler = getattr(self.acc, "scaler", None)
        return scaler.get_scale() if scaler is not None and scaler.is_enabled() else None

    @property
    def G_out(self):
        """The generator that is delivered and replayed: the weight average if ``ema`` is set, else the raw one."""
        return self.G_ema if self.G_ema is not None else self.G_raw

    def context(self, t: int) -> Context:
        """What the strategy may use during task ``t``."""
        return Context(task=t, G_raw=self.G_raw, G=self.G, G_out=self.G_out, D_raw=self.D_raw, D=self.D,
                       noise=self.noise, labels=self.labels, autocast=self.autocast, rng=self.rng,
                       device=self.device, batch_size=self.batch_size, reduce_replay=self.reduce_replay,
                       game=self.game, model=self.model, load_generator=self._previous,
                       reduce_mean=self.reduce_mean, replay_batch=self.cfg.replay_batch,
                       replay_shared=None if self.cfg.replay_split is None else self.cfg.replay_split == "shared")

    def _ctx(self, t: int) -> Context:
        if self.ctx is None or self.ctx.task != t:
            self.ctx = self.context(t)
        return self.ctx

    @torch.no_grad()
    def _update_ema(self):
        if self.G_ema is not None:
            ema, raw = list(self.G_ema.parameters()), list(self.G_raw.parameters())
            torch._foreach_lerp_(ema, raw, 1.0 - self.cfg.ema)

    def new_optimizers(self):
        """Fresh Adam optimisers (no moments): the original resets both at every task start."""
        betas = (self.cfg.beta1, self.cfg.beta2)
        extra = {"capturable": True} if self.capture else {}   # the step count on the device, for CUDA graphs
        opt_G = torch.optim.Adam(self.G_raw.parameters(), lr=self.cfg.lr, betas=betas, **extra)
        opt_D = torch.optim.Adam(self.D_raw.parameters(), lr=self.cfg.lr, betas=betas, **extra)
        self.opt_G, self.opt_D = self.acc.prepare(opt_G, opt_D)

    # ------------------------------------------------------------------------------------------ steps
    def critic_step(self, t: int, batch, penalty: bool = True) -> torch.Tensor:
        """One critic update on a real ``batch`` of the task; ``penalty``: this step carries the (lazy) gradient
        penalty."""
        ctx = self._ctx(t)
        real, real_y = self.strategy.real_batch(ctx, batch)
        z, fake_y = self.noise(self.batch_size), self.strategy.fake_labels(ctx, self.batch_size)
        cfg, g = self.cfg, self.game
        drawn = g.draw(self.batch_size, self.rng)
        if penalty and g.penalty_on_real:
            real = real.detach().requires_grad_(True)
        with self.autocast():
            with torch.no_grad():
                fake = self.G_raw(z, fake_y)
            # One critic call for both sides (the critic treats each sample on its own).
            d, logits = self.D(torch.cat([real, fake.to(real.dtype)]))
            d_real, d_fake, logits_real = d[:len(real)], d[len(real):], logits[:len(real)]
            loss = g.critic_loss(d_real, d_fake) + aux_classifier_loss(logits_real, real_y)
            if penalty:
                loss = loss + g.penalty(self.D, real, fake, d_real, drawn, cfg.gp_weight * cfg.penalty_every,
                                        self._loss_scale())
            extra = self.strategy.critic_terms(ctx)
            if extra is not None:
                loss = loss + extra
        self.opt_D.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt_D.step()
        return loss.detach()

    def generator_step(self, t: int) -> torch.Tensor:
        self.D_raw.requires_grad_(False)
        ctx = self._ctx(t)
        z, fake_y = self.noise(self.batch_size), self.strategy.fake_labels(ctx, self.batch_size)
        with self.autocast():
            d_fake, logits = self.D_raw(self.G(z, fake_y))
            loss = self.game.generator_loss(d_fake)
            aux = self.strategy.fake_class_loss(logits, fake_y)
            if aux is not None:
                loss = loss + aux
            extra = self.strategy.generator_terms(ctx)
            if extra is not None:
                loss = loss + extra
        self.opt_G.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt_G.step()
        self._update_ema()
        self.D_raw.requires_grad_(True)
        return loss.detach()

    def task_steps(self, t: int, iters: int, start_iter: int = 0, *, save: bool = True,
                   optimizers: tuple[dict, dict] | None = None, drawn: str = "") -> Iterator[Step]:
        """Run task ``t`` from iteration ``start_iter`` to ``iters`` (generator updates), yielding a ``Step`` after
        every iteration: the task's set-up (fresh optimisers, or ``optimizers``' states when resuming; the
        strategy's ``begin_task``; the batch stream), iteration 0 critic-only, ``critic_iters`` critic updates per
        generator update, the penalty on every ``penalty_every``-th critic step of the task, finite losses
        checked at every logged iteration and before every save, the resumable state saved every
        ``save_every`` iterations when ``save``. Closing the iterator stops the task where it is; the task's end
        (``finish_task``, its state and files) is the caller's."""
        cfg, acc = self.cfg, self.acc
        self.new_optimizers()
        if optimizers is not None:
            self.opt_G.load_state_dict(optimizers[0])
            self.opt_D.load_state_dict(optimizers[1])
        self.ctx = self.context(t)
        self.strategy.begin_task(self.ctx)
        dataset, _ = self.strategy.task_data(self.data, cfg.classes, t)
        seed = cfg.seed * 1000 + t + 100_003 * acc.process_index
        stream = self.stream = BatchStream(dataset, cfg.batch_size, seed, start=start_iter * cfg.critic_iters,
                                           num_workers=0 if getattr(dataset, "in_memory", False) else LOADER_WORKERS,
                                           drawn=drawn)
        d_loss = g_loss = None
        self.graphs = None
        # CUDA graphs: the first iterations run eagerly, off the main stream, then the steps are captured
        warmup = torch.cuda.Stream() if self.capture else None
        if warmup is not None:
            warmup.wait_stream(torch.cuda.current_stream())
        penalties = (True, False) if cfg.penalty_every > 1 else (True,)
        batch = None
        try:
            for it in range(start_iter, iters + 1):
                if warmup is not None and self.graphs is None and it > 0 and it >= start_iter + graphs.WARMUP:
                    torch.cuda.current_stream().wait_stream(warmup)
                    self.graphs = graphs.StepGraphs(self, t, self._to_device(batch), penalties)
                with contextlib.nullcontext() if warmup is None or self.graphs else torch.cuda.stream(warmup):
                    if it > 0:
                        g_loss = self.graphs.generator_step() if self.graphs else self.generator_step(t)
                    for j in range(cfg.critic_iters):
                        penalty = (it * cfg.critic_iters + j) % cfg.penalty_every == 0
                        batch = next(stream)
                        d_loss = (self.graphs.critic_step(self._to_device(batch), penalty) if self.graphs
                                  else self.critic_step(t, batch, penalty))
                if warmup is not None and self.graphs is None:   # what follows reads the warm-up's results
                    torch.cuda.current_stream().wait_stream(warmup)
                done_iters, logs = it + 1, None
                if done_iters % cfg.log_every == 0 or done_iters == iters + 1:
                    self._check_finite(t, it, d_loss, g_loss)
                    logs = {"d_loss": float(d_loss), **({"g_loss": float(g_loss)} if g_loss is not None else {})}
                    acc.log({f"task{t}/{k}": v for k, v in logs.items()}, step=step(t, done_iters, iters))
                if save and done_iters % cfg.save_every == 0 and done_iters < iters + 1:
                    self._check_finite(t, it, d_loss, g_loss)
                    self._save_state(t, done_iters, done=False)
                yield Step(t, it, d_loss, g_loss, logs)
            self._check_finite(t, iters, d_loss, g_loss)
        finally:
            stream.close()
            self.graphs = None

    def _to_device(self, batch):
        if isinstance(batch, (tuple, list)):
            return type(batch)(b.to(self.device, non_blocking=True) for b in batch)
        return batch.to(self.device, non_blocking=True)

    def finish_task(self, t: int) -> None:
        """The task's end for the strategy (EWC's Fisher, anchored here)."""
        self.strategy.end_task(self._ctx(t))

    # ------------------------------------------------------------------------------------------ state
    def _state(self, t: int, it: int, done: bool) -> TrainingState:
        from accelerate.utils import gather_object

        ranks = gather_object([(self.rng.get_state(), self.stream.drawn if self.stream else "")])
        scaler = getattr(self.acc, "scaler", None)
        return TrainingState(
            run_id=self.record.run_id, task=t, iteration=it, task_done=done,
            G=self.G_raw.state_dict(), D=self.D_raw.state_dict(),
            G_ema=self.G_ema.state_dict() if self.G_ema is not None else None,
            opt_G=None if done else self.opt_G.state_dict(), opt_D=None if done else self.opt_D.state_dict(),
            rng=[r for r, _ in ranks], strategy=self.strategy.state_dict(),
            scaler=scaler.state_dict() if scaler is not None else None, drawn=[d for _, d in ranks])

    def _save_state(self, t: int, it: int, done: bool) -> None:
        state = self._state(t, it, done)  # every process joins the gather
        if self.acc.is_main_process:
            if self._config_saved:
                save_state(self.run.state_path, state)
            else:   # the settings come with the first save: a run that saved nothing changed nothing
                self.run.write_record_with(self.record, lambda: save_state(self.run.state_path, state))
                self._config_saved = True
        self.acc.wait_for_everyone()

    def _check_finite(self, t: int, it: int, d_loss, g_loss) -> None:
        for name, value in (("critic", d_loss), ("generator", g_loss)):
            if value is not None and not math.isfinite(float(value)):
                raise TrainingError(
                    f"the {name} loss became {float(value)} at task {t} iteration {it}; nothing from this task was "
                    f"saved. Lower --lr, use --mixed-precision no, or --resume from the last saved state")

    def task_meta(self, t: int, iters: int, model: dict) -> TaskMeta:
        c = self.cfg
        return TaskMeta(task=t, classes=c.classes[: t + 1], iters=iters, model=model,
                        deliverable=self.strategy.task_file, strategy_name=c.strategy, dataset=c.dataset,
                        data_source=c.data_source, strategy=self.record.strategy, config=c,
                        run_id=self.record.run_id)

    # ------------------------------------------------------------------------------------------ loop
    def train(self, state: TrainingState | None = None) -> None:
        """Train every task not yet done, starting from ``state`` (a loaded ``state.pt``) if given."""
        cfg = self.cfg
        tasks, iters = self.strategy.plan(len(cfg.classes), cfg.iters)
        start_task, start_iter = tasks[0], 0
        if state is not None:
            if state.processes != self.acc.num_processes:
                raise TrainingError(f"this run was trained on {state.processes} process(es), now "
                                    f"{self.acc.num_processes}; resume it with the same number of processes")
            self.load_weights(Weights(state.G, state.D, state.G_ema))
            self.strategy.load_state_dict(state.strategy)
            self.strategy.grow(self.G_raw, self.added_labels)
            self.strategy.to(self.device)
            self.rng.set_state(state.rng[self.acc.process_index])
            scaler = getattr(self.acc, "scaler", None)
            if state.scaler is not None and scaler is not None:
                scaler.load_state_dict(state.scaler)
            start_task, start_iter = state.task, state.iteration
            if state.task_done:
                start_task, start_iter = state.task + 1, 0
        if state is not None and state.task_done and not self.run.delivered(state.task):
            log.info("writing task %d's files from the saved state (the run stopped before them)", state.task)
            self.deliver(state.task, iters)
        for t in tasks:
            if t < start_task:
                continue
            resuming = state is not None and not state.task_done and t == state.task
            self.run_task(t, iters, start_iter if resuming else 0, (state.opt_G, state.opt_D) if resuming else None,
                          state.drawn[self.acc.process_index] if resuming and state.drawn else "")

    def run_task(self, t: int, iters: int, start_iter: int = 0, optimizers: tuple[dict, dict] | None = None,
                 drawn: str = "") -> None:
        name = self.strategy.task_data(self.data, self.cfg.classes, t)[1]
        bar = tqdm(total=iters + 1, initial=start_iter, desc=f"task {t} ({name})", dynamic_ncols=True,
                   disable=not self.acc.is_local_main_process)
        try:
            for step in self.task_steps(t, iters, start_iter, optimizers=optimizers, drawn=drawn):
                bar.update(1)
                if step.logs:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in step.logs.items()})
        finally:
            bar.close()
        self.finish_task(t)
        # The state first: a run stopped before its task file is written resumes by writing it (``train``).
        self._save_state(t, iters + 1, done=True)
        self.deliver(t, iters)
        log.info("task %d (%s) done: %s", t, name, self.run.task_path(t))

    def deliver(self, t: int, iters: int) -> None:
        """Write task ``t``'s generator and its sample grid."""
        if self.acc.is_main_process:
            ctx = self._ctx(t)
            deliverable, model = self.strategy.deliverable(ctx)
            save_generator(self.run.task_path(t), deliverable, self.task_meta(t, iters, model))
            grid = class_grid(deliverable, ctx.n_seen, 10, self.cfg.sample_seed)
            save_png(grid, self.run.sample_path(t))
            log_grid(self.acc, grid, step(t, iters + 1, iters))
        self.acc.wait_for_everyone()
