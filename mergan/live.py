"""Teach a finished run one more class, live: a bounded number of updates on the CPU, with a picture of every
class after each chunk of them (the demo's "teach it a new digit" tab).

    python -m mergan.live export runs/mnist-ra                 # once: what the run needs to keep learning
    for step in teach("runs/mnist-ra", "5", updates=200, every=25):
        show(step.grid)                                         # uint8 (C, H, W): a row per class

A run's task files hold only the delivered generator. Learning one more class also needs the weights that
training continues from, the raw generator and the critic after the last task; ``export`` writes them from the
run's ``state.pt`` into ``RUN/live.safetensors`` (float16: half the size; a demo, not a resumable state). The
new task runs the run's own strategy and settings through the same steps as ``train.py`` (``mergan.trainer``),
nothing is written, and closing the iterator stops the training where it is.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import torch

from .checkpoints import CheckpointError, load_generator, load_state, read_live, write_live
from .config import RunConfig
from .runs import RunFolder

LIVE_FILE = "live.safetensors"


@dataclass
class LiveStep:
    updates: int          # generator updates done on the new class so far
    grid: torch.Tensor    # uint8 (C, H, W): a row per class, old ones first, the new one last
    seconds: float        # wall time since the start


def export(run_dir: str | Path) -> Path:
    """Write ``RUN/live.safetensors`` from the run's finished ``state.pt``: the raw generator and the critic."""
    run = RunFolder(run_dir)
    if not run.state_path.is_file():
        raise CheckpointError(f"{run.state_path} is missing: export needs the state of a finished run")
    state = load_state(run.state_path)
    cfg = run.read_config()
    if not state["task_done"] or state["task"] != len(cfg["classes"]) - 1:
        raise CheckpointError(f"{run.path} is not finished (its state is at task {state['task']}); finish it first")
    if cfg["strategy"] not in ("sft", "ra", "jtr"):
        raise CheckpointError(f"live teaching covers sft, ra and jtr, not {cfg['strategy']}")
    path = run.path / LIVE_FILE
    write_live(path, state["G"], state["D"], {"task": state["task"], "strategy": cfg["strategy"]})
    return path


def teach(run_dir: str | Path, new_class: str, updates: int = 200, every: int = 25, seed: int = 0,
          per_class: int = 8, data_dir: str | Path = "data") -> Iterator[LiveStep]:
    """Train the run's last generator on ``new_class`` with the run's strategy, yielding a grid of every class
    (``per_class`` images each, fixed noise) before the first update and after every ``every`` updates."""
    import time

    from accelerate import Accelerator

    from .batches import BatchStream
    from .data import load_task_data
    from .sampling import class_grid
    from .strategies import build_strategy
    from .trainer import Trainer

    run = RunFolder(run_dir)
    saved = run.read_config()
    if new_class in saved["classes"]:
        raise ValueError(f"class {new_class} is already learned by {run.path}; pick another")
    if not 1 <= updates <= 5000 or not 1 <= every <= updates:
        raise ValueError("updates must be 1 to 5000 and every 1 to updates")
    classes = [*saved["classes"], new_class]
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{**{k: v for k, v in saved.items() if k in names}, "classes": classes, "iters": updates,
                       "seed": seed})
    data = load_task_data(cfg.dataset, data_dir, ",".join(classes),
                          mnist_source="mnist5k" if str(cfg.data_source).startswith("mnist5k") else "auto")
    last = len(saved["classes"]) - 1
    G_state, D_state, meta = read_live(run.path / LIVE_FILE)
    if meta.get("task") != last:
        raise CheckpointError(f"{run.path / LIVE_FILE} is for task {meta.get('task')}, the run ends at {last}; "
                              f"export it again")
    trainer = Trainer(cfg, data, run.path, Accelerator(cpu=True), build_strategy(cfg))
    trainer.G_raw.load_state_dict({k: v.float() for k, v in G_state.items()})
    trainer.D_raw.load_state_dict({k: v.float() for k, v in D_state.items()})
    if trainer.G_ema is not None:   # the delivered generator is the weight average: it goes on from there
        trainer.G_ema.load_state_dict(load_generator(run.task_path(last))[0].state_dict())
    trainer.prepare_models()
    trainer.new_optimizers()
    t = last + 1
    ctx = trainer.context(t)
    trainer.ctx = ctx
    trainer.strategy.begin_task(ctx)
    dataset, _ = trainer.strategy.task_data(data, classes, t)
    stream = BatchStream(dataset, cfg.batch_size, seed)
    start = time.perf_counter()
    try:
        for it in range(updates + 1):
            if it > 0:
                trainer.generator_step(t)
            trainer.critic_step(t, stream, penalty=it % cfg.penalty_every == 0)
            if it % every == 0:
                grid = class_grid(trainer.G_out, len(classes), per_class, cfg.sample_seed)
                yield LiveStep(it, grid, time.perf_counter() - start)
    finally:
        stream.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergan.live", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write RUN/live.safetensors from the finished run's state.pt")
    e.add_argument("runs", nargs="+")
    args = p.parse_args(argv)
    try:
        for r in args.runs:
            print(f"wrote {export(r)}")
    except (CheckpointError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
