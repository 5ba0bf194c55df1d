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
from .records import Metrics, RecordError, RunRecord, StrategyInfo
from .runs import RunFolder, hub_blob
from .tables import comparison_rows, per_class_rows, render

log = logging.getLogger("mergan.demo")

TRAIN_HINT = ("Train some runs first, e.g. `python train.py --strategy sft --preset quick --classes 0,1,2,3,4 "
              "--out assets/runs/mnist-sft` (then `--strategy ra` and `--strategy jtr`), or point the demo at "
              "your runs: `python demo_app.py --runs DIR` (or `MERGAN_RUNS=DIR`).")



# ----------------------------------------------------------------------------------------------- discovery
@dataclass
class Run:
    """One run folder: its record (settings, the strategy's identity) and the generator of every task it has
    finished, loaded once."""
    name: str
    path: Path
    record: RunRecord
    generators: dict[int, torch.nn.Module] = field(default_factory=dict)

    @property
    def info(self) -> StrategyInfo:
        return self.record.strategy

    @property
    def strategy(self) -> str:
        return self.record.strategy.name

    @property
    def dataset(self) -> str:
        return self.record.config.dataset

    @property
    def classes(self) -> list[str]:
        return self.record.config.classes

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)


ROLE_ORDER = {"lower bound": 0, "mergan": 1, "baseline": 2, "upper bound": 3}


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

    def strategies(self, *roles: str) -> list[str]:
        """The experiment's strategies (of ``roles``, if given): what forgets, what remembers, the baselines,
        the upper bound; each group in the paper's column order, MeRGAN's from its last column (the paper's
        headline, RA) back."""
        found = [s for s, r in self.runs.items() if not roles or r.info.role in roles]

        def key(s):
            info = self.runs[s].info
            return ROLE_ORDER.get(info.role, 9), -info.order if info.role == "mergan" else info.order, s
        return sorted(found, key=key)

    def first(self, *roles: str) -> str | None:
        found = self.strategies(*roles)
        return found[0] if found else None


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
MAX_PICTURE_BYTES = 20_000_000


def _short(text: str, n: int = MAX_MESSAGE) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _load_run(folder: Path, messages: list[str]) -> Run | None:
    run_folder = RunFolder(folder)
    try:
        record = run_folder.read_record()
        if len(record.config.classes) > MAX_CLASSES:
            raise RecordError(f"it has {len(record.config.classes)} classes, more than the {MAX_CLASSES} shown")
    except (OSError, RecordError) as e:
        messages.append(_short(f"skipped `{rel(folder)}`: {e}"))
        return None
    run = Run(folder.name, folder, record)
    files = run_folder.task_files()
    if not files:
        messages.append(f"skipped `{rel(folder)}`: no task_XX.safetensors yet (still training?)")
        return None
    for t, path in files[:MAX_CLASSES]:
        try:
            run_folder.read_task(t, record)
            G, _ = load_generator(path)
        except CheckpointError as e:
            messages.append(_short(f"skipped `{rel(path)}`: {e}"))
            continue
        run.generators[t] = G
    if not run.generators:
        messages.append(f"skipped `{rel(folder)}`: none of its checkpoints could be loaded")
        return None
    return run


def discover(runs_dir: str | Path) -> Catalog:
    """Load every run under ``runs_dir`` (the folder itself or its sub-folders; or a Hub repository of them,
    ``owner/name[@revision]``, through huggingface_hub's cache: ``mergan.hub``) and group them into experiments."""
    from .hub import HubError, local_folder

    messages: list[str] = []
    try:
        runs_dir = local_folder(runs_dir, nested=True)
    except HubError as e:
        return Catalog([], [_short(str(e))], Path(str(runs_dir)))
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
    # The richest experiment (forgetting beside remembering) first.
    ordered = sorted(experiments.values(), key=lambda e: (-bool(e.strategies("lower bound")), -len(e.runs), e.name))
    if not ordered:
        messages.append(f"no usable runs in `{rel(runs_dir)}`. {TRAIN_HINT}")
    return Catalog(ordered, messages, runs_dir)


# ------------------------------------------------------------------------------------------------ verdicts
VERDICT_SAMPLES = 64   # images scored per verdict: the first n of them are the ones shown (mergan.sampling)


def find_evaluator(exp: Experiment):
    """The evaluator of the experiment's data if one is shipped or cached (never trained here), else None."""
    from .classifier import find_classifier

    run = next(iter(exp.runs.values()))
    G = next(iter(run.generators.values()))
    return find_classifier(run.record.config.data_source.subset(exp.classes), G.size, G.channels)


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
def metrics_of(run: Run) -> Metrics | None:
    """The run's evaluation, or None if it has none (or an unusable one)."""
    try:
        return run.folder.read_metrics() if run.folder.has_metrics() else None
    except (OSError, RecordError) as e:
        log.warning("%s", _short(str(e)))
        return None


def numbers(exp: Experiment | None):
    """The experiment's evaluated runs side by side (``tables.comparison_rows``) and per class.

    Returns ``(markdown, plots)``: the tables (or a note on how to make them) and ``[(image, caption)]`` of the
    runs' forgetting grids.
    """
    if exp is None:
        return f"No runs loaded. {TRAIN_HINT}", []
    strategies = exp.strategies()
    metrics = {s: m for s in strategies if (m := metrics_of(exp.runs[s])) is not None}
    plots = []   # as images, not paths: gradio serves files only from the working and temporary folders
    for s in strategies:
        path = exp.runs[s].folder.picture_path("forgetting_grid")
        if path.is_file() and (not path.is_symlink() or hub_blob(path)) and path.stat().st_size <= MAX_PICTURE_BYTES:
            try:
                with Image.open(path) as im:
                    if im.width * im.height <= MAX_PICTURE:
                        plots.append((im.convert("RGB"), f"{exp.runs[s].info.short}: every class after every task"))
            except (OSError, Image.DecompressionBombError) as e:
                log.warning("cannot read %s: %s", path, e)
    missing = [s for s in strategies if s not in metrics]
    note = ""
    if missing:
        cmds = "; ".join(f"`python train.py --test --out {rel(exp.runs[s].path)}`" for s in missing)
        note = f"No metrics.json yet for {', '.join(exp.runs[s].info.short for s in missing)}. Produce it with {cmds}."
    if not metrics:
        return note, plots
    runs = list(metrics.values())
    header, rows = comparison_rows(runs)
    pc_header, pc_rows = per_class_rows(runs, exp.classes)
    lines = ["**Average classification accuracy (%)** of generated samples over the classes seen so far (the "
             "paper's Table 1 metric), and the variety of the last generators", "", render(header, rows, "markdown"),
             "", "**Each class after the last task**: accuracy (%, the stricter of the two evaluators) / recall",
             "", render(pc_header, pc_rows, "markdown")]
    if note:
        lines += ["", note]
    return "\n".join(lines), plots


def lowest_class(exp: Experiment, strategy: str) -> str | None:
    """The class the run keeps worst after its last evaluated task (lower of the two evaluators if present)."""
    run = exp.runs.get(strategy)
    m = metrics_of(run) if run else None
    if m is None:
        return None
    scores = {c: v for c, v in m.final.strict.per_class.items() if c in exp.classes}
    return min(scores, key=scores.get) if scores else None


def accuracy_curves(exp: Experiment | None) -> list[dict]:
    """Rows (after task, accuracy in %, strategy) of each run's average accuracy after every task, for one plot;
    a strategy that learns every class in one task, as a flat line across the tasks (the ceiling)."""
    rows = []
    if exp is None:
        return rows
    for s in exp.strategies():
        m = metrics_of(exp.runs[s])
        if m is None:
            continue
        info = exp.runs[s].info
        if info.one_task:
            value = 100 * m.final.main.average
            rows += [{"after task": t, "accuracy (%)": value, "strategy": f"{info.short} (ceiling)"}
                     for t in range(exp.n_tasks)]
            continue
        rows += [{"after task": t.task, "accuracy (%)": 100 * t.main.average, "strategy": info.short}
                 for t in m.tasks if 0 <= t.task < exp.n_tasks]
    return rows


def curve_colors(exp: Experiment | None) -> dict[str, str]:
    """Each curve's colour, as each strategy declares it."""
    if exp is None:
        return {}
    return {(r.info.short + (" (ceiling)" if r.info.one_task else "")): r.info.color for r in exp.runs.values()}


def budget_note(exp: Experiment) -> str:
    """How these generators were trained, beside the paper's budget, so a CPU-sized run is read as one."""
    if not exp.runs:
        return ""
    cfg = next(iter(exp.runs.values())).record.config
    iters, dim, batch = cfg.iters, cfg.model["dim"], cfg.batch_size
    game = ("WGAN-GP, 5 critic steps per update" if (cfg.loss, cfg.critic_iters) == ("wgan-gp", 5) else
            f"{'non-saturating loss with R1' if cfg.loss == 'ns-r1' else cfg.loss}, {cfg.critic_iters} critic step(s) "
            f"per update" + (", weight average delivered" if cfg.ema else ""))
    note = f"These generators: {iters} generator updates per task, network width {dim}, batch {batch}, {game}"
    if exp.dataset == "mnist" and (iters < 4000 or dim < 32 or batch < 64 or game.startswith("non")):
        note += (" (the paper: 4,000 updates, width 32, batch 64, WGAN-GP with 5 critic steps): a CPU-sized "
                 "setting, not the paper's. Their measured accuracy is in the Numbers tab.")
    return f"*{note}*"
