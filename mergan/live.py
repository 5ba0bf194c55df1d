"""Teach a finished run one more class, live: a bounded number of updates on the CPU, with a picture of every
class after each chunk of them (the demo's "teach it a new digit" tab).

    python -m mergan.live export runs/mnist-ra                 # once: what the run needs to keep learning
    for step in teach("runs/mnist-ra", "5", updates=200, every=25):
        show(step.grid)                                         # uint8 (C, H, W): a row per class
    teach("runs/mnist-ra", "5", strategy="sft")                 # the same start, learned by fine-tuning

A run's task files hold only the delivered generator. Learning one more class also needs the weights that
training continues from, the raw generator and the critic after the last task; ``export`` writes them from the
run's ``state.pt`` into ``RUN/live.safetensors`` (float16: half the size; a demo, not a resumable state). The
new task runs through the trainer's own steps (``Trainer.task_steps``: the run's critic ratio, penalty schedule
and settings), with the run's strategy or another one (``strategy``: the same start, learned two ways); nothing
is written, and closing the iterator stops the training where it is. ``teach`` is the one function through
which the demo trains; it imports the training code only when called.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .checkpoints import CheckpointError, load_generator, load_state, read_live, write_live
from .records import RecordError
from .runs import RunFolder
from .sampling import CHUNK

MAX_UPDATES = 5000
MAX_SAMPLES = 4 * CHUNK   # images per class in a step's samples


@dataclass
class LiveStep:
    updates: int            # generator updates done on the new class so far
    grid: torch.Tensor      # uint8 (C, H, W): a row per class, old ones first, the new one last
    seconds: float          # wall time since the start
    samples: torch.Tensor   # uint8 (K, S, C, H, W): S images of each of the K classes (row k of ``grid`` shows
                            # the first ``per_class`` of samples[k]), for scoring each row with an evaluator


def export(run_dir: str | Path) -> Path:
    """Write ``RUN/live.safetensors`` from the run's finished ``state.pt``: the raw generator and the critic."""
    run = RunFolder(run_dir)
    if not run.state_path.is_file():
        raise CheckpointError(f"{run.state_path} is missing: export needs the state of a finished run")
    record = run.read_record()
    state = load_state(run.state_path)
    if state.run_id != record.run_id:
        raise CheckpointError(f"{run.state_path} belongs to another run than {run.config_path}; restore the run's own")
    if not state.task_done or state.task != len(record.config.classes) - 1:
        raise CheckpointError(f"{run.path} is not finished (its state is at task {state.task}); finish it first")
    if record.strategy.one_task or not record.strategy.conditional:
        raise CheckpointError(f"live teaching continues a conditional run of one class per task, not "
                              f"{record.strategy.short}")
    write_live(run.live_path, state.G, state.D, {"task": state.task, "run_id": record.run_id})
    return run.live_path


def teach(run_dir: str | Path, new_class: str, updates: int = 200, every: int = 25, seed: int = 0,
          per_class: int = 8, data_dir: str | Path | None = None, strategy: str | None = None,
          samples_per_class: int = CHUNK, delivered: bool = False) -> Iterator[LiveStep]:
    """Train the run's last generator on ``new_class`` with the run's strategy (or ``strategy``, another one from
    the same start), yielding a ``LiveStep`` before the first update and after every ``every`` updates: a grid of
    every class (``per_class`` images each) and ``samples_per_class`` images of each class, all from the same
    fixed noise at every step (``sampling.sample``: image k of a class is the same for any count). The pictures
    are of the weights being trained; ``delivered`` draws what the run would deliver instead (its weight average,
    where the run keeps one: it trails the trained weights by about 1 / (1 - ema) updates, 200 in the quick
    preset, so a short lesson hardly moves it). Raises
    ``ValueError`` (a bad request or a setting out of range) or ``CheckpointError`` (an unusable file), saying
    what to do."""
    import time

    from accelerate import Accelerator

    from .config import check
    from .data import load_task_data
    from .sampling import grid, sample
    from .strategies import build_strategy, strategy_class
    from .trainer import Trainer, Weights

    run = RunFolder(run_dir)
    try:
        record = run.read_record()
    except RecordError as e:
        raise CheckpointError(str(e)) from None
    saved = record.config
    if new_class in saved.classes:
        raise ValueError(f"class {new_class} is already learned by {run.path}; pick another")
    if not 1 <= updates <= MAX_UPDATES or not 1 <= every <= updates:
        raise ValueError(f"updates must be 1 to {MAX_UPDATES} and every 1 to updates")
    if not 1 <= per_class <= samples_per_class <= MAX_SAMPLES:
        raise ValueError(f"per_class must be 1 to samples_per_class, and samples_per_class at most {MAX_SAMPLES}")
    last = len(saved.classes) - 1
    # What gets built comes from config.json: checked like a new run's settings, and the network must be the one
    # the run's last task file describes (whose sizes the loader bounds), so a crafted folder builds nothing else.
    try:
        check(saved)
    except ValueError as e:
        raise CheckpointError(f"{run.config_path} holds a setting out of range ({e}); restore the run's own "
                              f"config.json") from None
    task_meta = run.read_task(last, record)
    if task_meta.model != saved.model:
        raise CheckpointError(f"{run.config_path} describes another network than {run.task_path(last)}; restore "
                              f"the run's own files")
    G_state, D_state, meta = read_live(run.live_path)
    if meta.get("task") != last or meta.get("run_id") != record.run_id:
        raise CheckpointError(f"{run.live_path} is not this run's last task; write it again with python -m "
                              f"mergan.live export {run.path}")
    name = strategy or saved.strategy
    cls = strategy_class(name)
    if cls.one_task or not cls.conditional:
        raise ValueError(f"live teaching takes a conditional strategy of one class per task, not {name}")
    classes = [*saved.classes, new_class]
    where = data_dir if data_dir is not None else (saved.data_source.location or "data")
    data = load_task_data(saved.dataset, where, ",".join(classes))
    cfg = dataclasses.replace(saved, classes=classes, iters=updates, seed=seed, strategy=cls.name,
                              data_source=data.source)
    cfg = cls.resolve(cfg, {})   # another strategy's own settings, where the run has none (RA's weight)
    # the delivered generator is the weight average: the average goes on from there
    G_ema = load_generator(run.task_path(last))[0].state_dict() if cfg.ema else None
    trainer = Trainer(cfg, data, run.path, Accelerator(cpu=True), build_strategy(cfg),
                      weights=Weights(G_state, D_state, G_ema))
    steps = trainer.task_steps(last + 1, updates, save=False)
    start = time.perf_counter()
    labels = torch.arange(len(classes)).repeat_interleave(samples_per_class)
    try:
        for step in steps:
            if step.iteration % every == 0:
                images = sample(trainer.G_out if delivered else trainer.G_raw, labels, cfg.sample_seed)
                images = images.view(len(classes), samples_per_class, *images.shape[1:])
                yield LiveStep(step.iteration, grid(images[:, :per_class].flatten(0, 1), nrow=per_class),
                               time.perf_counter() - start, images)
    finally:
        steps.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergan.live", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write RUN/live.safetensors from the finished run's state.pt")
    e.add_argument("runs", nargs="+")
    args = p.parse_args(argv)
    try:
        for r in args.runs:
            print(f"wrote {export(r)}")
    except (CheckpointError, RecordError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
