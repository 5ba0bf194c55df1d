"""Run a named plan of training runs in parallel, evaluate each with both evaluators, print one table.

    python scripts/experiments.py ablation --jobs 2 --out experiments        # the README's ablation rows (CPU)
    python scripts/experiments.py results --jobs 12 --device cuda --out exp  # every strategy, 5 and 10 tasks, 2 seeds
    python scripts/experiments.py paper --jobs 8 --device cuda --out exp     # the paper's recipe, Table 1 (GPU)

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
sys.path.insert(0, str(REPO))   # the package, for reading the runs' metrics
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
            for strategy in ("sft", "ra", "jtr", "jtr-ra", "joint", "dgr"):
                rows.append((f"{strategy}-t{n}-s{seed}", ["--strategy", strategy, "--preset", preset, "--classes",
                                                          classes, "--seed", str(seed)]))
            for lam in ewc_lambdas:
                rows.append((f"ewc{lam}-t{n}-s{seed}", ["--strategy", "ewc", "--preset", preset, "--classes",
                                                        classes, "--seed", str(seed), "--ewc-lambda", lam]))
    return rows


def paper_rows() -> list[tuple[str, list[str]]]:
    """The paper's own recipe (``--preset paper``: WGAN-GP 5:1, width 32, 4,000 updates per task) on the official
    MNIST: every strategy on 5 tasks (Table 1's first row), then RA and JTR on 10 tasks."""
    rows = [(f"paper-{s}-t5", ["--strategy", s, "--preset", "paper", "--classes", D5])
            for s in ("ra", "jtr", "joint", "sft", "dgr", "ewc")]
    return rows + [(f"paper-{s}-t10", ["--strategy", s, "--preset", "paper", "--classes", D10]) for s in ("ra", "jtr")]


PLANS = {"ablation": lambda: [(n, ["--strategy", s, "--classes", D5, *a]) for s in ("ra", "jtr")
                              for n, a in [(f"{s}-{n}", a) for n, a in ablation_rows()]],
         "sweep": sweep_rows, "confirm": confirm_rows, "results": results_rows, "paper": paper_rows}


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


def _metrics(run: Path):
    from mergan.runs import RunFolder

    return RunFolder(run).read_metrics()


def summary(out: Path, names) -> list[str]:
    """A line per run: training time, accuracy after its last task by each evaluator and by the lower of the two,
    the lowest class, reverse accuracy, mean and lowest recall, FID, and each class's accuracy (lower of the two)."""
    lines = [f"{'run':<28}{'train s':>8}{'main':>7}{'second':>7}{'both':>7}{'min cls':>8}{'rev':>6}{'recall':>7}"
             f"{'min rec':>8}{'FID':>8}  per class (both)"]
    for name in names:
        try:
            m = _metrics(out / name)
            wall = json.loads((out / "logs" / f"{name}.wall.json").read_text())
        except Exception:   # a run that did not finish or was not evaluated: said, not fatal
            lines.append(f"{name:<28} (no metrics)")
            continue
        last, v = m.final, m.variety
        low = v.lowest("recall")
        lines.append(f"{name:<28}{wall['seconds']:>8.0f}{100 * last.main.average:>7.1f}"
                     f"{100 * last.second.average if last.second else float('nan'):>7.1f}"
                     f"{100 * last.strict.average:>7.1f}{100 * last.strict.lowest()[1]:>8.1f}"
                     f"{100 * v.reverse_accuracy:>6.1f}{v.mean('recall') or float('nan'):>7.2f}"
                     f"{low[1] if low else float('nan'):>8.2f}{m.fid['overall'] or float('nan'):>8.1f}  "
                     + " ".join(f"{100 * x:.0f}" for x in last.strict.per_class.values())
                     + ("" if wall.get("complete") else f"  (stopped after task {last.task})"))
    return lines


def results_table(out: Path, tasks: int) -> list[str]:
    """Markdown: a row per strategy (EWC per lambda), after the last task, as "seed 0 / seed 1 / ...": each
    evaluator's accuracy, the lowest class by the lower of the two, reverse accuracy, mean recall and the lowest
    class's recall, FID and training time."""
    import re

    found = {}
    for metrics in sorted(out.glob(f"*-t{tasks}-s*/metrics.json")):
        name = metrics.parent.name
        key, seed = re.fullmatch(rf"(.+)-t{tasks}-s(\d+)", name).groups()
        wall = json.loads((out / "logs" / f"{name}.wall.json").read_text())
        if not wall.get("complete"):
            continue
        m = _metrics(metrics.parent)
        last, v = m.final, m.variety
        low = v.lowest("recall")
        found.setdefault(key, []).append({
            "seed": int(seed), "main": 100 * last.main.average, "second": 100 * last.second.average,
            "low": 100 * last.strict.lowest()[1], "rev": 100 * v.reverse_accuracy, "recall": v.mean("recall"),
            "minrec": low[1] if low else float("nan"), "fid": m.fid["overall"], "seconds": wall["seconds"]})

    def cell(rows, key, fmt="{:.1f}"):
        return " / ".join(fmt.format(r[key]) for r in rows)

    lines = [f"| {tasks} tasks | seeds | main | second | lowest class | reverse accuracy | recall | lowest recall "
             f"| FID | train time (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, rows in found.items():
        lines.append(f"| {key} | {' / '.join(str(r['seed']) for r in rows)} | {cell(rows, 'main')} | "
                     f"{cell(rows, 'second')} | {cell(rows, 'low')} | {cell(rows, 'rev')} | "
                     f"{cell(rows, 'recall', '{:.2f}')} | {cell(rows, 'minrec', '{:.2f}')} | {cell(rows, 'fid')} | "
                     f"{cell(rows, 'seconds', '{:.0f}')} |")
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
