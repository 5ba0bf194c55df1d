"""What a folder of runs holds, for the demo: its runs grouped into experiments (one dataset and class order,
one run per strategy), each generator loaded once through ``mergan.load_generator``, and their numbers.

Problems never raise: each becomes a line in ``Catalog.messages`` and the rest still loads.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .checkpoints import CheckpointError, load_generator
from .config import DEFAULTS
from .naming import ordered, percent, short
from .runs import RunFolder

log = logging.getLogger("mergan.demo")

TRAIN_HINT = ("Train some runs first, e.g. `python train.py --strategy sft --preset quick --classes 0,1,2,3,4 "
              "--out assets/runs/mnist-sft` (then `--strategy ra` and `--strategy jtr`), or point the demo at "
              "your runs: `python demo_app.py --runs DIR` (or `MERGAN_RUNS=DIR`).")



# ----------------------------------------------------------------------------------------------- discovery
@dataclass
class Run:
    """One run folder: its settings and the generator of every task it has finished, loaded once."""
    name: str
    path: Path
    strategy: str
    dataset: str
    classes: list[str]
    generators: dict[int, torch.nn.Module] = field(default_factory=dict)
    data_source: str = ""


@dataclass
class Experiment:
    """Runs on the same dataset and class order, one per strategy."""
    dataset: str
    classes: list[str]
    runs: dict[str, Run] = field(default_factory=dict)
    evaluator: object | None = None    # the shipped (or cached) classifier of the runs' data, for verdicts

    @property
    def name(self) -> str:
        return f"{self.dataset}: classes {', '.join(self.classes)}"

    @property
    def n_tasks(self) -> int:
        return len(self.classes)


@dataclass
class Catalog:
    experiments: list[Experiment]
    messages: list[str]
    runs_dir: Path

    def get(self, name: str | None) -> Experiment | None:
        for e in self.experiments:
            if e.name == name:
                return e
        return self.experiments[0] if self.experiments and name is None else None


def rel(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# A runs folder may come from anywhere (a Space serving a repository, --runs DIR): what one run may ask of the demo.
MAX_CLASSES = 20        # classes (= tasks) per run shown; the paper's largest has 10
MAX_MESSAGE = 300       # characters of one message (a crafted value is not echoed in full)
MAX_PICTURE = 4_000_000  # pixels of a run's picture shown


def _short(text: str, n: int = MAX_MESSAGE) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _load_run(folder: Path, messages: list[str]) -> Run | None:
    try:
        cfg = RunFolder(folder).read_config()
        classes = cfg["classes"]
        if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
            raise ValueError(f"'classes' must be a list of 1 to {MAX_CLASSES} names")
        run = Run(folder.name, folder, _short(cfg["strategy"], 40), _short(cfg["dataset"], 40),
                  [_short(c, 40) for c in classes], data_source=str(cfg.get("data_source", "")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        messages.append(_short(f"skipped `{rel(folder)}`: its config.json is unusable ({type(e).__name__}: {e})"))
        return None
    files = RunFolder(folder).task_files()
    if not files:
        messages.append(f"skipped `{rel(folder)}`: no task_XX.safetensors yet (still training?)")
        return None
    for t, path in files:
        try:
            G, meta = load_generator(path)
        except CheckpointError as e:
            messages.append(_short(f"skipped `{rel(path)}`: {e}"))
            continue
        expected = run.classes[: t + 1]   # a joint run's one task is its last
        got = [str(c) for c in meta.get("classes", [])]
        if meta.get("dataset") != run.dataset or got != expected or meta.get("task") != t:
            messages.append(_short(f"skipped `{rel(path)}`: it holds dataset {meta.get('dataset')}, task "
                                   f"{meta.get('task')}, classes {','.join(got)}, but its run's config.json says "
                                   f"dataset {run.dataset}, task {t}, classes {','.join(expected)}; it belongs to "
                                   f"another run"))
            continue
        run.generators[t] = G
    if not run.generators:
        messages.append(f"skipped `{rel(folder)}`: none of its checkpoints could be loaded")
        return None
    return run


def discover(runs_dir: str | Path) -> Catalog:
    """Load every run under ``runs_dir`` (the folder itself or its sub-folders) and group them into experiments."""
    runs_dir = Path(runs_dir)
    messages: list[str] = []
    if not runs_dir.is_dir():
        return Catalog([], [f"no runs folder `{rel(runs_dir)}`. {TRAIN_HINT}"], runs_dir)
    folders = [runs_dir] if RunFolder(runs_dir).has_config() else []
    folders += sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    experiments: dict[tuple, Experiment] = {}
    for folder in folders:
        if not RunFolder(folder).has_config():
            if RunFolder(folder).task_files():
                messages.append(f"skipped `{rel(folder)}`: task files but no config.json (not a train.py run)")
            continue
        run = _load_run(folder, messages)
        if run is None:
            continue
        exp = experiments.setdefault((run.dataset, tuple(run.classes)), Experiment(run.dataset, run.classes))
        if run.strategy in exp.runs:
            kept = exp.runs[run.strategy]
            messages.append(f"`{rel(folder)}` is a second {run.strategy} run of {exp.name}; showing "
                            f"`{rel(kept.path)}`")
            continue
        exp.runs[run.strategy] = run
    for exp in experiments.values():
        exp.evaluator = find_evaluator(exp)
    # The richest experiment (the SFT-vs-MeRGAN comparison) first.
    ordered = sorted(experiments.values(), key=lambda e: (-("sft" in e.runs), -len(e.runs), e.name))
    if not ordered:
        messages.append(f"no usable runs in `{rel(runs_dir)}`. {TRAIN_HINT}")
    return Catalog(ordered, messages, runs_dir)


# ------------------------------------------------------------------------------------------------ verdicts
VERDICT_SAMPLES = 64   # images scored per verdict: the first n of them are the ones shown (mergan.sampling)


def find_evaluator(exp: Experiment):
    """The evaluator of the experiment's data if one is shipped or cached (never trained here), else None."""
    from .classifier import CACHE, SHIPPED, EvaluationError, cache_name, load_classifier

    run = next(iter(exp.runs.values()))
    G = next(iter(run.generators.values()))
    name = cache_name(exp.dataset, run.data_source, G.size, G.channels)
    for folder in (SHIPPED, CACHE):
        if (folder / name).is_file():
            try:
                ev = load_classifier(folder / name)
            except EvaluationError as e:
                log.warning("%s", _short(str(e)))
                return None
            return ev if all(c in ev.classes for c in exp.classes) else None
    return None


def verdict(exp: Experiment, strategy: str, task: int, class_name: str, seed: int) -> str | None:
    """What the run's generator draws when asked for ``class_name`` after ``task``, in the evaluator's words:
    "draws 0s: 97% recognised as 0", or "asked for 0, draws 4s: 0% recognised as 0". None without an evaluator
    or a generator."""
    from collections import Counter

    from .sampling import sample

    run, ev = exp.runs.get(strategy), exp.evaluator
    if ev is None or run is None or task not in run.generators:
        return None
    images = sample(run.generators[task], [exp.classes.index(class_name)] * VERDICT_SAMPLES, seed=seed)
    names = [ev.classes[i] for i in ev.run(images)[0].tolist()]
    share = names.count(class_name) / len(names)
    top = Counter(names).most_common(1)[0][0]
    drawn = f"draws {class_name}s" if top == class_name else f"asked for {class_name}, draws {top}s"
    return f"{drawn}: {share:.0%} recognised as {class_name}"


# ------------------------------------------------------------------------------------------------- numbers
def _read_metrics(run: Run) -> dict | None:
    try:
        m = RunFolder(run.path).read_metrics()
        return m if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _headline(value, keys) -> float | None:
    """A number, or the first of ``keys`` in a dict that is one."""
    if isinstance(value, dict):
        return next((v for k in keys if (v := _num(value.get(k))) is not None), None)
    return _num(value)


def numbers(exp: Experiment | None):
    """Table 1-style accuracies of every run in the experiment that has a metrics.json.

    Returns ``(markdown, plots)``: the table (or a note on how to make it) and ``[(path, caption)]`` of the
    runs' accuracy.png plots.
    """
    if exp is None:
        return f"No runs loaded. {TRAIN_HINT}", []
    strategies = ordered(exp.runs)
    metrics = {s: m for s in strategies if (m := _read_metrics(exp.runs[s])) is not None}
    plots = []   # as images, not paths: gradio serves files only from the working and temporary folders
    for s in strategies:
        path = exp.runs[s].path / "forgetting_grid.png"
        if path.is_file():
            try:
                with Image.open(path) as im:
                    if im.width * im.height <= MAX_PICTURE:
                        plots.append((im.convert("RGB"), f"{short(s)}: every class after every task"))
            except OSError as e:
                log.warning("cannot read %s: %s", path, e)
    missing = [s for s in strategies if s not in metrics]
    note = ""
    if missing:
        cmds = "; ".join(f"`python train.py --test --out {rel(exp.runs[s].path)}`" for s in missing)
        note = f"No metrics.json yet for {', '.join(short(s) for s in missing)}. Produce it with {cmds}."
    if not metrics:
        return note, plots
    cols = list(metrics)
    per_task: dict[str, dict[int, dict]] = {}
    for s, m in metrics.items():
        entries = [e for e in m.get("tasks", []) if isinstance(e, dict) and isinstance(e.get("task"), int)]
        per_task[s] = {e["task"]: e for e in entries}
    head = "| after task (learned) | " + " | ".join(short(s) for s in cols) + " |"
    lines = ["**Average classification accuracy (%)** of generated samples over the classes seen so far "
             "(Table 1's metric)", "", head, "|" + " --- |" * (len(cols) + 1)]
    for t in range(exp.n_tasks):
        vals = []
        for s in cols:
            v = _num(per_task[s].get(t, {}).get("average"))
            vals.append("–" if v is None else f"{percent(v):.2f}")
        if any(v != "–" for v in vals):
            lines.append(f"| {t} ({exp.classes[t]}) | " + " | ".join(vals) + " |")
    # One number per run; the evaluation may store a summary dict (reverse accuracy's "average", FID's "overall").
    for key, title, inner in (("reverse_accuracy", "reverse accuracy (%)", ("average", "accuracy")),
                              ("fid", "FID (final generator)", ("overall",))):
        vals = [_headline(metrics[s].get(key), inner) for s in cols]
        if any(v is not None for v in vals):
            cells = ["–" if v is None else f"{v if key == 'fid' else percent(v):.2f}" for v in vals]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    # Per-class accuracy after the last evaluated task shows *where* the average goes (SFT: old classes).
    last = {s: per_task[s][max(per_task[s])] for s in cols if per_task[s]}
    pc = {s: e.get("per_class") for s, e in last.items() if isinstance(e.get("per_class"), dict)}
    if pc:
        lines += ["", "**Per-class accuracy (%) after the last evaluated task**", "",
                  "| class | " + " | ".join(short(s) for s in pc) + " |", "|" + " --- |" * (len(pc) + 1)]
        for c in exp.classes:
            vals = [_num(pc[s].get(c)) for s in pc]
            if any(v is not None for v in vals):
                lines.append(f"| {c} | " + " | ".join("–" if v is None else f"{percent(v):.2f}" for v in vals)
                             + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines), plots


def lowest_class(exp: Experiment, strategy: str) -> str | None:
    """The class the run keeps worst after its last evaluated task (lower of the two evaluators if present)."""
    run = exp.runs.get(strategy)
    m = _read_metrics(run) if run else None
    tasks = [e for e in (m or {}).get("tasks", []) if isinstance(e, dict)]
    if not tasks:
        return None
    last = tasks[-1]
    per_class = (last.get("both") or {}).get("per_class") or last.get("per_class")
    scores = {c: _num(v) for c, v in (per_class or {}).items() if c in exp.classes and _num(v) is not None}
    return min(scores, key=scores.get) if scores else None


def accuracy_curves(exp: Experiment | None) -> list[dict]:
    """Rows (after task, accuracy in %, strategy) of each run's average accuracy after every task, for one plot;
    joint training, which has one generator after all tasks, as a flat ceiling across the tasks."""
    rows = []
    if exp is None:
        return rows
    for s in ordered(exp.runs):
        m = _read_metrics(exp.runs[s])
        entries = [e for e in (m or {}).get("tasks", []) if isinstance(e, dict) and isinstance(e.get("task"), int)
                   and _num(e.get("average")) is not None]
        if s == "joint" and entries:
            value = percent(_num(entries[-1]["average"]))
            rows += [{"after task": t, "accuracy (%)": value, "strategy": "Joint (ceiling)"}
                     for t in range(exp.n_tasks)]
            continue
        rows += [{"after task": e["task"], "accuracy (%)": percent(_num(e["average"])), "strategy": short(s)}
                 for e in entries if 0 <= e["task"] < exp.n_tasks]
    return rows


def budget_note(exp: Experiment) -> str:
    """How these generators were trained, beside the paper's budget, so a CPU-sized run is read as one."""
    try:
        cfg = RunFolder(next(iter(exp.runs.values())).path).read_config()
        iters, dim, batch = cfg["iters"], cfg["model"]["dim"], cfg.get("batch_size", DEFAULTS["batch_size"])
    except (OSError, ValueError, KeyError, StopIteration):
        return ""
    loss, critic_iters = cfg.get("loss", DEFAULTS["loss"]), cfg.get("critic_iters", DEFAULTS["critic_iters"])
    game = ("WGAN-GP, 5 critic steps per update" if (loss, critic_iters) == ("wgan-gp", 5) else
            f"{'non-saturating loss with R1' if loss == 'ns-r1' else loss}, {critic_iters} critic step(s) per update"
            + (", weight average delivered" if cfg.get("ema") else ""))
    note = f"These generators: {iters} generator updates per task, network width {dim}, batch {batch}, {game}"
    if exp.dataset == "mnist" and (iters < 4000 or dim < 32 or batch < 64 or game.startswith("non")):
        note += (" (the paper: 4,000 updates, width 32, batch 64, WGAN-GP with 5 critic steps): a CPU-sized "
                 "setting, not the paper's. Their measured accuracy is in the Numbers tab.")
    return f"*{note}*"
