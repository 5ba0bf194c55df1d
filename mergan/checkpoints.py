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
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make run folders unreadable to others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    if missing or not isinstance(meta.get("model"), dict) or meta["model"].get("arch") not in ARCHS:
        raise CheckpointError(f"{path} lacks metadata {missing or ['model']}; it was not written by train.py")
    return meta


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a task's generator from its safetensors file: ``G, meta = load_generator(path)``.

    ``meta['classes']`` lists the class names in task order; conditioning label i draws class i.
    The generator is returned in eval mode with gradients off (batch norm still uses batch statistics).
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    G = build_generator(meta["model"])
    try:
        state = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"cannot read the weights in {path} ({e}); it may be truncated: re-copy it")
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"weights in {path} do not fit its model metadata ({first}); the file is corrupt")
    G.eval().requires_grad_(False)
    return G.to(device), meta


def save_state(path: str | Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read training state {path} ({type(e).__name__}); it is corrupt: delete it "
                              f"to restart from the last finished task")


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
