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
from .records import RecordError, RunRecord, StrategyInfo
from .scores import Metrics
from .runs import RunFolder, hub_blob

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
    _evaluation: tuple | None = field(default=None, repr=False)   # (Metrics or None, problem or None), read once

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
    views: dict = field(default_factory=dict, repr=False, compare=False)   # what a view decided once (the lesson)

    @property
    def name(self) -> str:
        return f"{self.dataset}: classes {', '.join(self.classes)}"

    @property
    def n_tasks(self) -> int:
        return len(self.classes)

    def strategies(self, *roles: str) -> list[str]:
        """The experiment's strategies (of ``roles``, if given): what forgets, what remembers, the baselines,
        the upper bound; each group in the paper's column order, MeRGAN's from its last column (the paper's
        headline, RA) back, then what the paper has no column for."""
        found = [s for s, r in self.runs.items() if not roles or r.info.role in roles]

        def key(s):
            info = self.runs[s].info
            return (ROLE_ORDER.get(info.role, 9), info.paper_column is None,
                    -info.order if info.role == "mergan" else info.order, s)
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


# A runs folder may come from anywhere (a Space serving a repository, --runs DIR): what one folder may ask of the
# demo. Every file it reads is checked to be a plain file within these sizes before it is opened.
MAX_RUNS = 100                  # run folders looked at; the paper's experiments need six
MAX_CLASSES = 20                # classes (= tasks) per run shown; the paper's largest has 10
MAX_MESSAGE = 300               # characters of one message (a crafted value is not echoed in full)
MAX_PICTURE = 4_000_000         # pixels of a run's picture shown (per frame of the GIF)
MAX_PICTURE_BYTES = 20_000_000
MAX_GIF_FRAMES = 100            # the evaluation's GIF has a frame per task
MAX_GENERATOR_BYTES = 64 << 20  # a task file; the paper's widest (LSUN, width 64) is far below
MAX_LOADED_BYTES = 1 << 30      # all generators together
MAX_LIVE_BYTES = 256 << 20      # a run's live.safetensors (raw generator and critic, float16)


def _short(text: str, n: int = MAX_MESSAGE) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def plain_file(path: Path, limit: int) -> str | None:
    """Why the demo will not read ``path`` (not a plain file, a link, larger than ``limit`` bytes), or None."""
    try:   # a run fetched from the Hub reads through the cache's links to its blobs (``runs.hub_blob``)
        if (path.is_symlink() and not hub_blob(path)) or not path.is_file():
            return "not a plain file"
        size = path.stat().st_size
    except OSError as e:
        return f"unreadable ({type(e).__name__})"
    return f"{_size(size)}, more than the {_size(limit)} the demo reads" if size > limit else None


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _load_run(folder: Path, messages: list[str], budget: list[int]) -> Run | None:
    run_folder = RunFolder(folder)
    try:
        record = run_folder.read_record()
        if len(record.config.classes) > MAX_CLASSES:
            raise RecordError(f"it has {len(record.config.classes)} classes, more than the {MAX_CLASSES} shown")
    except (OSError, RecordError) as e:
        messages.append(_short(f"skipped `{rel(folder)}`: {e}"))
        return None
    run = Run(folder.name, folder, record)
    n_tasks = len(record.config.classes)
    files = run_folder.task_files()
    extra = [p for t, p in files if t >= n_tasks]
    files = [(t, p) for t, p in files if t < n_tasks]
    if extra:   # one line however many there are
        messages.append(_short(f"`{rel(folder)}`: ignored {len(extra)} task file(s) beyond its {n_tasks} classes "
                               f"({extra[0].name}{' … ' + extra[-1].name if len(extra) > 1 else ''})"))
    if not files:
        messages.append(f"skipped `{rel(folder)}`: no task_XX.safetensors yet (still training?)")
        return None
    for t, path in files:
        why = plain_file(path, MAX_GENERATOR_BYTES)
        if why is None and path.stat().st_size > budget[0]:
            why = f"the demo has loaded {MAX_LOADED_BYTES >> 20} MB of generators already"
        if why:
            messages.append(_short(f"skipped `{rel(path)}`: {why}"))
            continue
        try:
            run_folder.read_task(t, record)
            G, _ = load_generator(path)
        except CheckpointError as e:
            messages.append(_short(f"skipped `{rel(path)}`: {e}"))
            continue
        budget[0] -= path.stat().st_size
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
    try:
        folders += sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        messages.append(_short(f"cannot list `{rel(runs_dir)}` ({type(e).__name__})"))
    if len(folders) > MAX_RUNS:
        messages.append(f"`{rel(runs_dir)}` holds {len(folders)} folders; showing the first {MAX_RUNS} (by name)")
        folders = folders[:MAX_RUNS]
    experiments: dict[tuple, Experiment] = {}
    budget = [MAX_LOADED_BYTES]
    for folder in folders:
        if not RunFolder(folder).has_config():
            if RunFolder(folder).task_files():
                messages.append(f"skipped `{rel(folder)}`: task files but no config.json (not a train.py run)")
            continue
        run = _load_run(folder, messages, budget)
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
    """The run's evaluation (read once), or None if it has none or an unusable one (``metrics_problem``)."""
    return _evaluation(run)[0]


def metrics_problem(run: Run) -> str | None:
    """Why the run's ``metrics.json`` exists but is not shown, in one line, or None."""
    return _evaluation(run)[1]


def _evaluation(run: Run) -> tuple[Metrics | None, str | None]:
    if run._evaluation is None:
        path = run.folder.metrics_path
        if not path.exists() and not path.is_symlink():
            run._evaluation = None, None
        else:
            try:
                run._evaluation = run.folder.read_metrics(), None   # checked: a plain file of bounded size
            except (OSError, RecordError) as e:
                run._evaluation = None, _short(f"`{rel(path)}` is not shown: {e}")
                log.warning("%s", run._evaluation[1])
    return run._evaluation


@dataclass
class Pictures:
    """A run's pictures of forgetting (``train.py --test`` writes them): the grid of every class after every task
    (PIL, or None) and the GIF of the same (a copy in the demo's own folder, or None), each checked first."""
    grid: Image.Image | None = None
    gif: Path | None = None


def read_bounded(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of a plain file, or None if it is not one or is larger (checked before and while
    reading, so a file that grows or is swapped for a link meanwhile is not read past the limit)."""
    if plain_file(path, limit):
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def _picture(data: bytes | None, fmt: str, max_frames: int = 1) -> Image.Image | None:
    """The decoded picture if ``data`` is one of format ``fmt`` within the size bounds (every frame), else None."""
    import io
    import warnings

    if data is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.format != fmt or im.width * im.height > MAX_PICTURE or getattr(im, "n_frames", 1) > max_frames:
                return None
            im.load()
            return im
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None


def pictures_of(run: Run, out_dir: Path | None = None) -> Pictures:
    """The run's forgetting grid (``forgetting_grid.png``) and, when ``out_dir`` is given, a checked copy of its
    ``forgetting.gif`` there (the page serves files only from folders it owns). Unusable files are skipped with
    a line in the log."""
    found = Pictures()
    grid_path, gif_path = run.folder.picture_path("forgetting_grid"), run.folder.picture_path("forgetting_gif")
    if grid_path.exists():
        im = _picture(read_bounded(grid_path, MAX_PICTURE_BYTES), "PNG")
        found.grid = im.convert("RGB") if im is not None else None
        if found.grid is None:
            log.warning("%s", _short(f"`{rel(grid_path)}` is not shown: not a PNG within {MAX_PICTURE:,} pixels"))
    if out_dir is not None and gif_path.exists():
        data = read_bounded(gif_path, MAX_PICTURE_BYTES)
        if _picture(data, "GIF", MAX_GIF_FRAMES) is None:
            log.warning("%s", _short(f"`{rel(gif_path)}` is not shown: not a GIF of at most {MAX_GIF_FRAMES} frames "
                                     f"of {MAX_PICTURE:,} pixels"))
        else:
            from .checkpoints import atomic_write

            out = Path(out_dir) / f"{run.strategy}-{run.record.run_id}-forgetting.gif"
            atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
            found.gif = out
    return found


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


def _budget(cfg) -> tuple[str, bool]:
    """One run's budget in words, and whether it is smaller than the paper's (MNIST: 4,000 updates per task, width
    32, batch 64, WGAN-GP with 5 critic steps)."""
    iters, dim, batch = cfg.iters, cfg.model["dim"], cfg.batch_size
    game = ("WGAN-GP, 5 critic steps per update" if (cfg.loss, cfg.critic_iters) == ("wgan-gp", 5) else
            f"{'non-saturating loss with R1' if cfg.loss == 'ns-r1' else cfg.loss}, {cfg.critic_iters} critic step(s) "
            f"per update" + (", weight average delivered" if cfg.ema else ""))
    text = f"{iters} generator updates per task, network width {dim}, batch {batch}, {game}"
    return text, iters < 4000 or dim < 32 or batch < 64 or game.startswith("non")


def budget_note(exp: Experiment) -> str:
    """How these generators were trained, beside the paper's budget, so a CPU-sized run is read as one: one line
    when every run had the same budget, else each budget with the runs that had it (in the experiment's order)."""
    if not exp.runs:
        return ""
    budgets: dict[str, list[str]] = {}
    smaller = False
    for run in exp.runs.values():
        text, small = _budget(run.record.config)
        budgets.setdefault(text, []).append(run.info.short)
        smaller |= small
    if len(budgets) == 1:
        note = f"These generators: {next(iter(budgets))}"
    else:
        note = "These generators: " + "; ".join(f"{' and '.join(names)}: {text}" for text, names in budgets.items())
    if exp.dataset == "mnist" and smaller:
        note += (" (the paper: 4,000 updates, width 32, batch 64, WGAN-GP with 5 critic steps): a CPU-sized "
                 "setting, not the paper's. Their measured accuracy is in the Numbers tab.")
    return f"*{note}*"
