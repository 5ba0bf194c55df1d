"""The run folder's records as small typed dataclasses: what each file holds, checked field by field.

- ``DataSource``: which data a run (or an evaluator) saw, by content: a fingerprint of every class's images.
- ``StrategyInfo``: a strategy's identity and capabilities (``mergan.strategies`` makes it from the class);
  written with every run, so what shows or reports a run never imports training code.
- ``RunRecord``: ``config.json``, the resolved settings (``config.RunConfig``) with the run's identity.
- ``TaskMeta``: a task file's metadata, which carries the whole resolved configuration.
- ``TrainingState``: ``state.pt``, what training continues from.

Only ``mergan.runs`` and ``mergan.checkpoints`` read and write them; every reader gets these objects. A field
of the wrong type or out of range raises ``RecordError`` naming the field, so a crafted or damaged file is one
clear line, never a ``TypeError`` further on.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields

FORMAT_VERSION = 2   # of config.json, task files and state.pt; version 1 (mergan 0.1) converts with UPGRADE
UPGRADE = "python -m mergan.runs upgrade"
MAX_CLASSES = 1000       # classes of one run: what its networks' label tables may hold (models.MODEL_BOUNDS)
MAX_CLASS_NAME = 200     # characters of a class name


class RecordError(ValueError):
    """A record that is missing a field or has one of the wrong type or range; the message names it."""


# ----------------------------------------------------------------------------------------------- checks
def need(d: dict, key: str, kind, where: str, *, lo=None, hi=None, optional: bool = False):
    """``d[key]`` checked to be of ``kind`` (a type or a tuple of types; bool is never an int) and within
    [lo, hi] for numbers (and lengths of lists, strings and dicts); raises ``RecordError`` naming the field."""
    if not isinstance(d, dict):
        raise RecordError(f"{where} is not a JSON object")
    if key not in d or d[key] is None:
        if optional:
            return None
        raise RecordError(f"{where} lacks the field {key!r}")
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and float in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = math.isfinite(value)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise RecordError(f"{where}: field {key!r} is {str(value)[:40]!r}, not a finite {names}" if float in kinds
                          else f"{where}: field {key!r} is {str(value)[:40]!r}, not a {names}")
    size = len(value) if isinstance(value, (list, str, dict)) else value
    if (lo is not None and size < lo) or (hi is not None and size > hi):
        raise RecordError(f"{where}: field {key!r} is out of range ({str(value)[:40]!r}; allowed {lo} to {hi})")
    return value


def names(values, where: str, key: str, hi: int = 10_000) -> list[str]:
    """A list of distinct, non-empty class names."""
    if not isinstance(values, list) or not 1 <= len(values) <= hi or not all(
            isinstance(v, str) and 0 < len(v) <= MAX_CLASS_NAME for v in values):
        raise RecordError(f"{where}: field {key!r} must be a list of 1 to {hi} class names")
    if len(set(values)) != len(values):
        raise RecordError(f"{where}: field {key!r} repeats a class")
    return list(values)


def fingerprint(*parts: bytes | str) -> str:
    """sha256 of the parts, its first 16 hex digits: the content identity used throughout the records."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ClassData:
    images: int          # training images of the class
    fingerprint: str     # of their content (``data.py`` says how, per dataset)


@dataclass(frozen=True)
class DataSource:
    """Which data was seen, by content: ``classes[name]`` fingerprints that class's training images, so a run is
    continued, an evaluator reused, only on the same images, wherever the folder lies and whatever it is called,
    and a class added to a dataset later changes nothing for the classes already there."""

    dataset: str                       # mnist, svhn, lsun, folder
    description: str                   # one line for a person: what and where
    location: str | None               # the folder read (absolute); None: data shipped in assets/
    classes: dict[str, ClassData]      # every class loaded, by name

    @property
    def fingerprint(self) -> str:
        """Of every class's content together."""
        return fingerprint(*(f"{c}:{d.fingerprint}" for c, d in sorted(self.classes.items())))

    def subset(self, classes) -> "DataSource":
        return DataSource(self.dataset, self.description, self.location, {c: self.classes[c] for c in classes})

    def differs(self, other: "DataSource") -> str | None:
        """Why ``other`` is not the same data for the classes both have, or None (new classes are fine)."""
        if other.dataset != self.dataset:
            return f"dataset {self.dataset}, now {other.dataset}"
        for c in self.classes:
            if c in other.classes and other.classes[c] != self.classes[c]:
                return (f"the images of class {c} differ ({self.classes[c].images} images, content "
                        f"{self.classes[c].fingerprint}; now {other.classes[c].images}, {other.classes[c].fingerprint})")
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d, where: str = "data_source") -> "DataSource":
        classes = need(d, "classes", dict, where, hi=100_000)
        parsed = {}
        for name, c in classes.items():
            parsed[str(name)] = ClassData(need(c, "images", int, f"{where}.classes.{name}", lo=0),
                                          need(c, "fingerprint", str, f"{where}.classes.{name}", hi=64))
        return cls(need(d, "dataset", str, where, lo=1, hi=40), need(d, "description", str, where, hi=1000),
                   need(d, "location", str, where, hi=4096, optional=True), parsed)


# ----------------------------------------------------------------------------------------------- strategies
ROLES = ("lower bound", "mergan", "baseline", "upper bound")
DELIVERABLES = ("generator", "generator+solver")


@dataclass(frozen=True)
class StrategyInfo:
    """A strategy's identity and capabilities, as its class declares them (``mergan.strategies``)."""

    name: str                  # --strategy
    title: str                 # "MeRGAN-RA (replay alignment)"
    short: str                 # "MeRGAN-RA"
    paper_column: str | None   # the paper's Table 1 column it reproduces, None if none
    order: int                 # its place among the paper's columns (tables, plots)
    role: str                  # lower bound (forgets), mergan, baseline, upper bound (not continual)
    about: str                 # one line for a visitor
    color: str                 # its colour in plots, "#rrggbb"
    one_task: bool             # every class in one task: only the last task has a generator
    conditional: bool          # asked for a class, draws it (else unconditional: DGR's generator + solver)
    replays: bool              # replays the previous task's generator
    deliverable: str           # what its task file holds: "generator", or "generator+solver"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d, where: str = "strategy") -> "StrategyInfo":
        info = cls(need(d, "name", str, where, lo=1, hi=40), need(d, "title", str, where, hi=200),
                   need(d, "short", str, where, lo=1, hi=60), need(d, "paper_column", str, where, hi=60, optional=True),
                   need(d, "order", int, where, lo=0, hi=1000), need(d, "role", str, where),
                   need(d, "about", str, where, hi=1000), need(d, "color", str, where, hi=20),
                   need(d, "one_task", bool, where), need(d, "conditional", bool, where),
                   need(d, "replays", bool, where), need(d, "deliverable", str, where))
        if info.role not in ROLES:
            raise RecordError(f"{where}: role {info.role[:40]!r} is not one of {', '.join(ROLES)}")
        if info.deliverable not in DELIVERABLES:
            raise RecordError(f"{where}: deliverable {info.deliverable[:40]!r} is not one of {', '.join(DELIVERABLES)}")
        return info


# ----------------------------------------------------------------------------------------------- runs
@dataclass
class RunRecord:
    """``config.json``: the settings a run was started with (``config.RunConfig``), its strategy's identity, and
    ``run_id``, made once when the run starts and carried by every file the run writes."""

    config: "RunConfig"   # noqa: F821 - mergan.config.RunConfig
    strategy: StrategyInfo
    run_id: str

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "run_id": self.run_id, "strategy": self.strategy.to_dict(),
                "config": config_to_dict(self.config)}

    @classmethod
    def from_dict(cls, d, where: str = "config.json") -> "RunRecord":
        check_version(d, where)
        return cls(config_from_dict(need(d, "config", dict, where), f"{where}: config"),
                   StrategyInfo.from_dict(need(d, "strategy", dict, where), f"{where}: strategy"),
                   need(d, "run_id", str, where, lo=1, hi=64))


def check_version(d, where: str) -> None:
    """Refuse a record of another format version; version 1 says how to convert it."""
    version = d.get("format_version", 1) if isinstance(d, dict) else None
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if version == FORMAT_VERSION:
        return
    if version == 1:
        raise RecordError(f"{where} was written by mergan 0.1 (format 1); convert its run folder with "
                          f"{UPGRADE} RUN")
    raise RecordError(f"{where} has format version {str(version)[:20]!r}, this mergan reads {FORMAT_VERSION}; use "
                      f"the mergan version that wrote it")


def config_to_dict(cfg) -> dict:
    d = asdict(cfg)
    d["data_source"] = cfg.data_source.to_dict()
    return d


def config_from_dict(d, where: str):
    """A ``RunConfig`` from its dictionary, every field checked for type (ranges: ``config.check``)."""
    from .config import RunConfig, check

    kinds = {"dataset": str, "strategy": str, "iters": int, "model": dict, "seed": int, "batch_size": int,
             "critic_iters": int, "lr": float, "beta1": float, "beta2": float, "gp_weight": float, "loss": str,
             "penalty_every": int, "ema": float, "replay_batch": int, "replay_split": str, "ra_lambda": float,
             "ewc_lambda": float, "save_every": int, "log_every": int, "sample_seed": int}
    values = {}
    for f in fields(RunConfig):
        if f.name == "classes":
            values["classes"] = names(d.get("classes") if isinstance(d, dict) else None, where, "classes")
        elif f.name == "data_source":
            values["data_source"] = DataSource.from_dict(need(d, "data_source", dict, where), f"{where}.data_source")
        else:
            kind = kinds[f.name]
            optional = f.name in ("replay_batch", "replay_split", "ra_lambda")
            v = need(d, f.name, (int, float) if kind is float else kind, where, optional=optional)
            values[f.name] = float(v) if kind is float and v is not None else v
    cfg = RunConfig(**values)
    try:
        check(cfg)
    except ValueError as e:
        raise RecordError(f"{where}: {e}") from None
    return cfg


@dataclass
class TaskMeta:
    """A task file's metadata (``task_XX.safetensors``): enough to rebuild, describe and trust its generator.

    ``config`` is the run's whole resolved configuration (RA's weight included), ``strategy`` the strategy's
    identity, ``run_id`` the run that wrote it. Files of format 1 (mergan 0.1) still load as generators, with
    ``config``, ``strategy`` and ``run_id`` None; a run folder of them converts with ``python -m mergan.runs
    upgrade RUN``."""

    task: int                      # 0-based
    classes: list[str]             # the classes learned up to this task, in task order: label i draws classes[i]
    iters: int                     # generator updates of this task
    model: dict                    # the deliverable's constructor arguments (``models.build_deliverable``)
    deliverable: str               # "generator", or "generator+solver" (DGR)
    strategy_name: str
    dataset: str
    data_source: DataSource | None
    strategy: StrategyInfo | None = None
    config: object | None = None   # config.RunConfig
    run_id: str | None = None
    format_version: int = FORMAT_VERSION

    def to_strings(self) -> dict[str, str]:
        """The safetensors metadata: every value JSON-encoded (``format`` and ``format_version`` plain)."""
        d = {"task": self.task, "classes": self.classes, "iters": self.iters, "model": self.model,
             "deliverable": self.deliverable, "strategy": self.strategy.to_dict(), "run_id": self.run_id,
             "config": config_to_dict(self.config)}
        return {k: json.dumps(v, sort_keys=True) for k, v in d.items()}

    @classmethod
    def from_strings(cls, raw: dict[str, str], where: str) -> "TaskMeta":
        version = raw.get("format_version")
        if version == "1":
            return cls._from_v1(raw, where)
        check_version({"format_version": version}, where)
        d = {}
        for k, v in raw.items():
            if k in ("format", "format_version"):
                continue
            try:
                d[k] = json.loads(v)
            except json.JSONDecodeError:
                raise RecordError(f"{where}: metadata {k!r} is not JSON; the file is corrupt") from None
        config = config_from_dict(need(d, "config", dict, where), f"{where}: config")
        task = need(d, "task", int, where, lo=0, hi=9999)
        classes = names(d.get("classes"), where, "classes")
        if len(classes) != task + 1 or classes != config.classes[: task + 1]:
            raise RecordError(f"{where}: its classes {','.join(classes)[:60]} do not fit task {task} of its run's "
                              f"classes {','.join(config.classes)[:60]}")
        deliverable = need(d, "deliverable", str, where)
        if deliverable not in DELIVERABLES:
            raise RecordError(f"{where}: deliverable {deliverable[:40]!r} is not one of {', '.join(DELIVERABLES)}")
        strategy = StrategyInfo.from_dict(need(d, "strategy", dict, where), f"{where}: strategy")
        return cls(task, classes, need(d, "iters", int, where, lo=1), need(d, "model", dict, where), deliverable,
                   strategy.name, config.dataset, config.data_source, strategy, config,
                   need(d, "run_id", str, where, lo=1, hi=64))

    @classmethod
    def _from_v1(cls, raw: dict, where: str) -> "TaskMeta":
        """mergan 0.1's metadata: strings, or JSON for lists and dicts."""
        d = {}
        for k, v in raw.items():
            try:
                d[k] = json.loads(v)
            except json.JSONDecodeError:
                d[k] = v
        model = need(d, "model", dict, where)
        task = need(d, "task", int, where, lo=0, hi=9999)
        classes = names(d.get("classes"), where, "classes")
        if len(classes) != task + 1:
            raise RecordError(f"{where}: holds task {task} but {len(classes)} classes")
        source = d.get("data_source")
        dataset = need(d, "dataset", str, where, lo=1, hi=40)
        return cls(task, [str(c) for c in classes], need(d, "iters", int, where, lo=1), model,
                   "generator+solver" if model.get("replay") == "dgr" else "generator",
                   need(d, "strategy", str, where, lo=1, hi=40), dataset,
                   DataSource(dataset, str(source)[:1000], None, {}), format_version=1)


@dataclass
class TrainingState:
    """``state.pt``: where training stands and what it continues from (weights, optimisers, random numbers)."""

    run_id: str
    task: int
    iteration: int                 # iterations of ``task`` done
    task_done: bool
    G: dict                        # the raw generator's state dict
    D: dict
    G_ema: dict | None
    opt_G: dict | None             # None at a task's end: the next task starts fresh optimisers
    opt_D: dict | None
    rng: list                      # one random-number state per process
    strategy: dict                 # the strategy's own tensors (EWC's Fisher and anchor)
    scaler: dict | None            # fp16's loss scaler
    drawn: list | None = None      # per process: the fingerprint of the real batches it drew in this task
    format_version: int = FORMAT_VERSION

    @property
    def processes(self) -> int:
        return len(self.rng)

    @property
    def tasks_done(self) -> int:
        return self.task + 1 if self.task_done else self.task

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d, where: str) -> "TrainingState":
        check_version(d, where)
        return cls(need(d, "run_id", str, where, lo=1, hi=64), need(d, "task", int, where, lo=0),
                   need(d, "iteration", int, where, lo=0), need(d, "task_done", bool, where),
                   need(d, "G", dict, where), need(d, "D", dict, where), need(d, "G_ema", dict, where, optional=True),
                   need(d, "opt_G", dict, where, optional=True), need(d, "opt_D", dict, where, optional=True),
                   need(d, "rng", list, where, lo=1, hi=4096), need(d, "strategy", dict, where),
                   need(d, "scaler", dict, where, optional=True), _drawn(d, where))


def _drawn(d, where) -> list[str] | None:
    drawn = need(d, "drawn", list, where, lo=1, hi=4096, optional=True)
    if drawn is not None and (len(drawn) != len(d["rng"]) or not all(isinstance(x, str) and len(x) <= 64
                                                                      for x in drawn)):
        raise RecordError(f"{where}: field 'drawn' must hold one fingerprint per process")
    return drawn


# ----------------------------------------------------------------------------------------------- metrics
def _fraction(d, key, where, optional=False):
    v = need(d, key, (int, float), where, lo=0, hi=1, optional=optional)
    return None if v is None else float(v)


def _per_class(d, where, key="per_class", lo=0.0, hi=1.0) -> dict[str, float]:
    pc = need(d, key, dict, where, hi=10_000)
    out = {}
    for c, v in pc.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise RecordError(f"{where}: {key}[{str(c)[:20]!r}] is {str(v)[:20]!r}, not a number in [{lo}, {hi}]")
        out[str(c)] = float(v)
    return out


@dataclass
class Scores:
    """Accuracies (fractions) per class and their unweighted mean (the paper's Table 1 metric)."""

    per_class: dict[str, float]
    average: float

    @classmethod
    def of(cls, per_class: dict[str, float]) -> "Scores":
        values = list(per_class.values())
        return cls(dict(per_class), round(float(sum(values) / len(values)), 6) if values else 0.0)

    @classmethod
    def from_dict(cls, d, where) -> "Scores":
        return cls(_per_class(d, where), _fraction(d, "average", where))

    def lowest(self) -> tuple[str, float]:
        c = min(self.per_class, key=self.per_class.get)
        return c, self.per_class[c]


@dataclass
class TaskScores:
    """One task file scored: every class seen so far, by the main evaluator, the second one (another family), and
    each class by the lower of the two (``both``: a result counts where both see it)."""

    task: int
    tasks_seen: int
    checkpoint: str
    main: Scores
    second: Scores | None = None
    both: Scores | None = None

    @property
    def strict(self) -> Scores:
        """The lower of the two evaluators per class where there are two, else the main one's."""
        return self.both or self.main

    def to_dict(self) -> dict:
        return {"task": self.task, "tasks_seen": self.tasks_seen, "checkpoint": self.checkpoint,
                "main": asdict(self.main), "second": asdict(self.second) if self.second else None,
                "both": asdict(self.both) if self.both else None}

    @classmethod
    def from_dict(cls, d, where) -> "TaskScores":
        opt = {k: Scores.from_dict(d[k], f"{where}.{k}") if isinstance(d, dict) and d.get(k) is not None else None
               for k in ("second", "both")}
        return cls(need(d, "task", int, where, lo=0), need(d, "tasks_seen", int, where, lo=1),
                   need(d, "checkpoint", str, where, hi=200), Scores.from_dict(need(d, "main", dict, where),
                                                                             f"{where}.main"), **opt)


@dataclass
class EvaluatorInfo:
    """An evaluator as the evaluation used it: its file, architecture, accuracy on real images."""

    path: str
    arch: str
    test_accuracy: float
    test_split: str
    real: Scores                    # its accuracy per class on the real images the evaluation compares with
    validation_accuracy: float | None = None
    epochs: int | None = None

    @classmethod
    def from_dict(cls, d, where) -> "EvaluatorInfo":
        return cls(need(d, "path", str, where, hi=4096), need(d, "arch", str, where, hi=40),
                   _fraction(d, "test_accuracy", where), need(d, "test_split", str, where, hi=200),
                   Scores.from_dict(need(d, "real", dict, where), f"{where}.real"),
                   _fraction(d, "validation_accuracy", where, optional=True),
                   need(d, "epochs", int, where, lo=1, optional=True))


PRDC_KEYS = ("precision", "recall", "density", "coverage")


@dataclass
class Variety:
    """How varied the final generator's images are, per class, with real-against-real ceilings beside them.

    Reverse accuracy: a classifier trained only on generated images, tested on real test images (``ceiling``: the
    same recipe on as many real training images). Precision, recall (Kynkaenniemi et al. 2019), density and
    coverage (Naeem et al. 2020) of each class's generated images against its real test images, in the main
    evaluator's features (``prdc_ceiling``: real training images against the same real test images).
    """

    reverse: Scores                     # per class: the share of real test images of that class recognised
    reverse_accuracy: float             # over all real test images
    reverse_ceiling: Scores
    reverse_ceiling_accuracy: float
    reverse_images_per_class: int
    reverse_epochs: int
    prdc: dict[str, dict[str, float]]   # class -> precision, recall, density, coverage
    prdc_ceiling: dict[str, dict[str, float]]
    k: int
    real_split: str

    def mean(self, key: str, ceiling: bool = False) -> float | None:
        """The mean over classes of one of ``PRDC_KEYS`` (None where no class could be measured)."""
        table = self.prdc_ceiling if ceiling else self.prdc
        return round(sum(v[key] for v in table.values()) / len(table), 6) if table else None

    def lowest(self, key: str = "recall") -> tuple[str, float] | None:
        if not self.prdc:
            return None
        c = min(self.prdc, key=lambda c: self.prdc[c][key])
        return c, self.prdc[c][key]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prdc_mean"] = {k: self.mean(k) for k in PRDC_KEYS}
        d["prdc_ceiling_mean"] = {k: self.mean(k, True) for k in PRDC_KEYS}
        return d

    @classmethod
    def from_dict(cls, d, where) -> "Variety":
        def table(key):
            t = need(d, key, dict, where, lo=0, hi=10_000)
            out = {}
            for c, row in t.items():
                out[str(c)] = {k: float(need(row, k, (int, float), f"{where}.{key}.{str(c)[:20]}", lo=0, hi=1e6))
                               for k in PRDC_KEYS}
            return out

        return cls(Scores.from_dict(need(d, "reverse", dict, where), f"{where}.reverse"),
                   _fraction(d, "reverse_accuracy", where),
                   Scores.from_dict(need(d, "reverse_ceiling", dict, where), f"{where}.reverse_ceiling"),
                   _fraction(d, "reverse_ceiling_accuracy", where),
                   need(d, "reverse_images_per_class", int, where, lo=1), need(d, "reverse_epochs", int, where, lo=1),
                   table("prdc"), table("prdc_ceiling"), need(d, "k", int, where, lo=1),
                   need(d, "real_split", str, where, hi=200))


@dataclass
class Metrics:
    """``metrics.json``: a run evaluated (``evaluation.evaluate_run``). Every table of it (the terminal's, the
    report's, the demo's) renders this object (``mergan.tables``)."""

    run: str
    run_id: str
    strategy: StrategyInfo
    config: object                      # config.RunConfig of the final task file
    classes: list[str]
    eval_samples: int
    seed: int
    main: EvaluatorInfo
    second: EvaluatorInfo | None
    tasks: list[TaskScores]
    variety: Variety
    fid: dict                           # FID in the main evaluator's features, per class and overall
    inception_fid: dict
    files: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def dataset(self) -> str:
        return self.config.dataset

    @property
    def final(self) -> TaskScores:
        return self.tasks[-1]

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "run": self.run, "run_id": self.run_id,
                "strategy": self.strategy.to_dict(), "config": config_to_dict(self.config), "classes": self.classes,
                "eval_samples": self.eval_samples, "seed": self.seed, "main_evaluator": asdict(self.main),
                "second_evaluator": asdict(self.second) if self.second else None,
                "tasks": [t.to_dict() for t in self.tasks], "variety": self.variety.to_dict(), "fid": self.fid,
                "inception_fid": self.inception_fid, "files": self.files, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d, where: str = "metrics.json") -> "Metrics":
        if isinstance(d, dict) and "format_version" not in d and "tasks" in d:
            raise RecordError(f"{where} was written by mergan 0.1; evaluate the run again: python train.py --test "
                              f"--out RUN")
        check_version(d, where)
        tasks = need(d, "tasks", list, where, lo=1, hi=10_000)
        second = d.get("second_evaluator")
        return cls(need(d, "run", str, where, hi=4096), need(d, "run_id", str, where, hi=64),
                   StrategyInfo.from_dict(need(d, "strategy", dict, where), f"{where}: strategy"),
                   config_from_dict(need(d, "config", dict, where), f"{where}: config"),
                   names(d.get("classes"), where, "classes"), need(d, "eval_samples", int, where, lo=1),
                   need(d, "seed", int, where),
                   EvaluatorInfo.from_dict(need(d, "main_evaluator", dict, where), f"{where}: main_evaluator"),
                   EvaluatorInfo.from_dict(second, f"{where}: second_evaluator") if second is not None else None,
                   [TaskScores.from_dict(t, f"{where}: tasks[{i}]") for i, t in enumerate(tasks)],
                   Variety.from_dict(need(d, "variety", dict, where), f"{where}: variety"),
                   need(d, "fid", dict, where), need(d, "inception_fid", dict, where),
                   need(d, "files", dict, where, optional=True) or {},
                   float(need(d, "seconds", (int, float), where, lo=0, optional=True) or 0.0))
