"""Run a named plan of training runs in parallel, evaluate each with both evaluators, print one table.

    python scripts/experiments.py ablation --jobs 2 --out experiments        # the README's ablation rows (CPU)
    python scripts/experiments.py results --jobs 12 --device cuda --out exp  # every strategy, 5 and 10 tasks, 2 seeds
    python scripts/experiments.py gpu --jobs 6 --device cuda --out exp       # the paper preset, fp32/bf16/fp16

Each run is ``python train.py ARGS --out OUT/NAME`` followed by ``python train.py --test --out OUT/NAME``; the
training's wall time is written to ``OUT/NAME/wall.json``. A run folder that already has its metrics is not run
again, so an interrupted plan continues where it stopped. ``--deadline`` stops starting runs after that many
seconds and ends the running ones, then evaluates the task files they had written. Every process gets
``OMP_NUM_THREADS=--threads`` so that parallel runs do not oversubscribe the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
D5, D10 = "0,1,2,3,4", "0,1,2,3,4,5,6,7,8,9"

# The quick preset as it was before the ablation (WGAN-GP, 5 critic steps, 500 updates), spelled out.
OLD_QUICK = ["--preset", "quick", "--loss", "wgan-gp", "--critic-iters", "5", "--betas", "0,0.9",
             "--penalty-weight", "10", "--penalty-every", "1", "--ema", "0", "--iters", "500", "--lr", "2e-4"]


def ablation_rows() -> list[tuple[str, list[str]]]:
    """Each row changes one thing against the row before it (the README's ablation table)."""
    rows, args = [], list(OLD_QUICK)

    def row(name, **changes):
        nonlocal args
        for flag, value in changes.items():
            flag = "--" + flag.replace("_", "-")
            i = args.index(flag) if flag in args else None
            if i is None:
                args += [flag, str(value)]
            else:
                args[i + 1] = str(value)
        rows.append((name, list(args)))

    row("0-old-quick")
    row("1-ns-r1-1to1-1500", loss="ns-r1", critic_iters=1, betas="0.5,0.99", penalty_weight=1, iters=1500)
    row("2-ema0.995", ema=0.995)
    row("3-lazy-r1-4", penalty_every=4)
    return rows


def sweep_rows() -> list[tuple[str, list[str]]]:
    """Variants around the non-saturating + R1 game, to choose the quick preset (RA and JTR, seed 0)."""
    base = ["--preset", "quick", "--loss", "ns-r1", "--critic-iters", "1", "--betas", "0.5,0.99",
            "--penalty-weight", "1", "--lr", "2e-4", "--iters", "1500"]
    variants = {
        "base": [], "ema99": ["--ema", "0.99"], "ema995": ["--ema", "0.995"], "ema999": ["--ema", "0.999"],
        "g0.1-ema995": ["--penalty-weight", "0.1", "--ema", "0.995"],
        "g5-ema995": ["--penalty-weight", "5", "--ema", "0.995"],
        "lazy4-ema995": ["--penalty-every", "4", "--ema", "0.995"],
        "lr4e-4-ema995": ["--lr", "4e-4", "--ema", "0.995"],
        "it1000-ema995": ["--iters", "1000", "--ema", "0.995"],
        "it2000-ema995": ["--iters", "2000", "--ema", "0.995"],
        "dim24-ema995": ["--dim", "24", "--ema", "0.995"],
        "b32-ema995": ["--batch-size", "32", "--iters", "2000", "--ema", "0.995"],
    }
    rows = []
    for name, extra in variants.items():
        for strategy in ("ra", "jtr"):
            rows.append((f"{strategy}-{name}", ["--strategy", strategy, "--classes", D5, *base, *extra]))
    for lam in ("1e-3", "3e-3", "1e-2", "3e-2"):
        rows.append((f"ra-lam{lam}-ema995", ["--strategy", "ra", "--classes", D5, *base, "--ema", "0.995",
                                             "--ra-lambda", lam]))
    return rows


def confirm_rows() -> list[tuple[str, list[str]]]:
    """The best sweep variant (learning rate 4e-4, EMA 0.995) against lazy R1 and a smaller gamma, 2 seeds."""
    base = ["--preset", "quick", "--loss", "ns-r1", "--critic-iters", "1", "--betas", "0.5,0.99", "--lr", "4e-4",
            "--iters", "1500", "--ema", "0.995"]
    variants = {"g1": ["--penalty-weight", "1"], "g1-lazy4": ["--penalty-weight", "1", "--penalty-every", "4"],
                "g0.1-lazy4": ["--penalty-weight", "0.1", "--penalty-every", "4"]}
    return [(f"{s}-lr4e-4-{n}-s{seed}", ["--strategy", s, "--classes", D5, *base, *extra, "--seed", str(seed)])
            for seed in (0, 1) for n, extra in variants.items() for s in ("ra", "jtr")]


def results_rows(preset: str = "quick", seeds=(0, 1), ewc_lambdas=("1e3", "1e5", "1e7", "1e9")) -> list:
    """Every strategy on 5 and 10 tasks with ``seeds``; EWC at the paper's lambda and over decades."""
    rows = []
    for classes, n in ((D5, 5), (D10, 10)):
        for seed in seeds:
            for strategy in ("sft", "ra", "jtr", "joint", "dgr"):
                rows.append((f"{strategy}-t{n}-s{seed}", ["--strategy", strategy, "--preset", preset, "--classes",
                                                          classes, "--seed", str(seed)]))
            for lam in ewc_lambdas:
                rows.append((f"ewc{lam}-t{n}-s{seed}", ["--strategy", "ewc", "--preset", preset, "--classes",
                                                        classes, "--seed", str(seed), "--ewc-lambda", lam]))
    return rows


def gpu_rows() -> list[tuple[str, list[str]]]:
    """The paper's MNIST setting (5 tasks, 4,000 updates, width 32, WGAN-GP 5:1), fp32; RA in bf16 and fp16."""
    rows = [(f"paper-{s}", ["--strategy", s, "--preset", "paper", "--classes", D5]) for s in ("ra", "jtr")]
    rows += [(f"paper-ra-{mp}", ["--strategy", "ra", "--preset", "paper", "--classes", D5, "--mixed-precision", mp])
             for mp in ("bf16", "fp16")]
    return rows


PLANS = {"ablation": lambda: [(n, ["--strategy", s, "--classes", D5, *a]) for s in ("ra", "jtr")
                              for n, a in [(f"{s}-{n}", a) for n, a in ablation_rows()]],
         "sweep": sweep_rows, "confirm": confirm_rows, "results": results_rows, "gpu": gpu_rows}


def job(name: str, out: Path, train_args: list[str], eval_args: list[str]) -> int:
    """One run: train (timed), then evaluate whatever task files it wrote."""
    logs, run = out / "logs", out / name
    t0 = time.time()
    with open(logs / f"{name}.train.log", "w") as log:
        rc = subprocess.run([sys.executable, "train.py", *train_args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT).returncode
    seconds = round(time.time() - t0, 1)
    (logs / f"{name}.wall.json").write_text(json.dumps(
        {"seconds": seconds, "returncode": rc, "command": "train.py " + " ".join(train_args),
         "threads": os.environ.get("OMP_NUM_THREADS"), "complete": rc == 0}) + "\n")
    evaluate(run, logs / f"{name}.eval.log", eval_args)
    return rc


def evaluate(run: Path, log_path: Path, eval_args: list[str]) -> None:
    if any(run.glob("task_*.safetensors")):
        with open(log_path, "w") as log:
            subprocess.run([sys.executable, "train.py", "--test", "--out", str(run), *eval_args], cwd=REPO,
                           stdout=log, stderr=subprocess.STDOUT)


def run_plan(rows, out: Path, jobs: int, threads: int, device: str, eval_samples: int, deadline: float | None):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    dev = ["--cpu"] if device == "cpu" else []
    eval_args = ["--eval-samples", str(eval_samples), *dev]
    start, pending, running, stopped = time.time(), list(rows), {}, []
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        late = deadline is not None and time.time() - start > deadline
        while pending and len(running) < jobs and not late:
            name, args = pending.pop(0)
            run = out / name
            if (run / "metrics.json").is_file():
                continue
            if run.exists() and not (run / "config.json").is_file():
                import shutil
                shutil.rmtree(run)   # a run that never started (its folder would be refused)
            train_args = [*args, "--out", str(run), *dev]
            spec = json.dumps([name, str(out), train_args, eval_args])
            running[name] = subprocess.Popen([sys.executable, __file__, "_job", spec], env=env,
                                             start_new_session=True)
        for name, proc in list(running.items()):
            if late and proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
                stopped.append(name)
            if proc.poll() is not None:
                print(f"[{time.time() - start:6.0f} s] {name}: rc {proc.returncode}", flush=True)
                del running[name]
        if late:
            pending.clear()
        time.sleep(1)
    if stopped:   # evaluate what the stopped runs had finished, in parallel
        procs = []
        for name in stopped:
            (logs / f"{name}.wall.json").write_text(json.dumps(
                {"seconds": round(deadline, 1), "complete": False, "stopped": "deadline"}) + "\n")
            procs.append(subprocess.Popen([sys.executable, "train.py", "--test", "--out", str(out / name), *eval_args],
                                          cwd=REPO, env=env, stdout=open(logs / f"{name}.eval.log", "w"),
                                          stderr=subprocess.STDOUT))
        for p in procs:
            p.wait()


def summary(out: Path, names) -> list[str]:
    lines = [f"{'run':<28}{'train s':>8}{'cnn':>7}{'mlp':>7}{'both':>7}{'min cls':>8}{'FID':>8}  per class (both)"]
    for name in names:
        run = out / name
        try:
            m = json.loads((run / "metrics.json").read_text())
            wall = json.loads((out / "logs" / f"{name}.wall.json").read_text())
        except (OSError, ValueError):
            lines.append(f"{name:<28} (no metrics)")
            continue
        last = m["tasks"][-1]
        both = last.get("both", {"per_class": last["per_class"], "average": last["average"]})
        second = last.get("second", {}).get("average")
        lines.append(f"{name:<28}{wall['seconds']:>8.0f}{100 * last['average']:>7.1f}"
                     f"{100 * second if second is not None else float('nan'):>7.1f}{100 * both['average']:>7.1f}"
                     f"{100 * min(both['per_class'].values()):>8.1f}{m['fid']['overall'] or float('nan'):>8.1f}  "
                     + " ".join(f"{100 * v:.0f}" for v in both["per_class"].values())
                     + ("" if wall.get("complete") else f"  (stopped after task {last['task']})"))
    return lines


def results_table(out: Path, tasks: int) -> list[str]:
    """Markdown: a row per strategy (EWC per lambda), the evaluators' accuracy after the last task as mean and
    range over the seeds found, the lowest class under both, FID and training time."""
    import re
    import statistics

    found = {}
    for metrics in sorted(out.glob(f"*-t{tasks}-s*/metrics.json")):
        name = metrics.parent.name
        key, seed = re.fullmatch(rf"(.+)-t{tasks}-s(\d+)", name).groups()
        m = json.loads(metrics.read_text())
        wall = json.loads((out / "logs" / f"{name}.wall.json").read_text())
        if not wall.get("complete"):
            continue
        last = m["tasks"][-1]
        found.setdefault(key, []).append({
            "seed": int(seed), "cnn": 100 * last["average"], "mlp": 100 * last["second"]["average"],
            "low": 100 * min(last["both"]["per_class"].values()), "fid": m["fid"]["overall"],
            "seconds": wall["seconds"], "threads": wall.get("threads")})

    def cell(rows, key, digits=1):
        values = [r[key] for r in rows]
        mean = statistics.fmean(values)
        return f"{mean:.{digits}f}" + (f" ({min(values):.{digits}f}-{max(values):.{digits}f})" if len(values) > 1
                                       else "")

    lines = [f"| {tasks} tasks | seeds | cnn32 | mlp32 | lowest class (both) | FID | train time (s) |",
             "|---|---|---|---|---|---|---|"]
    for key, rows in found.items():
        lines.append(f"| {key} | {','.join(str(r['seed']) for r in rows)} | {cell(rows, 'cnn')} | {cell(rows, 'mlp')} | "
                     f"{cell(rows, 'low')} | {cell(rows, 'fid')} | {cell(rows, 'seconds', 0)} |")
    return lines


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_job"]:
        name, out, train_args, eval_args = json.loads(argv[1])
        return job(name, Path(out), train_args, eval_args)
    if argv[:1] == ["table"]:   # python scripts/experiments.py table OUT TASKS
        print("\n".join(results_table(Path(argv[1]), int(argv[2]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plan", choices=sorted(PLANS))
    p.add_argument("--out", default="experiments")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--threads", type=int, default=None, help="threads per run (default: cores / jobs)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--eval-samples", type=int, default=6400)
    p.add_argument("--only", default=None, help="comma-separated run names (default: the whole plan)")
    p.add_argument("--extra", default="", help="more train.py arguments for every run (space-separated)")
    p.add_argument("--deadline", type=float, default=None, help="seconds after which runs are stopped")
    args = p.parse_args(argv)
    rows = PLANS[args.plan]()
    if args.only:
        wanted, known = args.only.split(","), dict(rows)
        unknown = [n for n in wanted if n not in known]
        if unknown:
            p.error(f"no run named {', '.join(unknown)} in plan {args.plan}")
        rows = [(n, known[n]) for n in wanted]   # in the order asked for
    rows = [(n, a + args.extra.split()) for n, a in rows]
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    out = Path(args.out)
    run_plan(rows, out, args.jobs, threads, args.device, args.eval_samples, args.deadline)
    text = "\n".join(summary(out, [n for n, _ in rows]))
    print(text)
    (out / f"summary-{args.plan}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
