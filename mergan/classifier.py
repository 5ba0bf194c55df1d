"""The evaluators: a classifier network per image shape, its training on real images, and finding it.

The original scores a generator with a classifier pretrained on real data (``mergan.py:200-229``). Its
classifiers exist only as TensorFlow checkpoints (LSUN's not at all), so we train our own:

- ``cnn32`` for 32x32 images (MNIST, SVHN, folders): three strided conv + batch-norm + ReLU stages (32, 64,
  128 channels), a 128-unit layer, dropout; 356k parameters, the size of the small CNNs that pass 99% on full
  MNIST (not measured here: full MNIST is not available offline; on the 4,000 shipped mnist5k training
  digits it reaches 98.2% on the 1,000 test ones). Cheap enough to classify 100k images a minute on two
  CPU cores.
- ``vgg64`` for 64x64 images (LSUN, folders): four VGG stages of two 3x3 convs and a max-pool (32..256
  channels), a 256-unit layer, dropout.
- ``mlp32``, the second evaluator: the paper's MNIST MLP (``pretrain/mnist_test.py:31-47``), trained on another
  split.

All train with Adam and a one-cycle schedule, seeded, with random shifts of up to 2 pixels, and are saved by
``checkpoints.write_classifier``. The classifier predicts class *names*; a run's conditioning label i is
``meta['classes'][i]``, so runs with any class order score right. The evaluation takes
``assets/classifiers/<dataset>-<hash>.safetensors`` when the repository ships one (it does for mnist5k), else
``classifiers/<dataset>-<hash>.safetensors`` under the current directory, else trains that one first (once);
``<hash>`` is of the data source string.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import (CLASSIFIER_FORMAT, CLASSIFIER_FORMAT_VERSION, CheckpointError, read_classifier,
                          write_classifier)
from .batches import to_float
from .data import ASSETS, DIGITS, LSUN_CATEGORIES, load_task_data

log = logging.getLogger("mergan")

SHIPPED = ASSETS / "classifiers"      # looked at first: the mnist5k classifier ships with the repository
CACHE = Path("classifiers")           # relative to the current directory
EPOCHS = 15                           # mnist5k: 480 steps of 128, 98.2% on its 1,000 test digits
MAX_PER_CLASS = 20_000                # real images per class to train on (LSUN has 100k; memory and time)
BATCH = 512                           # inference batch


class EvaluationError(Exception):
    """Bad input to an evaluation; the message says what and how to fix it."""


ARCHS = ("cnn32", "mlp32", "vgg64")


def classifier_config(size: int, channels: int, n_classes: int, arch: str | None = None) -> dict:
    """Constructor arguments of an evaluator for an image shape; stored in the classifier's metadata.

    ``arch`` None: the main evaluator of that size (``cnn32`` or ``vgg64``); ``mlp32``: the second evaluator, of
    another family, the paper's MNIST classifier (``pretrain/mnist_test.py:31-47``)."""
    if arch == "mlp32":
        if size != 32:
            raise EvaluationError(f"the mlp32 evaluator is for 32x32 images, not {size}x{size}")
        return {"arch": "mlp32", "size": 32, "channels": channels, "n_classes": n_classes,
                "widths": [1024, 512, 256], "hidden": 128, "dropout": 0.3}
    if arch not in (None, "cnn32", "vgg64"):
        raise EvaluationError(f"unknown classifier architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if size == 32:
        return {"arch": "cnn32", "size": 32, "channels": channels, "n_classes": n_classes,
                "widths": [32, 64, 128], "hidden": 128, "dropout": 0.3}
    if size == 64:
        return {"arch": "vgg64", "size": 64, "channels": channels, "n_classes": n_classes,
                "widths": [32, 64, 128, 256], "hidden": 256, "dropout": 0.3}
    raise EvaluationError(f"no evaluator architecture for {size}x{size} images; use 32 or 64")


def _conv(cin, cout, stride=1, k=3):
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class Classifier(nn.Module):
    """A small CNN; ``features`` is the penultimate layer used for FID, ``forward`` gives logits."""

    def __init__(self, arch: str, size: int, channels: int, n_classes: int, widths: list, hidden: int,
                 dropout: float):
        super().__init__()
        layers, c = [], channels
        if arch == "mlp32":   # fully connected: C*32*32 -> widths... -> hidden, ReLU, no normalisation
            layers.append(nn.Flatten())
            c = channels * size * size
            for w in widths:
                layers += [nn.Linear(c, w), nn.ReLU(inplace=True)]
                c = w
            self.body = nn.Sequential(*layers, nn.Linear(c, hidden), nn.ReLU(inplace=True))
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
            self.num_features = hidden
            return
        for i, w in enumerate(widths):
            if arch == "cnn32":   # strided convs: cheap on the CPU, 32 -> 16 -> 8 -> 4
                layers += _conv(c, w, stride=2, k=5 if i == 0 else 3)
            elif arch == "vgg64":  # VGG stages: 64 -> 32 -> 16 -> 8 -> 4
                layers += _conv(c, w) + _conv(w, w) + [nn.MaxPool2d(2)]
            else:
                raise EvaluationError(f"unknown classifier architecture {arch!r}")
            c = w
        side = size // 2 ** len(widths)
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, hidden), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.num_features = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build_classifier(cfg: dict) -> Classifier:
    return Classifier(**cfg)


@dataclass
class Evaluator:
    """A trained classifier with its metadata; ``classes`` are names in the classifier's output order."""

    net: Classifier
    meta: dict
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) -> (predicted class indices, penultimate features), both on the CPU."""
        self.net.eval()
        device = next(self.net.parameters()).device
        preds, feats = [], []
        for i in range(0, len(images), BATCH):
            h = self.net.features(to_float(images[i:i + BATCH]).to(device))
            preds.append(self.net.head(h).argmax(1).cpu())
            feats.append(h.float().cpu())
        if not preds:
            return torch.empty(0, dtype=torch.long), torch.empty(0, self.net.num_features)
        return torch.cat(preds), torch.cat(feats)

    def index(self, name: str) -> int:
        return self.classes.index(name)


def save_classifier(path: str | Path, net: nn.Module, meta: dict) -> None:
    """Save an evaluator (the file format is ``checkpoints.write_classifier``'s)."""
    write_classifier(path, net.state_dict(), meta)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Evaluator:
    """An evaluator from its file; every problem is an ``EvaluationError`` that says what to do."""
    try:
        state, meta = read_classifier(path)
    except CheckpointError as e:
        raise EvaluationError(str(e)) from e
    try:
        net = build_classifier(meta["config"])
        net.load_state_dict(state)
    except (RuntimeError, TypeError, EvaluationError) as e:
        raise EvaluationError(f"weights in {path} do not fit its config ({str(e).splitlines()[0]}); delete it") from e
    return Evaluator(net.to(device).eval(), meta, Path(path))


def _shift(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (border replicated)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[torch.arange(n, device=x.device)[:, None, None, None],
              torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def fit_classifier(cfg: dict, images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0,
                   device: str | torch.device = "cpu", batch_size: int = 128, lr: float = 2e-3) -> Classifier:
    """Train a classifier on uint8 images and integer labels; the same seed gives the same weights."""
    if len(images) == 0:
        raise EvaluationError("no images to train a classifier on")
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):   # seeded without touching the caller's random state
        torch.manual_seed(seed)
        net = build_classifier(cfg).to(device).train()
        g = torch.Generator().manual_seed(seed)
        steps_per_epoch = max(1, math.ceil(len(images) / batch_size))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
        for _ in range(epochs):
            perm = torch.randperm(len(images), generator=g)
            for i in range(0, len(images), batch_size):
                idx = perm[i:i + batch_size]
                if len(idx) < 2:   # batch norm needs two images
                    continue
                x = _shift(to_float(images[idx]).to(device), 2, g)
                loss = F.cross_entropy(net(x), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return net.eval()


def stack(dataset, limit: int | None = None) -> torch.Tensor:
    """The first ``limit`` images of a per-class dataset as one uint8 tensor."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if hasattr(dataset, "images"):
        return dataset.images[:n]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=256,
                                         num_workers=min(8, torch.get_num_threads()))
    return torch.cat(list(loader)) if n else torch.empty(0)


def _split_data(data, classes: list[str], max_per_class: int | None, seed: int):
    """(train images, train labels, test images, test labels, test split name) over ``classes``."""
    xs, ys, txs, tys = [], [], [], []
    held_out = not all(c in data.test for c in classes)
    for k, c in enumerate(classes):
        x = stack(data.train[c], max_per_class)
        if held_out:  # no test split: a seeded tenth of train
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + k))
            n_test = max(1, len(x) // 10)
            tx, x = x[perm[:n_test]], x[perm[n_test:]]
        else:
            tx = stack(data.test[c])
        xs.append(x), ys.append(torch.full((len(x),), k)), txs.append(tx), tys.append(torch.full((len(tx),), k))
    split = "held-out tenth of train" if held_out else "test"
    return torch.cat(xs), torch.cat(ys), torch.cat(txs), torch.cat(tys), split


def per_class_accuracy(evaluator_or_net, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy of each class (label k is ``classes[k]``) for a classifier on uint8 images."""
    ev = evaluator_or_net if isinstance(evaluator_or_net, Evaluator) else Evaluator(evaluator_or_net, {})
    preds, _ = ev.run(images)
    return {c: rate(preds[labels == k] == k) for k, c in enumerate(classes) if (labels == k).any()}


def classifier_classes(dataset: str, data_dir: Path) -> list[str] | None:
    """Every class of a dataset, which the evaluator learns (None: the loader's own list)."""
    if dataset in ("mnist", "svhn"):
        return list(DIGITS)
    if dataset == "lsun":   # the categories downloaded
        found = [c for c in LSUN_CATEGORIES if (data_dir / f"{c}_train_lmdb").is_dir()]
        extra = sorted(p.name[: -len("_train_lmdb")] for p in data_dir.glob("*_train_lmdb") if p.is_dir())
        return found + [c for c in extra if c not in found]
    return None


def cache_name(dataset: str, data_source: str, size: int, channels: int, arch: str | None = None) -> str:
    """``<dataset>-<hash>.safetensors`` (the main evaluator) or ``<dataset>-<arch>-<hash>.safetensors`` (another);
    the hash is of the data source (and the image shape for folders)."""
    key = data_source if dataset != "folder" else f"{data_source}|{channels}x{size}"
    tag = f"-{arch}" if arch not in (None, "cnn32", "vgg64") else ""
    return f"{dataset}{tag}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.safetensors"


def train_classifier(dataset: str, data_dir: str | Path = "data", *, mnist_source: str = "auto",
                     lsun_cap: int = 100_000, image_size: int = 32, channels: int = 3, epochs: int | None = None,
                     seed: int = 0, device: str = "cpu", out: str | Path | None = None,
                     max_per_class: int | None = MAX_PER_CLASS, arch: str | None = None) -> Evaluator:
    """Train an evaluator on a dataset's real training images, test it, and save it (default: the cache).

    ``arch`` None: the main evaluator (all the training images, seed ``seed``). ``mlp32``: the second evaluator,
    trained on another split, a seeded nine tenths of the training images (seed ``seed + 1``), the last tenth
    kept for a validation accuracy; both are tested on the same real test split."""
    data_dir = Path(data_dir)
    epochs = EPOCHS if epochs is None else epochs
    if epochs < 1:
        raise EvaluationError(f"epochs must be at least 1, got {epochs}")
    names = classifier_classes(dataset, data_dir)
    data = load_task_data(dataset, data_dir, ",".join(names) if names else None, mnist_source=mnist_source,
                          lsun_cap=lsun_cap, image_size=image_size, channels=channels)
    x, y, tx, ty, split = _split_data(data, data.classes, max_per_class, seed)
    cfg = classifier_config(data.size, data.channels, len(data.classes), arch)
    extra = {}
    if cfg["arch"] == "mlp32":
        seed += 1
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        n_val = len(x) // 10
        vx, vy, x, y = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
    log.info("training the %s evaluator on %d real %s images (%d classes), %d epochs", cfg["arch"], len(x),
             dataset, len(data.classes), epochs)
    start = time.time()
    net = fit_classifier(cfg, x, y, epochs, seed, device)
    seconds = time.time() - start
    per_class = per_class_accuracy(net, tx, ty, data.classes)
    preds, _ = Evaluator(net, {}).run(tx)
    if cfg["arch"] == "mlp32":
        extra = {"validation_accuracy": rate(Evaluator(net, {}).run(vx)[0] == vy), "validation_images": len(vx),
                 "train_split": "a seeded nine tenths of the training images"}
    meta = {"format": CLASSIFIER_FORMAT, "format_version": CLASSIFIER_FORMAT_VERSION, "config": cfg, "dataset": dataset,
            "data_source": data.source, "classes": list(data.classes), "test_accuracy": rate(preds == ty),
            "test_split": split, "test_images": len(tx), "per_class_accuracy": per_class,
            "train_images": len(x), "epochs": epochs, "seed": seed, "train_seconds": round(seconds, 1), **extra}
    path = Path(out) if out else CACHE / cache_name(dataset, data.source, data.size, data.channels, cfg["arch"])
    save_classifier(path, net, meta)
    return Evaluator(net, meta, path)


SECOND_EPOCHS = 60   # mlp32 on mnist5k: 97.4% on its 1,000 test digits (30 epochs: 97.1%, 100: 97.4%)


def find_or_train_classifier(dataset: str, data_source: str, size: int, channels: int, train_kwargs: dict,
                             epochs: int | None = None, device: str = "cpu", arch: str | None = None) -> Evaluator:
    """The shipped classifier, else the cached one, else a newly trained one saved to the cache."""
    name = cache_name(dataset, data_source, size, channels, arch)
    for folder in (SHIPPED, CACHE):
        if (folder / name).is_file():
            log.info("evaluator: %s", folder / name)
            return load_classifier(folder / name, device)
    log.info("no evaluator for this data in %s or %s: training one (done once, then cached)", SHIPPED, CACHE)
    if epochs is None and arch == "mlp32":
        epochs = SECOND_EPOCHS
    ev = train_classifier(dataset, epochs=epochs, device=device, out=CACHE / name, arch=arch, **train_kwargs)
    log.info("evaluator accuracy on real %s images: %.2f%% (%s)", ev.meta["test_split"],
             100 * ev.meta["test_accuracy"], ev.path)
    return ev


def rate(hits: torch.Tensor) -> float:
    """The share of true values, rounded as every accuracy of the metrics."""
    return round(float(hits.float().mean()), 6)
