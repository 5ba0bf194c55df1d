"""The run folder: the one owner of its layout and of the decision to start, resume or extend a run.

    RUN/config.json             the run's settings (``config.RunConfig``), written with the first state
    RUN/task_XX.safetensors     the generator delivered after task XX (``checkpoints.save_generator``)
    RUN/state.pt                the resumable training state (``checkpoints.save_state``)
    RUN/metrics.json            the evaluation (``evaluation.evaluate_run``)
    RUN/samples/task_XX.png     a sample grid of every class seen after task XX
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .checkpoints import CheckpointError, atomic_write, atomic_write_text, load_state
from .config import RunConfig

TASK_FILE = re.compile(r"task_(\d+)\.safetensors")


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

    def task_path(self, task: int) -> Path:
        return self.path / f"task_{task:02d}.safetensors"

    def sample_path(self, task: int) -> Path:
        return self.path / "samples" / f"task_{task:02d}.png"

    def delivered(self, task: int) -> bool:
        """Both of a finished task's files are there: its generator and its sample grid."""
        return self.task_path(task).is_file() and self.sample_path(task).is_file()

    def task_files(self) -> list[tuple[int, Path]]:
        """(task, path) of every generator file in the folder, in task order."""
        if not self.path.is_dir():
            return []
        found = ((m, p) for p in self.path.iterdir() if (m := TASK_FILE.fullmatch(p.name)))
        return sorted((int(m.group(1)), p) for m, p in found)

    # ------------------------------------------------------------------------------------------ files
    def has_config(self) -> bool:
        return self.config_path.is_file()

    def read_config(self) -> dict:
        """The saved settings; raises ``OSError`` or ``json.JSONDecodeError`` if unreadable."""
        return json.loads(self.config_path.read_text())

    def write_config(self, cfg: RunConfig) -> None:
        atomic_write_text(self.config_path, json.dumps(asdict(cfg), indent=2) + "\n")

    def write_config_with(self, cfg: RunConfig, save: Callable[[], None]) -> None:
        """Write the settings, then ``save()`` (the first state); if that fails, put the previous settings back
        (none, or an extended run's), so that a failed save leaves the folder as it was."""
        previous = self.config_path.read_bytes() if self.has_config() else None
        self.write_config(cfg)
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

    def remove_temp_files(self) -> None:
        """Delete the temporary files of writes that a killed process never finished (``checkpoints.atomic_write``
        names them ``.<target>.<random>.tmp``); finished files are never temporary."""
        for folder in (self.path, self.path / "samples"):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def discard_unstarted(self, keep_folder: bool = False) -> None:
        """Undo a start that failed before anything was saved: remove the folders it left empty (``config.json``
        comes only with the first save, ``write_config_with``), so that the same command starts afresh. A folder
        with a state or a task file is left alone."""
        if self.state_path.exists() or self.task_files():
            return
        for folder in (self.path / "samples", self.path / "logs", *(() if keep_folder else (self.path,))):
            try:
                folder.rmdir()   # only if empty
            except OSError:
                pass

    def has_metrics(self) -> bool:
        return self.metrics_path.is_file()

    def read_metrics(self) -> dict:
        """The evaluation; raises ``OSError`` or ``json.JSONDecodeError`` if unreadable."""
        return json.loads(self.metrics_path.read_text())

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self.metrics_path, json.dumps(metrics, indent=2) + "\n")

    def read_state(self) -> dict | None:
        return load_state(self.state_path) if self.state_path.is_file() else None

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
        try:
            saved = self.read_config()
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{self.config_path} is unreadable ({e}); restore it or use another --out")
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
        n_done = state["task"] + 1 if state["task_done"] else state["task"]
        if one_task and len(cfg.classes) != len(saved["classes"]):
            raise ValueError("a joint run trains all its classes at once and cannot be extended; "
                             "use another --out for a joint run on more classes")
        # Stopped between the task's state and its generator file: --resume writes the file from the state.
        undelivered = state["task_done"] and not self.delivered(state["task"])
        if undelivered and not resume:
            raise ValueError(f"{out} holds a run stopped after task {state['task']} before its files were "
                             f"written; pass --resume to write them and continue")
        if n_done >= len(cfg.classes) and not undelivered:
            return None, (f"{out} already has all {len(cfg.classes)} tasks; nothing to train (add classes to "
                          f"extend it)")
        if n_done < len(saved["classes"]) and not resume:
            where = f"after task {state['task']}" if state["task_done"] else \
                f"in task {state['task']}, iteration {state['iter']}"
            raise ValueError(f"{out} holds an interrupted run ({where}); pass --resume to continue it, "
                             f"or choose another --out")
        done_tasks = [] if one_task else range(state["task"])
        for t in done_tasks:
            if not self.task_path(t).is_file():
                raise CheckpointError(f"{self.task_path(t)} is missing, but the run's state says that task is "
                                      f"done; restore it or start a new --out")
        return state, None
