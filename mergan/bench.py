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
import statistics
import time

import torch


def matmul_flops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matmul throughput, FLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_trainer(strategy: str, dim: int | None, task: int, cpu: bool, mixed_precision: str,
                 batch_size: int = 64):
    from accelerate import Accelerator

    from .data import BatchStream, load_task_data
    from .models import model_config
    from .strategies import STRATEGIES
    from .trainer import RunConfig, Trainer

    data = load_task_data("mnist", "data", ",".join(str(i) for i in range(task + 1)), mnist_source="mnist5k")
    cfg = RunConfig(dataset="mnist", strategy=strategy, classes=data.classes, iters=1,
                    model=model_config("dcgan32", channels=1, dim=dim), data_source=data.source,
                    batch_size=batch_size)
    acc = Accelerator(cpu=cpu, mixed_precision=mixed_precision)
    tr = Trainer(cfg, data, "unused", acc, STRATEGIES[strategy]("mnist"))
    tr._prepare_models()
    tr._new_optimizers()
    tr.old_G = copy.deepcopy(tr.strategy.deliverable(tr, task - 1)[0]).requires_grad_(False)
    tr.n_seen = task + 1
    t = task if not tr.strategy.joint else 0
    if strategy == "ewc":
        tr.strategy.end_task(tr, task - 1)
    dataset = data.labeled(data.classes) if tr.strategy.joint else data.train[data.classes[task]]
    return tr, t, BatchStream(dataset, cfg.batch_size, 0)


def iteration(tr, t, stream):
    tr.generator_step(t)
    for _ in range(tr.cfg.critic_iters):
        tr.critic_step(t, stream)


class _Global:
    """Stands in for FlopCounterMode's per-module tracker, whose hooks break ``autograd.grad`` (the gradient
    penalty); totals are all this benchmark needs."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def bench_strategy(strategy, args, device):
    from torch.utils.flop_counter import FlopCounterMode

    tr, t, stream = make_trainer(strategy, args.dim, args.task, args.cpu, args.mixed_precision, args.batch_size)
    for _ in range(args.warmup):
        iteration(tr, t, stream)
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _Global()
    with counter:
        iteration(tr, t, stream)
    flops = counter.get_total_flops()
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            iteration(tr, t, stream)
        sync(device)
        times.append((time.perf_counter() - start) / args.iters)
    return statistics.median(times), min(times), max(times), flops


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategies", default="sft,ra,jtr,ewc,dgr,joint")
    p.add_argument("--task", type=int, default=4, help="task index timed (old classes = task)")
    p.add_argument("--dim", type=int, default=None, help="network width (default: the paper's 32)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: the paper's 64)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    args = p.parse_args(argv)
    if args.task < 1:
        p.error("--task must be at least 1 so that replay strategies have old classes")
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    peak = matmul_flops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; measured fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    print(f"MNIST 32x32, width {args.dim or 32}, batch {args.batch_size}, 5 critic steps per generator step, "
          f"task {args.task} ({args.task} old classes), median of {args.repeats} x {args.iters} iterations")
    print(f"{'strategy':<9}{'ms/iter':>10}{'min':>9}{'max':>9}{'img/s':>9}{'GFLOP/iter':>12}{'GFLOP/s':>10}"
          f"{'of matmul':>11}")
    for s in args.strategies.split(","):
        med, lo, hi, flops = bench_strategy(s, args, device)
        images = args.batch_size * 6  # generated images per iteration: 1 generator batch + 5 critic batches
        print(f"{s:<9}{med * 1e3:>10.1f}{lo * 1e3:>9.1f}{hi * 1e3:>9.1f}{images / med:>9.0f}{flops / 1e9:>12.2f}"
              f"{flops / med / 1e9:>10.1f}{flops / med / peak:>10.1%}")


if __name__ == "__main__":
    main()
