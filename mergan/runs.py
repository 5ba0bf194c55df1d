"""The run folder: the one owner of its layout, of reading and writing its records, and of the decision to
start, resume or extend a run.

    RUN/config.json             the run's settings and identity (``records.RunRecord``), written with the first state
    RUN/task_XX.safetensors     the generator delivered after task XX (``checkpoints.save_generator``)
    RUN/state.pt                the resumable training state (``records.TrainingState``)
    RUN/samples/task_XX.png     a sample grid of every class seen after task XX
    RUN/metrics.json            the evaluation (``records.Metrics``, written by ``evaluation.evaluate_run``)
    RUN/forgetting_grid.png, forgetting.gif, accuracy.png    the evaluation's pictures (``pictures``)
    RUN/live.safetensors        what the run needs to keep learning live (``live.export``)
    RUN/logs/                   tracker logs (TensorBoard)
    RUN/README.md               the model card (``card.write_card``), what the Hub shows of a pushed run

    python -m mergan.runs upgrade RUN [--data-dir DIR]   # a run folder of mergan 0.1 (format 1) to this format
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable

from .checkpoints import CheckpointError, atomic_write, atomic_write_text, load_state, read_metadata
from .config import RunConfig
from .records import RecordError, RunRecord, StrategyInfo, TaskMeta, TrainingState, fingerprint

TASK_FILE = re.compile(r"task_(\d+)\.safetensors")
MAX_RECORD = 4 << 20   # bytes: config.json and metrics.json are a few kB; a larger one is not read


def run_id(cfg: RunConfig) -> str:
    """A run's identity, from what makes it this run and not another: every setting that must match to continue
    it, its first class and that class's data. The same command gives the same id (so the same files); any other
    run gives another, and every file a run writes carries it."""
    fixed = {k: getattr(cfg, k) for k in RunConfig.FIXED}
    first = cfg.classes[0]
    return fingerprint(json.dumps(fixed, sort_keys=True), first, cfg.data_source.classes[first].fingerprint
                       if first in cfg.data_source.classes else "")


def hub_blob(path: Path) -> bool:
    """``path`` is a file of a run fetched from the Hub: huggingface_hub's cache links ``REPO/snapshots/COMMIT/...``
    to ``REPO/blobs/HASH``, and such a link is read like a plain file (any other link is not)."""
    snapshots = next((p for p in path.parents if p.name == "snapshots"), None)
    return snapshots is not None and path.resolve().parent == (snapshots.parent / "blobs").resolve()


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def state_path(self) -> Path:
        return self.path / "state.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def live_path(self) -> Path:
        return self.path / "live.safetensors"

    @property
    def logs_path(self) -> Path:
        return self.path / "logs"

    @property
    def samples_path(self) -> Path:
        return self.path / "samples"

    @property
    def card_path(self) -> Path:
        return self.path / "README.md"   # the name the Hub reads a model card from

    PICTURES = {"forgetting_grid": "forgetting_grid.png", "forgetting_gif": "forgetting.gif",
                "accuracy_plot": "accuracy.png"}

    def picture_path(self, name: str) -> Path:
        """One of the evaluation's pictures, by its key in ``PICTURES``."""
        return self.path / self.PICTURES[name]

    def task_path(self, task: int) -> Path:
        return self.path / f"task_{task:02d}.safetensors"

    def sample_path(self, task: int) -> Path:
        return self.samples_path / f"task_{task:02d}.png"

    def delivered(self, task: int) -> bool:
        """Both of a finished task's files are there: its generator and its sample grid."""
        return self.task_path(task).is_file() and self.sample_path(task).is_file()

    def task_files(self) -> list[tuple[int, Path]]:
        """(task, path) of every generator file in the folder, in task order."""
        if not self.path.is_dir():
            return []
        found = ((m, p) for p in self.path.iterdir() if (m := TASK_FILE.fullmatch(p.name)))
        return sorted((int(m.group(1)), p) for m, p in found)

    # ------------------------------------------------------------------------------------------ records
    def has_config(self) -> bool:
        return self.config_path.is_file()

    def _json(self, path: Path, what: str):
        if (path.is_symlink() and not hub_blob(path)) or not path.is_file():
            raise RecordError(f"{path} is not a plain file; {what}")
        if path.stat().st_size > MAX_RECORD:
            raise RecordError(f"{path} is larger than any {path.name} train.py writes; {what}")
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RecordError(f"{path} is unreadable ({type(e).__name__}); {what}") from None

    def read_record(self) -> RunRecord:
        """``config.json``; raises ``RecordError`` (one line: which field, what to do) if it is unusable, or if its
        settings were edited after the run started (they no longer give the run's id)."""
        record = RunRecord.from_dict(self._json(self.config_path, "restore it or use another --out"),
                                     str(self.config_path))
        if run_id(record.config) != record.run_id:
            raise RecordError(f"{self.config_path} was edited after its run started (its settings no longer give its "
                              f"run id {record.run_id}); restore it, or train into another --out")
        return record

    def read_config(self) -> RunConfig:
        return self.read_record().config

    def write_record(self, record: RunRecord) -> None:
        atomic_write_text(self.config_path, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")

    def write_record_with(self, record: RunRecord, save: Callable[[], None]) -> None:
        """Write the settings, then ``save()`` (the first state); if that fails, put the previous settings back
        (none, or an extended run's), so that a failed save leaves the folder as it was."""
        previous = self.config_path.read_bytes() if self.has_config() else None
        self.write_record(record)
        try:
            save()
        except Exception:
            try:
                if previous is None:
                    self.config_path.unlink(missing_ok=True)
                else:
                    atomic_write(self.config_path, lambda tmp: Path(tmp).write_bytes(previous))
            except (OSError, CheckpointError):
                pass
            raise

    def read_state(self) -> TrainingState | None:
        return load_state(self.state_path) if self.state_path.is_file() else None

    def read_task(self, task: int, record: RunRecord | None = None) -> TaskMeta:
        """A task file's metadata, checked to belong to this run (its ``run_id``) when ``record`` is given."""
        path = self.task_path(task)
        meta = read_metadata(path)
        if meta.task != task:
            raise CheckpointError(f"{path} holds task {meta.task}, not what its name says (task {task}); restore "
                                  f"the run's original file names")
        if record is not None and meta.run_id != record.run_id:
            raise CheckpointError(f"{path} belongs to another run (id {meta.run_id}, this run's is "
                                  f"{record.run_id}); restore this run's own file or retrain that task")
        return meta

    def has_metrics(self) -> bool:
        return self.metrics_path.is_file()

    def read_metrics(self):
        """The evaluation (``records.Metrics``); raises ``RecordError`` if unusable."""
        from .records import Metrics

        fix = f"evaluate the run again: python train.py --test --out {self.path}"
        return Metrics.from_dict(self._json(self.metrics_path, fix), str(self.metrics_path))

    def write_metrics(self, metrics) -> None:
        atomic_write_text(self.metrics_path, json.dumps(metrics.to_dict(), indent=2) + "\n")

    def remove_temp_files(self) -> None:
        """Delete the temporary files of writes that a killed process never finished (``checkpoints.atomic_write``
        names them ``.<target>.<random>.tmp``); finished files are never temporary."""
        for folder in (self.path, self.samples_path):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def discard_unstarted(self, keep_folder: bool = False) -> None:
        """Undo a start that failed before anything was saved: remove the folders it left empty (``config.json``
        comes only with the first save, ``write_record_with``), so that the same command starts afresh. A folder
        with a state or a task file is left alone."""
        if self.state_path.exists() or self.task_files():
            return
        for folder in (self.samples_path, self.logs_path, *(() if keep_folder else (self.path,))):
            try:
                folder.rmdir()   # only if empty
            except OSError:
                pass

    # ------------------------------------------------------------------------------------------ the plan
    def plan(self, cfg: RunConfig, resume: bool, one_task: bool = False):
        """Decide what to do with the folder: returns (state or None, message or None); raises on conflict.

        ``one_task``: the strategy trains every class in one task (joint), so its run cannot be extended.
        """
        out = self.path
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; choose a folder (new or empty) for the run")
        above = next((p for p in out.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise ValueError(f"--out {out} is below {above}, which is a file; choose a folder elsewhere")
        if not self.has_config():
            if resume:
                raise ValueError(f"nothing to resume in {out}: it holds no run; drop --resume to start one")
            if out.exists() and any(out.iterdir()):
                raise ValueError(f"--out {out} exists and is not a run folder; choose an empty or new folder")
            return None, None
        record = self.read_record()
        saved = record.config
        why = cfg.mismatch(saved)
        if why:
            raise ValueError(f"{out} holds a different run ({why}); use the same settings or another --out")
        state = self.read_state()
        if state is None:
            if self.task_path(0).is_file():
                raise ValueError(f"{out} holds generators but no training state (state.pt, with the critic and "
                                 f"the optimisers), so it cannot be continued; train into another --out")
            if not resume:
                raise ValueError(f"{out} holds a run that was interrupted before its first save; pass --resume "
                                 f"to restart it, or choose another --out")
            return None, None
        if state.run_id != record.run_id:
            raise CheckpointError(f"{self.state_path} belongs to another run (id {state.run_id}, this run's is "
                                  f"{record.run_id}); restore this run's own state.pt, or train into another --out")
        if one_task and len(cfg.classes) != len(saved.classes):
            raise ValueError("a joint run trains all its classes at once and cannot be extended; "
                             "use another --out for a joint run on more classes")
        # Stopped between the task's state and its generator file: --resume writes the file from the state.
        undelivered = state.task_done and not self.delivered(state.task)
        if undelivered and not resume:
            raise ValueError(f"{out} holds a run stopped after task {state.task} before its files were "
                             f"written; pass --resume to write them and continue")
        if state.tasks_done >= len(cfg.classes) and not undelivered:
            return None, (f"{out} already has all {len(cfg.classes)} tasks; nothing to train (add classes to "
                          f"extend it)")
        if state.tasks_done < len(saved.classes) and not resume:
            where = f"after task {state.task}" if state.task_done else \
                f"in task {state.task}, iteration {state.iteration}"
            raise ValueError(f"{out} holds an interrupted run ({where}); pass --resume to continue it, "
                             f"or choose another --out")
        for t in ([] if one_task else range(state.task)):
            if not self.task_path(t).is_file():
                raise CheckpointError(f"{self.task_path(t)} is missing, but the run's state says that task is "
                                      f"done; restore it or start a new --out")
            self.read_task(t, record)
        return state, None


# ----------------------------------------------------------------------------------------------- upgrade
def upgrade(path: str | Path, data_dir: str | Path = "data") -> list[str]:
    """Convert a run folder of mergan 0.1 (format 1) to this format in place: ``config.json`` gets the typed
    data source (the data fingerprinted as it is now under ``data_dir``, or the shipped MNIST), the strategy's
    identity and the run's id; every task file's metadata the whole configuration (its tensors unchanged); a
    ``state.pt`` its run id. Returns what was done, a line per file."""
    import torch

    from .checkpoints import FORMAT, read_header, save_state, write_safetensors
    from .config import RA_LAMBDA, check
    from .data import load_task_data
    from .strategies import strategy_class

    run = RunFolder(path)
    raw = run._json(run.config_path, "it is not a run folder")
    if raw.get("format_version", 1) != 1 or "config" in raw:
        return [f"{run.config_path}: already format 2"]
    cls = strategy_class(raw["strategy"])
    size = 32 if raw["model"]["arch"] == "dcgan32" else 64
    data = load_task_data(raw["dataset"], data_dir, ",".join(raw["classes"]), image_size=size,
                          channels=raw["model"]["channels"])
    fields = {k: v for k, v in raw.items() if k in RunConfig.__dataclass_fields__}
    cfg = RunConfig(**{**fields, "data_source": data.source})
    if cfg.ra_lambda is None and cls.name == "ra":   # 0.1 always wrote it for RA; older runs had the paper's
        cfg.ra_lambda = RA_LAMBDA[cfg.dataset]
    check(cfg)
    record = RunRecord(cfg, cls.info(), run_id(cfg))
    done = []
    for t, p in run.task_files():
        old = read_header(p, FORMAT, "MeRGAN generator", "it is not a task file")
        meta = TaskMeta.from_strings(old, str(p))
        meta = TaskMeta(meta.task, meta.classes, meta.iters, {k: v for k, v in meta.model.items() if k != "replay"},
                        meta.deliverable, cls.name, cfg.dataset, cfg.data_source, cls.info(), cfg, record.run_id)
        from safetensors.torch import load_file

        from .records import FORMAT_VERSION
        write_safetensors(p, load_file(str(p)), {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                                 **meta.to_strings()})
        done.append(f"{p}: metadata of format 2")
    if run.state_path.is_file():
        old = torch.load(run.state_path, map_location="cpu", weights_only=True)
        state = TrainingState(record.run_id, old["task"], old["iter"], old["task_done"], old["G"], old["D"],
                              old.get("G_ema"), old.get("opt_G"), old.get("opt_D"), old["rng"],
                              old.get("strategy", {}), old.get("scaler"))
        save_state(run.state_path, state)
        done.append(f"{run.state_path}: format 2")
    run.write_record(record)
    done.append(f"{run.config_path}: format 2 (data: {data.source.description})")
    return done


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m mergan.runs", description="Run folders.")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("upgrade", help="convert run folders of mergan 0.1 (format 1) to this format, in place")
    u.add_argument("runs", nargs="+")
    u.add_argument("--data-dir", default="data", help="where the runs' data are (default ./data; MNIST: shipped)")
    args = p.parse_args(argv)
    try:
        for r in args.runs:
            for line in upgrade(r, args.data_dir):
                print(line)
    except (RecordError, CheckpointError, ValueError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
