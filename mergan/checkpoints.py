"""The only code that knows file formats.

Three kinds of file (their places in a run folder: ``mergan.runs``):

- the deliverable, one per task: ``task_XX.safetensors`` holding that task's generator and string metadata
  (``strategy``, ``task``, ``classes``, ``dataset``, ``data_source``, ``model``, ``iters``, ...), enough to
  rebuild it with ``load_generator`` alone;
- the resumable training state, ``state.pt``: generator, critic, optimisers, random-number state and the
  strategy's own tensors;
- an evaluator (``mergan.classifier``): ``<dataset>-<hash>.safetensors``, its weights and JSON metadata
  (format, architecture, class names in output order, data source, test accuracy).

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

from .models import ARCHS, build_generator

FORMAT = "mergan-generator"
FORMAT_VERSION = "1"
REQUIRED_META = ("strategy", "task", "classes", "dataset", "data_source", "model", "iters")


class CheckpointError(Exception):
    """An unreadable, truncated or mismatched checkpoint; the message says which file and what to do."""


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``. Any failure (a full disk, a
    read-only or missing folder) raises ``CheckpointError`` saying so, and the previous file is left as it was."""
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
        raise CheckpointError(f"cannot write {path}: {_write_failure(e, path.parent)}; the previous file (if any) "
                              f"is unchanged") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_failure(e: Exception, folder: Path) -> str:
    """Why a write failed, in words a user can act on."""
    import errno
    import shutil

    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return "the disk is full; free some space and run the same command with --resume"
    if isinstance(e, OSError) and e.errno == errno.EROFS:
        return "the file system is read-only; choose another --out"
    if isinstance(e, PermissionError):
        return "permission denied; make the folder writable or choose another --out"
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        return "a file stands where a folder is needed; choose another --out"
    try:
        if shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free < 1 << 20:
            return "the disk is full; free some space and run the same command with --resume"
    except (OSError, StopIteration):
        pass
    return f"{type(e).__name__}: {str(e)[:100]}"


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


def save_generator(path: str | Path, G: torch.nn.Module, meta: dict) -> None:
    """Save a generator's weights and its metadata (values JSON-encoded unless already strings)."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"generator metadata lacks {missing}")
    strings = {"format": FORMAT, "format_version": FORMAT_VERSION}
    strings.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    write_safetensors(path, tensors, strings)


def read_metadata(path: str | Path) -> dict:
    """The decoded metadata of a generator file, without loading its weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; check the path (runs hold task_XX.safetensors files)")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it may be truncated: "
                              f"re-copy it or retrain that task")
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MeRGAN generator (format {raw.get('format')!r}); "
                              f"use a task_XX.safetensors written by train.py")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {raw.get('format_version')}, this mergan reads "
                              f"{FORMAT_VERSION}; use the mergan version that wrote it")
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path} lacks metadata {missing}; it was not written by train.py")
    check_model(path, meta["model"])
    return meta


# Sane bounds for the sizes in a generator's metadata, checked before anything is built from them (a crafted
# file must not make the loader allocate gigabytes): the widest known model is LSUN's (dim 64, z 128).
MODEL_BOUNDS = {"z_dim": (1, 4096), "n_classes": (1, 1000), "dim": (1, 1024), "channels": (1, 4), "seen": (1, 1000)}


def check_model(path: str | Path, model: dict) -> None:
    """Refuse (``CheckpointError``) a generator's model metadata that is not a known architecture with integer
    sizes within ``MODEL_BOUNDS`` (``read_metadata`` checks every file)."""
    if not isinstance(model, dict) or model.get("arch") not in ARCHS:
        raise CheckpointError(f"{path}: metadata 'model' names no known architecture ({', '.join(ARCHS)}); "
                              f"the file was not written by train.py")
    if model.get("replay") not in (None, "dgr"):
        raise CheckpointError(f"{path}: metadata 'model.replay' is {str(model['replay'])[:40]!r}, not 'dgr'; "
                              f"the file is corrupt")
    keys = [k for k in MODEL_BOUNDS if k != "seen" or model.get("replay") == "dgr"]
    for key in keys:
        value = model.get(key)
        lo, hi = MODEL_BOUNDS[key]
        if type(value) is not int or not lo <= value <= hi:
            raise CheckpointError(f"{path}: metadata 'model.{key}' is {str(value)[:40]!r}, not an integer in "
                                  f"[{lo}, {hi}]; the file is corrupt or crafted: use a task file written by "
                                  f"train.py")


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a task's generator from its safetensors file: ``G, meta = load_generator(path)``.

    ``meta['classes']`` lists the class names in task order; conditioning label i draws class i.
    The generator is returned in eval mode with gradients off (batch norm still uses batch statistics).
    Nothing is built before the metadata's sizes are checked and the network they describe (built without
    memory, on the meta device) is found to have exactly the file's tensor names and shapes.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    meta = read_metadata(path)   # sizes checked (check_model)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_generator(meta["model"]).state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"cannot read the tensors in {path} ({e}); it may be truncated: re-copy it") from e
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        raise CheckpointError(f"the tensors in {path} do not fit its model metadata (first: {wrong[0]}); the file "
                              f"is corrupt: re-copy it or retrain that task")
    try:
        state = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"cannot read the weights in {path} ({e}); it may be truncated: re-copy it") from e
    G = build_generator(meta["model"])
    G.load_state_dict(state)
    G.eval().requires_grad_(False)
    return G.to(device), meta


def save_state(path: str | Path, state: dict) -> None:
    """The training state, atomically. Serialised in memory first: ``torch.save`` to a path names the archive's
    records after the file, and the temporary file's name is random, so the same state would give other bytes."""
    def write(tmp):
        import io

        buf = io.BytesIO()
        torch.save(state, buf)
        Path(tmp).write_bytes(buf.getvalue())

    atomic_write(path, write)


STATE_KEYS = {"task": int, "iter": int, "task_done": bool, "G": dict, "D": dict, "rng": list, "strategy": dict}


def load_state(path: str | Path) -> dict:
    """A training state saved by ``save_state``, checked for the fields training needs (weights-only load:
    no pickled code runs)."""
    advice = ("the finished tasks' generators stay usable; restore state.pt from a copy, or train into "
              "another --out")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read training state {path} ({type(e).__name__}); it is corrupt: {advice}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a training state written by train.py: {advice}")
    for key, kind in STATE_KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{path} is not a training state written by train.py (its {key!r} is missing or "
                                  f"not a {kind.__name__}): {advice}")
    return state


# ----------------------------------------------------------------------------------------------- live files
LIVE_FORMAT = "mergan-live"


def write_live(path: str | Path, G_state: dict, D_state: dict, meta: dict) -> None:
    """What a finished run needs to keep learning (``mergan.live``): its raw generator and its critic, in float16,
    keys prefixed ``G.`` and ``D.``, with JSON metadata."""
    tensors = {f"{side}.{k}": (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
               for side, state in (("G", G_state), ("D", D_state)) for k, v in state.items()}
    write_safetensors(path, tensors, {"format": LIVE_FORMAT, **{k: json.dumps(v) for k, v in meta.items()}})


def read_live(path: str | Path) -> tuple[dict, dict, dict]:
    """(generator state, critic state, metadata) of a live file; raises ``CheckpointError`` saying what to do."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {path}; write it from the run's state with python -m mergan.live export RUN")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
        if raw.get("format") != LIVE_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}")
        meta = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable live file ({e}); export it again") from e
    G = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    D = {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}
    return G, D, meta


# ----------------------------------------------------------------------------------------------- evaluators

CLASSIFIER_FORMAT = "mergan-classifier"
CLASSIFIER_FORMAT_VERSION = "1"


def write_classifier(path: str | Path, state: dict, meta: dict) -> None:
    """An evaluator's weights as safetensors with its metadata (``format`` and ``format_version`` as strings,
    every other value JSON-encoded). The MLP's weights in float16 (its 1.7M weights: 3.5 MB instead of 7; the
    same predictions on the real test digits, checked when it was trained), the CNNs' in float32."""
    half = meta.get("config", {}).get("arch") == "mlp32"
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    strings = {k: v if k in ("format", "format_version") else json.dumps(v) for k, v in meta.items()}
    write_safetensors(path, tensors, strings)


def read_classifier(path: str | Path) -> tuple[dict, dict]:
    """An evaluator file's (weights, decoded metadata); raises ``CheckpointError`` saying what is wrong. Building
    the network from ``meta["config"]`` is ``mergan.classifier``'s job."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no classifier at {path}; train one with python -m mergan.evaluation "
                              f"train-classifier")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); delete it to retrain") from e
    if raw.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path} is not a mergan classifier (format {raw.get('format')!r})")
    try:
        meta = {k: v if k in ("format", "format_version") else json.loads(v) for k, v in raw.items()}
        meta["config"]  # noqa: B018 - every evaluator file has its constructor arguments
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{path} has broken metadata ({e}); delete it to retrain") from e
    return state, meta
