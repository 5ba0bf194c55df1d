"""The run folder's records as small typed dataclasses: what each file holds, checked field by field.

- ``DataSource``: which data a run (or an evaluator) saw, by content: a fingerprint of every class's images.
- ``StrategyInfo``: a strategy's identity and capabilities (``mergan.strategies`` makes it from the class);
  written with every run, so what shows or reports a run never imports training code.
- ``RunRecord``: ``config.json``, the resolved settings (``config.RunConfig``) with the run's identity.
- ``TaskMeta``: a task file's metadata, which carries the whole resolved configuration.
- ``TrainingState``: ``state.pt``, what training continues from.

Only ``mergan.runs`` and ``mergan.checkpoints`` read and write them; every reader gets these objects. A field
of the wrong type or out of range raises ``RecordError`` naming the field, so a crafted or damaged file is one
clear line, never a ``TypeError`` further on. The evaluation's records (``metrics.json``) are in
``mergan.scores``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

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
