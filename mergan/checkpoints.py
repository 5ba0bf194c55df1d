"""The only code that knows file formats.

Four kinds of file (their places in a run folder: ``mergan.runs``; what their records hold: ``mergan.records``):

- the deliverable, one per task: ``task_XX.safetensors`` holding that task's generator and its ``TaskMeta``
  (the whole resolved configuration, the strategy's identity, the run's id), enough to rebuild it with
  ``load_generator`` alone;
- the resumable training state, ``state.pt`` (``TrainingState``): generator, critic, optimisers, random-number
  state and the strategy's own tensors;
- what a finished run needs to keep learning, ``live.safetensors`` (``mergan.live``);
- an evaluator (``mergan.classifier``): ``<dataset>-<arch>-<hash>.safetensors``, its weights and JSON metadata
  (format, architecture, class names in output order, the data it learned, test accuracy).

Every safetensors file is read by ``read_header`` and its metadata encoded one way (``encode``: ``format`` and
``format_version`` as plain strings, every other value JSON).

Every write goes to a temporary file in the same folder and is renamed over the target, so a crash never
leaves a half-written file and never destroys the previous one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .models import build_deliverable, model_problem
from .records import FORMAT_VERSION, UPGRADE, RecordError, TaskMeta, TrainingState

FORMAT = "mergan-generator"


class CheckpointError(Exception):
    """An unreadable, truncated or mismatched checkpoint; the message says which file and what to do."""


class WriteError(CheckpointError):
    """A file could not be written (``atomic_write``): ``problem`` says why, ``fix`` what to do about it; the
    message ends with "run the command again", which each command may say more precisely (``retry``)."""

    def __init__(self, path: Path, problem: str, fix: str):
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(self.retry("run the command again"))

    def retry(self, how: str) -> str:
        return f"cannot write {self.path}: {self.problem} (the previous file, if any, is unchanged); {self.fix}, " \
               f"then {how}"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``. Any failure (a full disk, a
    read-only or missing folder) raises ``WriteError`` saying so, and the previous file is left as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make run folders unreadable to others
        os.replace(tmp, path)
    except Exception as e:
        raise WriteError(path, *_write_failure(e, path.parent)) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_failure(e: Exception, folder: Path) -> tuple[str, str]:
    """Why a write failed and what to do, in words a user can act on, whatever the command."""
    import errno
    import shutil

    full = ("the disk is full", "free some space")
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return full
    if isinstance(e, OSError) and e.errno == errno.EROFS:
        return "the file system is read-only", f"make {folder} writable (or copy it somewhere writable)"
    if isinstance(e, PermissionError):
        return "permission denied", f"make {folder} writable"
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        return "a file stands where a folder is needed", "move that file away"
    try:
        if shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free < 1 << 20:
            return full
    except (OSError, StopIteration):
        pass
    return f"{type(e).__name__}: {str(e)[:100]}", "check the folder"


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_safetensors(path: str | Path, tensors: dict, metadata: dict) -> None:
    """A safetensors file whose bytes depend only on its content: safetensors writes the header's keys in an
    order that varies from call to call, so the header is written again with its keys sorted (the tensors'
    offsets are relative to the header's end and do not change). Atomic, like every write here."""
    import struct

    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(dict(sorted(header.items())), separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)   # the format aligns the data to 8 bytes
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:]))


def read_header(path: str | Path, fmt: str, what: str, fix: str) -> dict[str, str]:
    """The metadata of a safetensors file of format ``fmt``, as stored (strings), without loading its tensors: the
    one reader of every safetensors file here. ``what`` names the kind of file in messages, ``fix`` says what to
    do with a bad one; raises ``CheckpointError``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}; {fix}")
    if path.stat().st_size > MAX_FILE:
        raise CheckpointError(f"{path} is {path.stat().st_size / 1e9:.1f} GB, more than any {what}; {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e)[:80]}); it may be truncated: "
                              f"{fix}") from None
    if raw.get("format") != fmt:
        raise CheckpointError(f"{path} is not a {what} (format {str(raw.get('format'))[:40]!r}); {fix}")
    return raw


def encode(meta: dict) -> dict[str, str]:
    """Metadata as safetensors stores it: ``format`` and ``format_version`` plain, every other value JSON."""
    return {k: v if k in ("format", "format_version") else json.dumps(v, sort_keys=True) for k, v in meta.items()}


def decode(raw: dict[str, str], path) -> dict:
    """``encode``'s inverse; a value that is not JSON raises ``CheckpointError``."""
    out = {}
    for k, v in raw.items():
        if k in ("format", "format_version"):
            out[k] = v
            continue
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: metadata {k!r} is not JSON; the file is corrupt") from None
    return out


def load_tensors(path: str | Path, what: str, fix: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"cannot read the tensors in {path} ({str(e)[:80]}); {fix}") from None


MAX_FILE = 4 << 30   # no file of a run is near this; a larger one is not read at all
GENERATOR_FIX = "use a task_XX.safetensors written by train.py, or retrain that task"


def save_generator(path: str | Path, G: torch.nn.Module, meta: TaskMeta) -> None:
    """Save a task's deliverable (generator, or DGR's generator and solver) with its metadata."""
    strings = {"format": FORMAT, "format_version": str(FORMAT_VERSION), **meta.to_strings()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    write_safetensors(path, tensors, strings)


def read_metadata(path: str | Path) -> TaskMeta:
    """The metadata of a task file (``TaskMeta``), without loading its weights; the model's sizes checked."""
    raw = read_header(path, FORMAT, "MeRGAN generator", GENERATOR_FIX)
    try:
        meta = TaskMeta.from_strings(raw, str(path))
    except RecordError as e:
        raise CheckpointError(f"{e}; {GENERATOR_FIX}") from None
    check_model(path, meta.model, meta.deliverable)
    return meta


def check_model(path: str | Path, model: dict, deliverable: str = "generator") -> None:
    """Refuse (``CheckpointError``) a deliverable's model metadata that is not a known architecture with integer
    sizes within ``models.MODEL_BOUNDS`` (``read_metadata`` checks every file)."""
    problem = model_problem(model, deliverable)
    if problem:
        raise CheckpointError(f"{path}: metadata {problem}; the file is corrupt or crafted: use a task file written "
                              f"by train.py")


def load_generator(path: str | Path, device: str | torch.device = "cpu", *, task: int | None = None,
                   revision: str | None = None) -> tuple[torch.nn.Module, TaskMeta]:
    """Rebuild a task's generator from its safetensors file: ``G, meta = load_generator(path)``.

    ``path`` is a task file, or a run folder, or a Hub repository id ``owner/name`` of a pushed run (fetched with
    huggingface_hub into its cache, once per commit; ``revision``: a branch, tag or commit, also written
    ``owner/name@revision``): of a run, the generator after its last task is loaded, or after ``task``
    (``mergan.hub.task_file``).
    ``meta.classes`` lists the class names in task order; conditioning label i draws class i (``TaskMeta``).
    The generator is returned in eval mode with gradients off (batch norm still uses batch statistics).
    Nothing is built before the metadata's sizes are checked and the network they describe (built without
    memory, on the meta device) is found to have exactly the file's tensor names and shapes. Raises
    ``CheckpointError`` saying what is wrong and what to do.
    """
    from safetensors import safe_open

    if task is not None or revision is not None or not Path(path).is_file():
        from .hub import task_file

        path = task_file(path, task, revision)
    meta = read_metadata(path)   # sizes checked (check_model)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_deliverable(meta.deliverable, meta.model).state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"cannot read the tensors in {path} ({e}); it may be truncated: re-copy it") from e
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        raise CheckpointError(f"the tensors in {path} do not fit its model metadata (first: {wrong[0]}); the file "
                              f"is corrupt: re-copy it or retrain that task")
    state = load_tensors(path, "generator", "it may be truncated: re-copy it")
    G = build_deliverable(meta.deliverable, meta.model)
    G.load_state_dict(state)
    G.eval().requires_grad_(False)
    return G.to(device), meta


def save_state(path: str | Path, state: TrainingState) -> None:
    """The training state, atomically. Serialised in memory first: ``torch.save`` to a path names the archive's
    records after the file, and the temporary file's name is random, so the same state would give other bytes."""
    def write(tmp):
        import io

        buf = io.BytesIO()
        torch.save(state.to_dict(), buf)
        Path(tmp).write_bytes(buf.getvalue())

    atomic_write(path, write)


def load_state(path: str | Path) -> TrainingState:
    """A training state saved by ``save_state``, checked for the fields training needs (weights-only load:
    no pickled code runs)."""
    advice = ("the finished tasks' generators stay usable; restore state.pt from a copy, or train into "
              "another --out")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read training state {path} ({type(e).__name__}); it is corrupt: {advice}")
    if isinstance(raw, dict) and "format_version" not in raw and "iter" in raw:
        raise CheckpointError(f"{path} was written by mergan 0.1 (format 1); convert its run folder with "
                              f"{UPGRADE} {Path(path).parent}")
    try:
        return TrainingState.from_dict(raw, str(path))
    except RecordError as e:
        raise CheckpointError(f"{path} is not a training state written by train.py ({e}): {advice}") from None


# ----------------------------------------------------------------------------------------------- live files
LIVE_FORMAT = "mergan-live"
LIVE_FIX = "write it again with python -m mergan.live export RUN"


def write_live(path: str | Path, G_state: dict, D_state: dict, meta: dict) -> None:
    """What a finished run needs to keep learning (``mergan.live``): its raw generator and its critic, in float16,
    keys prefixed ``G.`` and ``D.``, with JSON metadata."""
    tensors = {f"{side}.{k}": (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
               for side, state in (("G", G_state), ("D", D_state)) for k, v in state.items()}
    write_safetensors(path, tensors, encode({"format": LIVE_FORMAT, "format_version": str(FORMAT_VERSION), **meta}))


def read_live(path: str | Path) -> tuple[dict, dict, dict]:
    """(generator state, critic state, metadata) of a live file; raises ``CheckpointError`` saying what to do."""
    raw = read_header(path, LIVE_FORMAT, "live file", LIVE_FIX)
    meta = decode(raw, path)
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{path} is a live file of format {meta.get('format_version', '1')}; {LIVE_FIX}")
    tensors = load_tensors(path, "live file", LIVE_FIX)
    G = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    D = {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}
    return G, D, meta


# ----------------------------------------------------------------------------------------------- evaluators

CLASSIFIER_FORMAT = "mergan-classifier"
CLASSIFIER_FORMAT_VERSION = "2"   # 2: the data it learned by content, its epochs chosen on validation images


def write_classifier(path: str | Path, state: dict, meta: dict) -> None:
    """An evaluator's weights as safetensors with its metadata (``encode``). The MLP's weights in float16 (its 1.7M
    weights: 3.5 MB instead of 7; the same predictions on the real test digits, checked when it was trained), the
    CNNs' in float32."""
    half = meta.get("config", {}).get("arch") == "mlp32"
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    write_safetensors(path, tensors, encode(meta))


def read_classifier(path: str | Path) -> tuple[dict, dict]:
    """An evaluator file's (weights, decoded metadata); raises ``CheckpointError`` saying what is wrong. Building
    the network from ``meta["config"]`` is ``mergan.classifier``'s job."""
    fix = "delete it to retrain (python -m mergan.evaluation train-classifier)"
    meta = decode(read_header(path, CLASSIFIER_FORMAT, "mergan classifier", fix), path)
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path} has broken metadata (no 'config'); {fix}")
    return load_tensors(path, "classifier", fix), meta
