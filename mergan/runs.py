"""The run folder: the one owner of its layout, of reading and writing its records, and of the decision to
start, resume or extend a run.

    RUN/config.json             the run's settings and identity (``records.RunRecord``), written with the first state
    RUN/task_XX.safetensors     the generator delivered after task XX (``checkpoints.save_generator``)
    RUN/state.pt                the resumable training state (``records.TrainingState``)
    RUN/samples/task_XX.png     a sample grid of every class seen after task XX
    RUN/metrics.json            the evaluation (``scores.Metrics``, written by ``evaluation.evaluate_run``)
    RUN/forgetting_grid.png, forgetting.gif, accuracy.png    the evaluation's pictures (``pictures``)
    RUN/live.safetensors        what the run needs to keep learning live (``live.export``)
    RUN/logs/                   tracker logs (TensorBoard)
    RUN/README.md               the model card (``card.write_card``), what the Hub shows of a pushed run
    RUN/.lock, RUN/.writer      the one writer's lock (``RunFolder.writing``) and, while held, who holds it

    python -m mergan.runs upgrade RUN [--data-dir DIR]   # a run folder of mergan 0.1 (format 1) to this format
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .checkpoints import CheckpointError, atomic_write, atomic_write_text, load_state, read_metadata
from .config import RunConfig
from .records import RecordError, RunRecord, StrategyInfo, TaskMeta, TrainingState, fingerprint

TASK_FILE = re.compile(r"task_(\d+)\.safetensors")
MAX_RECORD = 4 << 20   # bytes: config.json and metrics.json are a few kB; a larger one is not read
LOCK, WRITER = ".lock", ".writer"   # the lock file stays (empty); .writer only while the lock is held
TRACKER_LOGS = "events.out.tfevents.*"   # what --tensorboard writes under RUN/logs, from the start on


class FolderBusy(Exception):
    """Another command is writing the run folder; the message says which (``RunFolder.writing``)."""


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
        """The evaluation (``scores.Metrics``); raises ``RecordError`` if unusable."""
        from .scores import Metrics

        fix = f"evaluate the run again: python train.py --test --out {self.path}"
        return Metrics.from_dict(self._json(self.metrics_path, fix), str(self.metrics_path))

    def write_metrics(self, metrics) -> None:
        atomic_write_text(self.metrics_path, json.dumps(metrics.to_dict(), indent=2) + "\n")

    # ------------------------------------------------------------------------------------------ one writer
    @contextmanager
    def writing(self, command: str | None = None, create: bool = False):
        """Hold the folder's one-writer lock while the block runs: an OS file lock (``filelock``) that the OS
        releases when its process ends, however it ends, so a killed command never leaves it stuck. Raises
        ``FolderBusy`` naming the holder (its process, machine, command and start) if another command holds it.
        ``create``: make the folder if it is missing; else a missing folder is not locked (there is nothing in it
        to write over; the command says it is missing)."""
        from filelock import FileLock, Timeout

        if not create and not self.path.is_dir():
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise FolderBusy(f"{self.path} is being written by {self.writer()}; wait until it ends (or stop it), "
                             f"then run this command again") from None
        try:
            who = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "command": " ".join(command.split()) if command else " ".join([Path(sys.argv[0]).name,
                                                                                   *sys.argv[1:]])}
            atomic_write_text(self.path / WRITER, json.dumps(who) + "\n")
            yield
        finally:   # .writer exists only while held: a run folder's files do not depend on who wrote them
            (self.path / WRITER).unlink(missing_ok=True)
            lock.release()

    def writer(self) -> str:
        """Who holds the folder's lock, in words (from ``RUN/.writer``)."""
        try:
            w = json.loads((self.path / WRITER).read_text()[:4096])
            return (f"process {int(w['pid'])} on {str(w['host'])[:80]} ({str(w['command'])[:200]}, since "
                    f"{str(w['since'])[:20]})")
        except (OSError, ValueError, KeyError, TypeError):
            return "another command"

    def _unstarted(self, p: Path) -> bool:
        """``p`` in the folder is what a start leaves before its first save: the lock, a temporary file, an empty
        samples/, logs/ holding only the tracker's first events."""
        if p.name in (LOCK, WRITER) or p.name.startswith(".") and p.name.endswith(".tmp"):
            return True
        if p == self.samples_path and p.is_dir():
            return not any(p.iterdir())
        if p == self.logs_path and p.is_dir():
            return all(f.is_dir() or f.match(TRACKER_LOGS) for f in p.rglob("*"))
        return False

    def holds_no_run(self) -> bool:
        """The folder is missing, empty, or holds only what a start leaves before its first save
        (``_unstarted``): no run that anything could continue."""
        return not self.path.is_dir() or all(self._unstarted(p) for p in self.path.iterdir())

    def remove_temp_files(self) -> None:
        """Delete the temporary files of writes that a killed process never finished (``checkpoints.atomic_write``
        names them ``.<target>.<random>.tmp``); finished files are never temporary."""
        for folder in (self.path, self.samples_path):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def discard_unstarted(self, keep_folder: bool = False, saved: bool = False) -> None:
        """Undo a start that failed before it delivered anything, so that the next command starts afresh: the
        folders it left, its tracker logs, and with ``saved`` (it failed on its data, which the user will
        change: the run's identity with them) its ``config.json`` and ``state.pt`` too; the folder itself unless
        ``keep_folder`` (it was there before). Called by the lock's holder; a folder with a task file is left
        alone."""
        if self.task_files():
            return
        if saved:
            for f in (self.config_path, self.state_path):
                f.unlink(missing_ok=True)
        if self.has_config() or self.state_path.exists():
            return
        self.remove_temp_files()
        if self.logs_path.is_dir() and self._unstarted(self.logs_path):   # only what this start wrote
            shutil.rmtree(self.logs_path, ignore_errors=True)
        if self.samples_path.is_dir() and self._unstarted(self.samples_path):
            self.samples_path.rmdir()
        if not keep_folder and self.holds_no_run():
            for name in (WRITER, LOCK):   # the lock last: this process holds it until the folder is gone
                (self.path / name).unlink(missing_ok=True)
            try:
                self.path.rmdir()
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
            if not self.holds_no_run():
                raise ValueError(f"--out {out} exists and is not a run folder; choose an empty or new folder")
            return None, None
        record = self.read_record()
        saved = record.config
        why = cfg.mismatch(saved, data=False)
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
        # The data of every class whose task has begun must be the same; a later class's may have changed (a bad
        # file found and fixed before its task): nothing was trained on it yet.
        begun = len(saved.classes) if one_task else state.tasks_done + (0 if state.task_done else 1)
        trained = saved.data_source.subset(c for c in saved.classes[:begun] if c in saved.data_source.classes)
        why = trained.differs(cfg.data_source)
        if why:
            raise ValueError(f"{out} holds a run trained on other data ({why}); restore those images, or train "
                             f"into another --out")
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
        for t in ([] if one_task else range(state.tasks_done)):
            if t == state.task and undelivered:
                continue   # --resume writes it
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
    old = torch.load(run.state_path, map_location="cpu", weights_only=True) if run.state_path.is_file() else {}
    if "iter" in old:   # (converted already by an upgrade interrupted before config.json: it has "iteration")
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
            with RunFolder(r).writing(f"python -m mergan.runs upgrade {r}"):
                for line in upgrade(r, args.data_dir):
                    print(line)
    except (RecordError, CheckpointError, ValueError, OSError, KeyError, FolderBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:   # every file is written whole (atomic): the rest converts on the next try
        print("error: interrupted; run the same command again to convert the rest", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
