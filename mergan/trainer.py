"""The one training loop: a conditional WGAN-GP with an auxiliary classifier, one class per task.

Per task (``mergan.py:344-384``): iteration 0 trains only the critic; every later iteration makes one generator
update, then ``critic_iters`` critic updates, each on a fresh real batch of the current class. The critic
carries over between tasks; both Adam optimisers are reset at every task start. The strategy adds its terms
through the interface of ``mergan.strategies`` (it sees a ``Context``, never the trainer); the loop knows no
strategy by name. Every backward goes through the Accelerator, so the same code runs on the CPU,
one GPU, several GPUs (DDP) and in mixed precision.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .batches import BatchStream
from .checkpoints import load_generator, save_generator, save_state
from .config import RunConfig
from .data import TaskData
from .losses import aux_classifier_loss, critic_loss, generator_loss, gradient_penalty, r1_penalty
from .models import build_critic, build_generator
from .runs import RunFolder
from .sampling import class_grid, save_png
from .strategies import Context, Strategy

log = logging.getLogger("mergan")

# Decoding workers for datasets read from disk (LSUN lmdb, image folders); in-memory ones need none.
LOADER_WORKERS = min(4, max(1, (os.cpu_count() or 2) // 2))


class TrainingError(Exception):
    """Training cannot go on (for example a NaN loss); the message says what to change."""


class Trainer:
    def __init__(self, cfg: RunConfig, data: TaskData, run_dir: Path, accelerator, strategy: Strategy):
        self.cfg, self.data, self.run, self.acc, self.strategy = cfg, data, RunFolder(run_dir), accelerator, strategy
        self.device = accelerator.device
        self.batch_size = cfg.batch_size
        self.reduce_replay = cfg.model["arch"] == "dcgan32"  # digits share one replay batch (REDUCE_BATCH)
        torch.manual_seed(cfg.seed)
        self.G_raw = build_generator(cfg.model)
        self.D_raw = build_critic(cfg.model)
        self.G_ema = None
        if cfg.ema:
            self.G_ema = build_generator(cfg.model).requires_grad_(False)
            self.G_ema.load_state_dict(self.G_raw.state_dict())
        self.ctx: Context | None = None
        self._config_saved = False
        self.rng = torch.Generator().manual_seed(cfg.seed * 7919 + 104729 * accelerator.process_index)

    # ------------------------------------------------------------------------------------------ helpers
    def noise(self, n: int) -> torch.Tensor:
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

    def load_previous(self, t: int) -> torch.nn.Module:
        """The generator saved after task ``t`` (frozen), for strategies that replay it."""
        return load_generator(self.run.task_path(t), self.device)[0]

    def context(self, t: int) -> Context:
        """What the strategy may use during task ``t``."""
        return Context(task=t, G_raw=self.G_raw, G=self.G, G_out=self.G_out, D_raw=self.D_raw, D=self.D,
                       noise=self.noise, labels=self.labels, autocast=self.autocast, rng=self.rng,
                       device=self.device, batch_size=self.batch_size, reduce_replay=self.reduce_replay,
                       loss=self.cfg.loss, model=self.cfg.model, load_generator=self.load_previous,
                       reduce_mean=self.reduce_mean, replay_batch=self.cfg.replay_batch)

    def _ctx(self, t: int) -> Context:
        if self.ctx is None or self.ctx.task != t:
            self.ctx = self.context(t)
        return self.ctx

    def prepare_models(self):
        self.G, self.D = self.acc.prepare(self.G_raw, self.D_raw)
        if self.G_ema is not None:
            self.G_ema.to(self.device)

    @torch.no_grad()
    def _update_ema(self):
        if self.G_ema is not None:
            ema, raw = list(self.G_ema.parameters()), list(self.G_raw.parameters())
            torch._foreach_lerp_(ema, raw, 1.0 - self.cfg.ema)

    def new_optimizers(self):
        """Fresh Adam optimisers (no moments): the original resets both at every task start."""
        betas = (self.cfg.beta1, self.cfg.beta2)
        opt_G = torch.optim.Adam(self.G_raw.parameters(), lr=self.cfg.lr, betas=betas)
        opt_D = torch.optim.Adam(self.D_raw.parameters(), lr=self.cfg.lr, betas=betas)
        self.opt_G, self.opt_D = self.acc.prepare(opt_G, opt_D)

    # ------------------------------------------------------------------------------------------ steps
    def critic_step(self, t: int, stream: BatchStream, penalty: bool = True) -> torch.Tensor:
        """One critic update; ``penalty``: this step carries the (lazy) gradient penalty."""
        ctx = self._ctx(t)
        real, real_y = self.strategy.real_batch(ctx, next(stream))
        z, fake_y = self.noise(self.batch_size), self.strategy.fake_labels(ctx, self.batch_size)
        cfg = self.cfg
        wgan = cfg.loss == "wgan-gp"
        if wgan:
            alpha = torch.rand(self.batch_size, generator=self.rng).to(self.device)
        r1 = penalty and not wgan
        if r1:
            real = real.detach().requires_grad_(True)
        with self.autocast():
            with torch.no_grad():
                fake = self.G_raw(z, fake_y)
            # One critic call for both sides (the critic treats each sample on its own).
            d, logits = self.D(torch.cat([real, fake.to(real.dtype)]))
            d_real, d_fake, logits_real = d[:len(real)], d[len(real):], logits[:len(real)]
            loss = critic_loss(cfg.loss, d_real, d_fake) + aux_classifier_loss(logits_real, real_y)
            weight = cfg.gp_weight * cfg.penalty_every
            if wgan and penalty:
                loss = loss + weight * gradient_penalty(self.D, real, fake.float(), alpha, self._loss_scale())
            elif r1:
                loss = loss + 0.5 * weight * r1_penalty(d_real, real, self._loss_scale())
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
            loss = generator_loss(self.cfg.loss, d_fake)
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

    # ------------------------------------------------------------------------------------------ state
    def _state(self, t: int, it: int, done: bool) -> dict:
        from accelerate.utils import gather_object

        rng_states = gather_object([self.rng.get_state()])
        scaler = getattr(self.acc, "scaler", None)
        return {
            "task": t, "iter": it, "task_done": done,
            "G": self.G_raw.state_dict(), "D": self.D_raw.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": None if done else self.opt_G.state_dict(),
            "opt_D": None if done else self.opt_D.state_dict(),
            "rng": rng_states, "strategy": self.strategy.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }

    def _save_state(self, t: int, it: int, done: bool) -> None:
        state = self._state(t, it, done)  # every process joins the gather
        if self.acc.is_main_process:
            if self._config_saved:
                save_state(self.run.state_path, state)
            else:   # the settings come with the first save: a run that saved nothing changed nothing
                self.run.write_config_with(self.cfg, lambda: save_state(self.run.state_path, state))
                self._config_saved = True
        self.acc.wait_for_everyone()

    def _check_finite(self, t: int, it: int, d_loss, g_loss) -> None:
        for name, value in (("critic", d_loss), ("generator", g_loss)):
            if value is not None and not math.isfinite(float(value)):
                raise TrainingError(
                    f"the {name} loss became {float(value)} at task {t} iteration {it}; nothing from this task was "
                    f"saved. Lower --lr, use --mixed-precision no, or --resume from the last saved state")

    def _meta(self, t: int, iters: int) -> dict:
        c = self.cfg
        return {"strategy": c.strategy, "task": t, "classes": c.classes[: t + 1], "dataset": c.dataset,
                "data_source": c.data_source, "iters": iters, "seed": c.seed, "batch_size": c.batch_size, "lr": c.lr,
                "loss": c.loss,
                "critic_iters": c.critic_iters, "ema": c.ema,
                **({"replay_batch": c.replay_batch} if c.replay_batch else {})}

    # ------------------------------------------------------------------------------------------ loop
    def train(self, state: dict | None = None) -> None:
        """Train every task not yet done, starting from ``state`` (a loaded ``state.pt``) if given."""
        cfg = self.cfg
        tasks, iters = self.strategy.plan(len(cfg.classes), cfg.iters)
        start_task, start_iter = tasks[0], 0
        if state is not None:
            self.G_raw.load_state_dict(state["G"])
            self.D_raw.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"])
            self.strategy.load_state_dict(state["strategy"])
            self.strategy.to(self.device)
            if len(state["rng"]) != self.acc.num_processes:
                raise TrainingError(f"this run was trained on {len(state['rng'])} process(es), now "
                                    f"{self.acc.num_processes}; resume it with the same number of processes")
            self.rng.set_state(state["rng"][self.acc.process_index])
            scaler = getattr(self.acc, "scaler", None)
            if state["scaler"] is not None and scaler is not None:
                scaler.load_state_dict(state["scaler"])
            start_task, start_iter = state["task"], state["iter"]
            if state["task_done"]:
                start_task, start_iter = state["task"] + 1, 0
        self.prepare_models()
        if state is not None and state["task_done"] and not self.run.delivered(state["task"]):
            log.info("writing task %d's files from the saved state (the run stopped before them)", state["task"])
            self.deliver(state["task"], iters)
        for t in tasks:
            if t < start_task:
                continue
            resuming = state is not None and not state["task_done"] and t == state["task"]
            self.run_task(t, iters, start_iter if resuming else 0, state if resuming else None)

    def _iterate(self, t: int, iters: int, start_iter: int, stream: BatchStream, bar) -> None:
        cfg, acc = self.cfg, self.acc
        d_loss = g_loss = None
        for it in range(start_iter, iters + 1):
            if it > 0:
                g_loss = self.generator_step(t)
            for j in range(cfg.critic_iters):
                d_loss = self.critic_step(t, stream, penalty=(it * cfg.critic_iters + j) % cfg.penalty_every == 0)
            bar.update(1)
            done_iters = it + 1
            if done_iters % cfg.log_every == 0 or done_iters == iters + 1:
                self._check_finite(t, it, d_loss, g_loss)
                logs = {"d_loss": float(d_loss), **({"g_loss": float(g_loss)} if g_loss is not None else {})}
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
                acc.log({f"task{t}/{k}": v for k, v in logs.items()}, step=done_iters)
            if done_iters % cfg.save_every == 0 and done_iters < iters + 1:
                self._check_finite(t, it, d_loss, g_loss)
                self._save_state(t, done_iters, done=False)
        self._check_finite(t, iters, d_loss, g_loss)

    def run_task(self, t: int, iters: int, start_iter: int, state: dict | None) -> None:
        cfg, acc = self.cfg, self.acc
        self.new_optimizers()
        if state is not None:
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        self.ctx = self.context(t)
        self.strategy.begin_task(self.ctx)
        dataset, name = self.strategy.task_data(self.data, cfg.classes, t)
        seed = cfg.seed * 1000 + t + 100_003 * acc.process_index
        stream = BatchStream(dataset, cfg.batch_size, seed, start=start_iter * cfg.critic_iters,
                             num_workers=0 if getattr(dataset, "in_memory", False) else LOADER_WORKERS)
        bar = tqdm(total=iters + 1, initial=start_iter, desc=f"task {t} ({name})", dynamic_ncols=True,
                   disable=not acc.is_local_main_process)
        try:
            self._iterate(t, iters, start_iter, stream, bar)
        finally:
            bar.close()
            stream.close()
        self.strategy.end_task(self.ctx)
        # The state first: a run stopped before its task file is written resumes by writing it (``train``).
        self._save_state(t, iters + 1, done=True)
        self.deliver(t, iters)
        log.info("task %d (%s) done: %s", t, name, self.run.task_path(t))

    def deliver(self, t: int, iters: int) -> None:
        """Write task ``t``'s generator and its sample grid."""
        if self.acc.is_main_process:
            ctx = self._ctx(t)
            deliverable, model = self.strategy.deliverable(ctx)
            save_generator(self.run.task_path(t), deliverable, {**self._meta(t, iters), "model": model})
            save_png(class_grid(deliverable, ctx.n_seen, 10, self.cfg.sample_seed), self.run.sample_path(t))
        self.acc.wait_for_everyone()

