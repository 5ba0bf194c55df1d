"""The evaluators: a classifier network per image shape, its training on real images, and finding it.

The original scores a generator with a classifier pretrained on real data (``mergan.py:200-229``). Its
classifiers exist only as TensorFlow checkpoints (LSUN's not at all), so we train our own:

- ``cnn32`` for 32x32 images (MNIST, SVHN, folders): three strided conv + batch-norm + ReLU stages (32, 64,
  128 channels), a 128-unit layer, dropout; 356k parameters, the size of the small CNNs that pass 99% on
  MNIST. Cheap enough to classify 100k images a minute on two CPU cores.
- ``vgg64`` for 64x64 images (LSUN, folders): four VGG stages of two 3x3 convs and a max-pool (32..256
  channels), a 256-unit layer, dropout.
- ``mlp32``, the second evaluator: the paper's MNIST MLP (``pretrain/mnist_test.py:31-47``), trained on another
  split.

All train with Adam and a one-cycle schedule, seeded, with random shifts of up to 2 pixels, and are saved by
``checkpoints.write_classifier``; the epochs are chosen on a held-out validation share (``train_classifier``).
The classifier predicts class *names*; a run's conditioning label i is ``meta.classes[i]``, so runs with any
class order score right. The evaluation takes ``assets/classifiers/<dataset>-<arch>-<hash>.safetensors`` when
the repository ships one (it does for the official MNIST), else the same name in ``classifiers/`` under the
current directory, else trains that one first (once); ``<hash>`` is of the images it learns, by content.
"""
from __future__ import annotations

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
from .records import fingerprint

log = logging.getLogger("mergan")

SHIPPED = ASSETS / "classifiers"      # looked at first: the official MNIST's evaluators ship with the repository
CACHE = Path("classifiers")           # relative to the current directory
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
    return per_class_rates(ev.run(images)[0], labels, classes)


def per_class_rates(preds: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """{class: share of its images (label k is ``classes[k]``) predicted as k}, for the classes present."""
    return {c: rate(preds[labels == k] == k) for k, c in enumerate(classes) if (labels == k).any()}


def confusion_counts(preds: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict[str, dict[str, int]]:
    """{true class: {predicted class: number of its images}}: predictions and labels (N,) int64 indices into
    ``classes``; only nonzero counts, true classes in ``classes``' order."""
    n = len(classes)
    counts = torch.bincount(labels * n + preds, minlength=n * n).view(n, n)
    return {c: {classes[j]: int(counts[k, j]) for j in range(n) if counts[k, j]}
            for k, c in enumerate(classes) if counts[k].any()}


def classifier_classes(dataset: str, data_dir: Path) -> list[str] | None:
    """Every class of a dataset, which the evaluator learns (None: the loader's own list)."""
    if dataset in ("mnist", "svhn"):
        return list(DIGITS)
    if dataset == "lsun":   # the categories downloaded
        found = [c for c in LSUN_CATEGORIES if (data_dir / f"{c}_train_lmdb").is_dir()]
        extra = sorted(p.name[: -len("_train_lmdb")] for p in data_dir.glob("*_train_lmdb") if p.is_dir())
        return found + [c for c in extra if c not in found]
    return None


def evaluator_data(dataset: str, data_dir: str | Path = "data", *, lsun_cap: int = 100_000, image_size: int = 32,
                   channels: int = 3):
    """Every class of the dataset (``TaskData``), as an evaluator learns them."""
    data_dir = Path(data_dir)
    names = classifier_classes(dataset, data_dir)
    return load_task_data(dataset, data_dir, ",".join(names) if names else None, lsun_cap=lsun_cap,
                          image_size=image_size, channels=channels)


def cache_name(data, arch: str) -> str:
    """``<dataset>-<arch>-<hash>.safetensors``: the hash is of the images the evaluator learns (every class's
    content, ``records.DataSource``) and their shape, so an evaluator is reused only for the same images."""
    key = fingerprint(data.source.fingerprint, f"{data.channels}x{data.size}")
    return f"{data.name}-{arch}-{key}.safetensors"


def default_arch(size: int) -> str:
    return classifier_config(size, 1, 10)["arch"]


def _validation_split(n_per_class: list[int], share: float, seed: int) -> torch.Tensor:
    """A seeded boolean mask over the training images: ``share`` of each class held out for validation."""
    masks = []
    for k, n in enumerate(n_per_class):
        m = torch.zeros(n, dtype=torch.bool)
        m[torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1009 + k))[: max(1, round(n * share))]] = True
        masks.append(m)
    return torch.cat(masks)


def train_classifier(dataset: str, data_dir: str | Path = "data", *, lsun_cap: int = 100_000, image_size: int = 32,
                     channels: int = 3, epochs=None, seed: int = 0, device: str = "cpu",
                     out: str | Path | None = None, max_per_class: int | None = MAX_PER_CLASS,
                     arch: str | None = None, data=None) -> Evaluator:
    """Train an evaluator on a dataset's real training images and save it (default: the cache).

    A seeded twelfth of each class's training images (MNIST: 5,000 of 60,000, the original's validation share)
    is held out to choose the number of epochs among ``epochs`` (default ``EPOCH_CHOICES[arch]``); the network
    with the best validation accuracy is kept and tested on the real test split (a held-out tenth of the rest
    where there is none). The main evaluator (``arch`` None: ``cnn32`` or ``vgg64``) uses seed ``seed``; the
    second (``mlp32``) seed ``seed + 1``, so it learns from another split. The main one also stores the
    real-data ceiling of reverse accuracy (``REVERSE_PER_CLASS`` real training images per class, the same
    recipe, tested on the same test images). ``data``: the loaded ``evaluator_data``, if at hand."""
    data = data or evaluator_data(dataset, data_dir, lsun_cap=lsun_cap, image_size=image_size, channels=channels)
    cfg = classifier_config(data.size, data.channels, len(data.classes), arch)
    choices = tuple(EPOCH_CHOICES[cfg["arch"]] if epochs is None else
                    ([epochs] if isinstance(epochs, int) else epochs))
    if not choices or min(choices) < 1:
        raise EvaluationError(f"epochs must be at least 1, got {choices}")
    x, y, tx, ty, split = _split_data(data, data.classes, max_per_class, seed)
    if cfg["arch"] == "mlp32":
        seed += 1
    val = _validation_split(torch.bincount(y, minlength=len(data.classes)).tolist(), VALIDATION_SHARE, seed)
    vx, vy, x, y = x[val], y[val], x[~val], y[~val]
    log.info("training the %s evaluator on %d real %s images (%d classes), epochs %s chosen on %d validation "
             "images", cfg["arch"], len(x), data.name, len(data.classes), ",".join(map(str, choices)), len(vx))
    start, best, tried = time.time(), None, {}
    for e in choices:
        net = fit_classifier(cfg, x, y, e, seed, device)
        tried[e] = rate(Evaluator(net, {}).run(vx)[0] == vy)
        log.info("  %d epochs: %.2f%% on the validation images", e, 100 * tried[e])
        if best is None or tried[e] > tried[best[0]]:
            best = (e, net)
    chosen, net = best
    seconds = time.time() - start
    per_class = per_class_accuracy(net, tx, ty, data.classes)
    preds, _ = Evaluator(net, {}).run(tx)
    meta = {"format": CLASSIFIER_FORMAT, "format_version": CLASSIFIER_FORMAT_VERSION, "config": cfg,
            "dataset": data.name, "data_fingerprint": data.source.fingerprint, "data_source": data.source.to_dict(),
            "classes": list(data.classes),
            "test_accuracy": rate(preds == ty), "test_split": split, "test_images": len(tx),
            "per_class_accuracy": per_class, "train_images": len(x), "validation_images": len(vx),
            "validation_accuracy": tried[chosen], "epoch_choices": {str(k): v for k, v in tried.items()},
            "epochs": chosen, "seed": seed, "train_seconds": round(seconds, 1)}
    if cfg["arch"] != "mlp32":
        meta["reverse_ceiling"] = reverse_ceiling(cfg, x, y, tx, ty, data.classes, chosen, seed, device)
    path = Path(out) if out else CACHE / cache_name(data, cfg["arch"])
    save_classifier(path, net, meta)
    return Evaluator(net, meta, path)


REVERSE_PER_CLASS = 1000   # images per class a reverse-accuracy classifier learns from (generated, or real)


def reverse_ceiling(cfg: dict, x, y, tx, ty, classes: list[str], epochs: int, seed: int, device) -> dict:
    """Reverse accuracy's real-data ceiling: the reverse recipe (``metrics.reverse_accuracy``) trained on
    ``REVERSE_PER_CLASS`` seeded real training images per class instead of generated ones."""
    g = torch.Generator().manual_seed(seed + 7)
    keep = torch.cat([torch.nonzero(y == k).flatten()[torch.randperm(int((y == k).sum()), generator=g)
                                                      [:REVERSE_PER_CLASS]] for k in range(len(classes))])
    net = fit_classifier({**cfg, "n_classes": len(classes)}, x[keep], y[keep], epochs, seed, device)
    preds, _ = Evaluator(net, {}).run(tx)
    per_class = per_class_rates(preds, ty, classes)
    return {"images_per_class": int(min(REVERSE_PER_CLASS, torch.bincount(y).min())), "epochs": epochs,
            "accuracy": rate(preds == ty), "per_class": per_class}


# Epochs tried per architecture, the best on the validation images kept (MNIST's choice: see the README).
EPOCH_CHOICES = {"cnn32": (5, 10, 15, 20), "mlp32": (15, 30, 60), "vgg64": (15,)}
VALIDATION_SHARE = 1 / 12


def find_classifier(source, size: int, channels: int, arch: str | None = None, device="cpu") -> Evaluator | None:
    """A shipped or cached evaluator that learned the very images of ``source``'s classes (``records.DataSource``,
    compared class by class by content) at this image shape, or None; never trains. For what shows runs (the
    demo), which knows the runs' classes only."""
    arch = arch or default_arch(size)
    for folder in (SHIPPED, CACHE):
        for path in sorted(folder.glob(f"{source.dataset}-{arch}-*.safetensors")) if folder.is_dir() else []:
            try:
                ev = load_classifier(path, device)
            except EvaluationError as e:
                log.warning("%s", str(e)[:300])
                continue
            learned = ev.meta.get("data_source", {}).get("classes", {})
            cfg = ev.meta["config"]
            if (cfg["size"], cfg["channels"]) == (size, channels) and all(
                    learned.get(c, {}).get("fingerprint") == d.fingerprint for c, d in source.classes.items()):
                return ev
    return None


def find_or_train_classifier(data, arch: str, train_kwargs: dict, epochs=None, device: str = "cpu") -> Evaluator:
    """The shipped evaluator of these images, else the cached one, else a newly trained one saved to the cache.

    ``data`` is the ``evaluator_data`` (every class of the dataset): an evaluator is found only if it learned
    exactly these images (its file name and its ``data_fingerprint``), so one trained before the data changed is
    never reused; the line logged says which was taken or why one is trained."""
    name = cache_name(data, arch)
    for folder in (SHIPPED, CACHE):
        if (folder / name).is_file():
            ev = load_classifier(folder / name, device)
            if ev.meta.get("data_fingerprint") == data.source.fingerprint:
                log.info("evaluator (%s): %s", arch, folder / name)
                return ev
    stale = sorted(p.name for folder in (SHIPPED, CACHE) if folder.is_dir()
                   for p in folder.glob(f"{data.name}-{arch}-*.safetensors"))
    why = (f"the {data.name} evaluators there ({', '.join(stale[:3])}) learned other images" if stale else
           "none is there")
    log.info("no %s evaluator of these images in %s or %s (%s): training one (done once, then cached)", arch,
             SHIPPED, CACHE, why)
    ev = train_classifier(data.name, epochs=epochs, device=device, out=CACHE / name, arch=arch, data=data,
                          **train_kwargs)
    log.info("evaluator accuracy on real %s images: %.2f%% (%s)", ev.meta["test_split"],
             100 * ev.meta["test_accuracy"], ev.path)
    return ev


def rate(hits: torch.Tensor) -> float:
    """The share of true values, rounded as every accuracy of the metrics."""
    return round(float(hits.float().mean()), 6)
