"""Training throughput: ms per iteration (one generator update with its critic updates) for each strategy.

    python -m mergan.bench                      # the paper's MNIST size (width 32, batch 64), on this machine
    python -m mergan.bench --task 4 --repeats 5 --iters 10 --dim 16 --batch-size 32   # the quick preset's size

Each strategy is timed at task ``--task`` (replay costs grow with the number of old classes), ``--repeats``
times ``--iters`` iterations after a warm-up; the median is printed. FLOPs per iteration are counted with
``torch.utils.flop_counter`` (convolutions and matrix products, forward, backward and the gradient penalty's
double backward), and the machine's matmul FLOP/s is measured in the same run, so the efficiency is a ratio of
two numbers taken side by side.
"""
from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time

import torch


@functools.lru_cache(maxsize=None)   # the machine's peak, measured once per process and device
def matmul_flops(device: torch.device, n: int = 2048, repeats: int = 5, trials: int = 5) -> float:
    """Measured float32 matmul throughput, FLOP/s: the best of ``trials`` timings of ``repeats`` products, so
    that a busy moment of the machine does not lower the peak (which would push shares above 100%)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(trials):
        sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * repeats / best


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_trainer(strategy: str, task: int, cpu: bool, mixed_precision: str, preset: str = "paper",
                 overrides: dict | None = None, cuda_graphs: bool | None = None):
    """A trainer at the start of task ``task`` of MNIST, its previous generator a copy of its own, and the
    iterator of that task's steps (``Trainer.task_steps``, nothing saved)."""
    import copy

    from accelerate import Accelerator

    from .config import resolve
    from .data import load_task_data
    from .trainer import Trainer

    data = load_task_data("mnist", "data", ",".join(str(i) for i in range(task + 1)))
    cfg = resolve(data, strategy=strategy, preset=preset, overrides={**(overrides or {}), "iters": 10_000_000})
    acc = Accelerator(cpu=cpu, mixed_precision=mixed_precision)
    holder = {}
    tr = Trainer(cfg, data, "unused", acc, cuda_graphs=cuda_graphs,
                 previous=lambda t: copy.deepcopy(holder["tr"].strategy.deliverable(holder["tr"].context(t))[0])
                 .requires_grad_(False))
    holder["tr"] = tr
    tasks, _ = tr.strategy.plan(task + 1, 1)
    if task > 0:
        tr.finish_task(task - 1)   # EWC: a Fisher to pull towards
    return tr, tr.task_steps(tasks[-1], cfg.iters, save=False)


class _Global:
    """Stands in for FlopCounterMode's per-module tracker, whose hooks break ``autograd.grad`` (the gradient
    penalty); totals are all this benchmark needs."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def bench_strategy(strategy, args, device, cuda_graphs: bool | None = False):
    """(median, min, max seconds per iteration, FLOPs per iteration or None): ``cuda_graphs`` True times the
    captured step (its FLOPs are the eager step's: a replay dispatches no operation to count)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .graphs import WARMUP

    overrides = {**getattr(args, "overrides", {}), "dim": args.dim, "batch_size": args.batch_size}
    tr, steps = make_trainer(strategy, args.task, args.cpu, args.mixed_precision, args.preset, overrides,
                             cuda_graphs)
    next(steps)   # iteration 0: the critic alone
    for _ in range(max(args.warmup, WARMUP + 1) if tr.capture else args.warmup):   # captured by then
        next(steps)
    flops = None
    if not tr.capture:
        # FLOPs per iteration averaged over one cycle of the lazy penalty (``penalty_every`` iterations: it falls
        # on every k-th critic step, so one iteration alone counts it fully or not at all).
        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _Global()
        cycle = tr.cfg.penalty_every
        with counter:
            for _ in range(cycle):
                next(steps)
        flops = counter.get_total_flops() / cycle
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            next(steps)
        sync(device)
        times.append((time.perf_counter() - start) / args.iters)
    return statistics.median(times), min(times), max(times), flops


def paper_cost_line(device, args) -> str:
    """The paper preset's cost per MNIST task, extrapolated from its measured ms/iter at task 4 (RA)."""
    from types import SimpleNamespace

    from .config import PAPER_ITERS

    paper = SimpleNamespace(**{**vars(args), "preset": "paper", "dim": None, "batch_size": None, "overrides": {}})
    med, _, _, _ = bench_strategy("ra", paper, device)
    n = PAPER_ITERS["mnist"]
    return (f"paper preset, RA at task 4: {med * 1e3:.0f} ms/iter, so about {med * (n + 1) / 60:.0f} minutes per "
            f"MNIST task of {n} updates and {5 * med * (n + 1) / 60:.0f} for 5 tasks (extrapolated)")


def time_to_quality(budgets: list[int], eval_samples: int, cpu: bool, out_root: str | None = None) -> list[str]:
    """Train RA on 5 MNIST tasks with the quick preset at each budget (updates per task), time it, and score
    the final generator's accuracy with both evaluators (``evaluation.score_final_task``); the first budget whose
    lower-of-two average reaches 90% and 96% gives the time to that quality."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from .evaluation import score_final_task

    rows, reached = [], {}
    root = Path(out_root or tempfile.mkdtemp(prefix="mergan-ttq-"))
    for iters in budgets:
        out = root / f"ra-{iters}"
        start = time.perf_counter()
        argv = ["train.py", "--strategy", "ra", "--preset", "quick", "--classes", "0,1,2,3,4", "--iters", str(iters),
                "--out", str(out)] + (["--cpu"] if cpu else [])
        done = subprocess.run([sys.executable, *argv], cwd=Path(__file__).resolve().parents[1],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: the RA run with {iters} updates per task failed: {done.stderr.strip()[-300:]}")
        seconds = time.perf_counter() - start
        last, main, second = score_final_task(out, eval_samples, device="cpu" if cpu or not torch.cuda.is_available()
                                              else "cuda")
        both = last.strict.average
        rows.append(f"RA, {iters:>5} updates per task: {seconds:6.0f} s; after task 4 {main} "
                    f"{100 * last.main.average:.1f}%, {second} {100 * last.second.average:.1f}%, lower of the "
                    f"two {100 * both:.1f}%")
        for goal in (0.90, 0.96):
            if both >= goal and goal not in reached:
                reached[goal] = (seconds, iters)
    for goal in (0.90, 0.96):
        rows.append(f"time to {goal:.0%} (both evaluators): " + (
            f"{reached[goal][0]:.0f} s ({reached[goal][1]} updates per task)" if goal in reached
            else "not reached at these budgets"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategies", default="sft,ra,jtr,ewc,dgr,joint")
    p.add_argument("--task", type=int, default=4, help="task index timed (old classes = task)")
    p.add_argument("--preset", default="paper", help="training settings of this preset (default paper)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting of the preset, e.g. --set loss=wgan-gp --set critic_iters=5 (keys: "
                        "train.py's settings with underscores: lr, betas, critic_iters, gp_weight, ...)")
    p.add_argument("--dim", type=int, default=None, help="network width (default: the preset's; paper 32)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's; paper 64)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--cuda-graphs", action="store_true",
                   help="also time each strategy's step captured as CUDA graphs (a CUDA device), and the speed-up")
    p.add_argument("--time-to-quality", default=None, metavar="BUDGETS",
                   help="also train RA (quick preset, 5 tasks) at these comma-separated updates per task, e.g. "
                        "500,1000,1500, and report the wall time to 90%% and 96%% accuracy (minutes each)")
    p.add_argument("--eval-samples", type=int, default=1000, help="--time-to-quality: images per class scored")
    args = p.parse_args(argv)
    from .config import SETTINGS, resolve
    from .data import load_task_data

    kinds = {s.name: s.type for s in SETTINGS}
    args.overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in kinds or not value:
            p.error(f"--set takes KEY=VALUE with KEY one of {', '.join(kinds)}; got {item!r}")
        try:
            args.overrides[key] = kinds[key](value)
        except ValueError:
            p.error(f"--set {key} takes a {kinds[key].__name__}, got {value!r}")
    if args.task < 1:
        p.error("--task must be at least 1 so that replay strategies have old classes")
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    peak = matmul_flops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; measured fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    try:
        cfg = resolve(load_task_data("mnist", "data", "0"), strategy="sft", preset=args.preset,
                      overrides={**args.overrides, "dim": args.dim, "batch_size": args.batch_size})
    except ValueError as e:
        p.error(str(e))
    batch = cfg.batch_size
    print(f"MNIST 32x32, preset {args.preset}: {cfg.loss}, width {cfg.model['dim']}, batch {batch}, "
          f"{cfg.critic_iters} critic step(s) per generator step, penalty every {cfg.penalty_every}, EMA {cfg.ema}; "
          f"task {args.task} ({args.task} old classes), median of {args.repeats} x {args.iters} iterations")
    print(f"{'strategy':<9}{'ms/iter':>10}{'min':>9}{'max':>9}{'img/s':>9}{'GFLOP/iter':>12}{'GFLOP/s':>10}"
          f"{'of matmul':>11}")
    images = batch * (1 + cfg.critic_iters)  # generated images per iteration: generator and critic batches
    for s in args.strategies.split(","):
        med, lo, hi, flops = bench_strategy(s, args, device)
        print(f"{s:<9}{med * 1e3:>10.1f}{lo * 1e3:>9.1f}{hi * 1e3:>9.1f}{images / med:>9.0f}{flops / 1e9:>12.2f}"
              f"{flops / med / 1e9:>10.1f}{flops / med / peak:>10.1%}")
        if args.cuda_graphs:
            if device.type != "cuda":
                p.error("--cuda-graphs needs a CUDA device")
            gmed, glo, ghi, _ = bench_strategy(s, args, device, cuda_graphs=True)
            print(f"{s + ' (graph)':<9}{gmed * 1e3:>10.1f}{glo * 1e3:>9.1f}{ghi * 1e3:>9.1f}{images / gmed:>9.0f}"
                  f"{flops / 1e9:>12.2f}{flops / gmed / 1e9:>10.1f}{flops / gmed / peak:>10.1%}   "
                  f"{med / gmed:.1f}x the eager step")
    if args.preset != "paper":
        print(paper_cost_line(device, args))
    if args.time_to_quality:
        for line in time_to_quality([int(b) for b in args.time_to_quality.split(",")], args.eval_samples, args.cpu):
            print(line)


if __name__ == "__main__":
    main()
