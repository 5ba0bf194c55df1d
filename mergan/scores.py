"""The evaluation's records: ``metrics.json`` as small typed dataclasses, checked field by field as the run's other
records are (``mergan.records``).

- ``Scores``: per-class shares (accuracy on generated images, reverse accuracy), with their mean and lowest.
- ``TaskScores``: one task file's scores by the main evaluator, the second and the lower of the two.
- ``EvaluatorInfo``: which evaluator scored, and its own accuracy on real images.
- ``Variety``: the final generator's variety per class, beside real-against-real ceilings.
- ``Metrics``: the whole file, written by ``evaluation.evaluate_run`` and read by ``runs.RunFolder``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .records import (FORMAT_VERSION, RecordError, StrategyInfo, check_version, config_from_dict, config_to_dict,
                      names, need)


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
    each class by the lower of the two (``both``: a result counts where both see it); ``recall``: each class's
    improved recall against the real images (k = 5, main evaluator's features, as ``Variety``), so that variety
    can be followed task by task (None in files written before it was measured)."""

    task: int
    tasks_seen: int
    checkpoint: str
    main: Scores
    second: Scores | None = None
    both: Scores | None = None
    recall: Scores | None = None

    @property
    def strict(self) -> Scores:
        """The lower of the two evaluators per class where there are two, else the main one's."""
        return self.both or self.main

    def to_dict(self) -> dict:
        return {"task": self.task, "tasks_seen": self.tasks_seen, "checkpoint": self.checkpoint,
                "main": asdict(self.main), "second": asdict(self.second) if self.second else None,
                "both": asdict(self.both) if self.both else None,
                "recall": asdict(self.recall) if self.recall else None}

    @classmethod
    def from_dict(cls, d, where) -> "TaskScores":
        opt = {k: Scores.from_dict(d[k], f"{where}.{k}") if isinstance(d, dict) and d.get(k) is not None else None
               for k in ("second", "both", "recall")}
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
    # real class -> {class the reverse classifier took its real images for: count} (diagonal included, zeros left
    # out); empty in metrics.json written before it was kept
    reverse_confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    def taken_for(self, c: str) -> tuple[str, float] | None:
        """The class whose generated images the reverse classifier most often confused real ``c`` with, and the
        share of real ``c`` it took for it (None: unknown, or nothing taken for another class)."""
        row = {k: n for k, n in self.reverse_confusion.get(c, {}).items() if k != c}
        if not row:
            return None
        other = max(row, key=lambda k: (row[k], k))
        return other, round(row[other] / sum(self.reverse_confusion[c].values()), 6)

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

        def confusion():
            t = need(d, "reverse_confusion", dict, where, lo=0, hi=10_000, optional=True) or {}
            out = {}
            for c in t:
                row = need(t, c, dict, f"{where}.reverse_confusion", lo=0, hi=10_000)
                out[str(c)] = {str(k): need(row, k, int, f"{where}.reverse_confusion.{str(c)[:20]}", lo=0, hi=10**9)
                               for k in row}
            return out

        return cls(Scores.from_dict(need(d, "reverse", dict, where), f"{where}.reverse"),
                   _fraction(d, "reverse_accuracy", where),
                   Scores.from_dict(need(d, "reverse_ceiling", dict, where), f"{where}.reverse_ceiling"),
                   _fraction(d, "reverse_ceiling_accuracy", where),
                   need(d, "reverse_images_per_class", int, where, lo=1), need(d, "reverse_epochs", int, where, lo=1),
                   table("prdc"), table("prdc_ceiling"), need(d, "k", int, where, lo=1),
                   need(d, "real_split", str, where, hi=200), confusion())


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
