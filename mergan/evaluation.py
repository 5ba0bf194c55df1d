"""Evaluation of a run: the paper's accuracy on generated images, reverse accuracy, FID, pictures of forgetting.

    python -m mergan.evaluation train-classifier --dataset mnist --mnist-source mnist5k   # prints test accuracy
    python train.py --test --out runs/mnist-ra          # writes metrics.json, forgetting_grid.png, forgetting.gif,
                                                        # accuracy.png into the run folder

The original scores a generator with a classifier pretrained on real data (``mergan.py:200-229``): 6,400
images of every class seen so far, the accuracy of each class, and their unweighted mean (Table 1, and Table
2's "Acc."). Its classifiers exist only as TensorFlow checkpoints (LSUN's not at all), so we train our own:

- ``cnn32`` for 32x32 images (MNIST, SVHN, folders): three strided conv + batch-norm + ReLU stages (32, 64,
  128 channels), a 128-unit layer, dropout; 356k parameters, the size of the small CNNs that pass 99% on full
  MNIST (not measured here: full MNIST is not available offline; on the 4,000 shipped mnist5k training
  digits it reaches 98.2% on the 1,000 test ones). Cheap enough to classify 100k images a minute on two
  CPU cores.
- ``vgg64`` for 64x64 images (LSUN, folders): four VGG stages of two 3x3 convs and a max-pool (32..256
  channels), a 256-unit layer, dropout.

Both train with Adam and a one-cycle schedule, seeded, with random shifts of up to 2 pixels, and are saved as
safetensors whose metadata carries the architecture, the class names in the classifier's order, the data source
and the accuracy on the real test split (or on a held-out tenth of train when the dataset has no test split).
The classifier predicts class *names*; a run's conditioning label i is ``meta['classes'][i]``, so runs with
any class order score right. The evaluation takes ``assets/classifiers/<dataset>-<hash>.safetensors`` when the
repository ships one (it does for mnist5k), else ``classifiers/<dataset>-<hash>.safetensors`` under the current
directory, else trains that one first (once); ``<hash>`` is of the data source string.

The paper gives no protocol for reverse accuracy and FID (reference doc section 3.3); ours:

- Reverse accuracy: a fresh classifier of the evaluator's architecture and schedule, trained only on images of
  the run's final generator, balanced over its classes, as many per class as the real training data has
  (capped at ``eval_samples``), then tested on the real test split (train when there is none). The same
  recipe on real images is the evaluator itself, so its test accuracy is the reference point.
- FID in the evaluator's feature space (its 128/256-unit penultimate layer), per class and over all classes,
  final generator vs the real test split (train when there is none). Computed with torchmetrics'
  ``FrechetInceptionDistance`` given a custom feature module; the features are extracted once and shared with
  the accuracy. Not comparable with Inception FIDs, and noisy when a class has few real images (mnist5k: 100).
- Inception FID only with local weights (``--inception-weights``): a torchvision ``inception_v3`` state dict,
  or torchmetrics' FID weights file (that one needs the ``torch-fidelity`` package). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, atomic_write, atomic_write_text, load_generator, read_metadata
from .data import ASSETS, DIGITS, LSUN_CATEGORIES, DataError, load_task_data, to_float
from .sampling import sample

log = logging.getLogger("mergan")

FORMAT = "mergan-classifier"
FORMAT_VERSION = "1"
SHIPPED = ASSETS / "classifiers"      # looked at first: the mnist5k classifier ships with the repository
CACHE = Path("classifiers")           # relative to the current directory
EPOCHS = 15                           # mnist5k: 480 steps of 128, 98.2% on its 1,000 test digits
MAX_PER_CLASS = 20_000                # real images per class to train on (LSUN has 100k; memory and time)
PICTURE_SEED = 1234                   # fixed noise of the pictures, the trainer's sample_seed
BATCH = 512                           # inference batch


class EvaluationError(Exception):
    """Bad input to an evaluation; the message says what and how to fix it."""


# ----------------------------------------------------------------------------------------------- classifiers

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


def _stack(dataset, limit: int | None = None) -> torch.Tensor:
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
        x = _stack(data.train[c], max_per_class)
        if held_out:  # no test split: a seeded tenth of train
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + k))
            n_test = max(1, len(x) // 10)
            tx, x = x[perm[:n_test]], x[perm[n_test:]]
        else:
            tx = _stack(data.test[c])
        xs.append(x), ys.append(torch.full((len(x),), k)), txs.append(tx), tys.append(torch.full((len(tx),), k))
    split = "held-out tenth of train" if held_out else "test"
    return torch.cat(xs), torch.cat(ys), torch.cat(txs), torch.cat(tys), split


def per_class_accuracy(evaluator_or_net, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy of each class (label k is ``classes[k]``) for a classifier on uint8 images."""
    ev = evaluator_or_net if isinstance(evaluator_or_net, Evaluator) else Evaluator(evaluator_or_net, {})
    preds, _ = ev.run(images)
    return {c: _rate(preds[labels == k] == k) for k, c in enumerate(classes) if (labels == k).any()}


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
        extra = {"validation_accuracy": _rate(Evaluator(net, {}).run(vx)[0] == vy), "validation_images": len(vx),
                 "train_split": "a seeded nine tenths of the training images"}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg, "dataset": dataset,
            "data_source": data.source, "classes": list(data.classes), "test_accuracy": _rate(preds == ty),
            "test_split": split, "test_images": len(tx), "per_class_accuracy": per_class,
            "train_images": len(x), "epochs": epochs, "seed": seed, "train_seconds": round(seconds, 1), **extra}
    path = Path(out) if out else CACHE / cache_name(dataset, data.source, data.size, data.channels, cfg["arch"])
    save_classifier(path, net, meta)
    return Evaluator(net, meta, path)


def save_classifier(path: str | Path, net: Classifier, meta: dict) -> None:
    """Weights as safetensors with the metadata; the MLP's in float16 (its 1.7M weights: 3.5 MB instead of 7; the
    same predictions on the real test digits, checked when it was trained), the CNNs' in float32."""
    from safetensors.torch import save_file

    half = meta.get("config", {}).get("arch") == "mlp32"
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in net.state_dict().items()}
    strings = {k: v if k in ("format", "format_version") else json.dumps(v) for k, v in meta.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=strings))


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Evaluator:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"no classifier at {path}; train one with python -m mergan.evaluation "
                              f"train-classifier")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:
        raise EvaluationError(f"{path} is not a readable safetensors file ({e}); delete it to retrain") from e
    if raw.get("format") != FORMAT:
        raise EvaluationError(f"{path} is not a mergan classifier (format {raw.get('format')!r})")
    try:
        meta = {k: v if k in ("format", "format_version") else json.loads(v) for k, v in raw.items()}
        cfg = meta["config"]
    except (json.JSONDecodeError, KeyError) as e:
        raise EvaluationError(f"{path} has broken metadata ({e}); delete it to retrain") from e
    net = build_classifier(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise EvaluationError(f"weights in {path} do not fit its config ({str(e).splitlines()[0]}); delete it") from e
    return Evaluator(net.to(device).eval(), meta, path)


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


# ----------------------------------------------------------------------------------------------- metrics

class _Precomputed(nn.Module):
    """The feature module handed to torchmetrics: features are extracted once, by the evaluator."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D); None with fewer than 2 each."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(a) < 2 or len(b) < 2:
        return None
    fid = FrechetInceptionDistance(feature=_Precomputed(a.shape[1]), reset_real_features=True)
    fid.update(a.double(), real=True)
    fid.update(b.double(), real=False)
    return round(max(0.0, float(fid.compute())), 4)


def generated_accuracy(G, run_classes: list[str], evaluator: Evaluator, n: int, seed: int = 0,
                       device=None, keep: bool = False):
    """Accuracy of the evaluator on ``n`` generated images of each class (label i draws ``run_classes[i]``).

    Returns ({class: accuracy}, {class: (uint8 images, features)} if ``keep`` else None).
    """
    acc, kept = {}, {} if keep else None
    for label, name in enumerate(run_classes):
        images = sample(G, torch.full((n,), label), seed, device)
        preds, feats = evaluator.run(images)
        acc[name] = _rate(preds == evaluator.index(name))
        if keep:
            kept[name] = (images, feats)
    return acc, kept


def reverse_accuracy(cfg: dict, fake: dict[str, torch.Tensor], real_x: torch.Tensor, real_y: torch.Tensor,
                     classes: list[str], epochs: int, seed: int, device) -> dict:
    """Train on generated images only (``fake[class]``, label = index in ``classes``), test on real ones."""
    x = torch.cat([fake[c] for c in classes])
    y = torch.cat([torch.full((len(fake[c]),), k) for k, c in enumerate(classes)])
    net = fit_classifier({**cfg, "n_classes": len(classes)}, x, y, epochs, seed, device)
    per_class = per_class_accuracy(net, real_x, real_y, classes)
    preds, _ = Evaluator(net, {}).run(real_x)
    return {"accuracy": _rate(preds == real_y), "average": _mean(per_class.values()),
            "per_class": per_class, "train_images": len(x), "test_images": len(real_x), "epochs": epochs}


def _rate(hits: torch.Tensor) -> float:
    return round(float(hits.float().mean()), 6)


def _mean(values) -> float:
    values = list(values)
    return round(float(sum(values) / len(values)), 6) if values else None


# ----------------------------------------------------------------------------------------------- Inception FID

class _InceptionFeatures(nn.Module):
    """torchvision's inception_v3 pool features (2048) of uint8 images: [-1, 1], 299x299, grey to RGB."""

    def __init__(self, state: dict):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits="AuxLogits.fc.weight" in state, init_weights=False,
                           transform_input=False, num_classes=state["fc.weight"].shape[0])
        net.load_state_dict(state)
        net.fc = nn.Identity()
        self.net = net.eval()
        self.num_features = 2048

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div(127.5).sub(1).expand(-1, 3, -1, -1)
        # The torchvision weights take ImageNet-normalised input and turn it into [-1, 1] when transform_input
        # is on; we give [-1, 1] directly with it off, which is the same.
        return self.net(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))


def inception_fid(weights: str | Path, real: torch.Tensor, fake: torch.Tensor, device) -> dict:
    """FID with local Inception weights between uint8 image sets; nothing is downloaded."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = Path(weights)
    if not path.is_file():
        raise EvaluationError(f"no Inception weights at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EvaluationError(f"cannot read Inception weights {path} ({type(e).__name__}); give a torchvision "
                              f"inception_v3 state dict or torchmetrics' FID weights file") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise EvaluationError(f"{path} is not an inception_v3 state dict")
    if state["fc.weight"].shape[0] == 1008:   # the TF-ported FID Inception that torchmetrics and torch-fidelity use
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise EvaluationError(f"{path} is the FID Inception weights file; reading it needs torch-fidelity "
                                  f"(pip install torch-fidelity), or give a torchvision inception_v3 state "
                                  f"dict") from None
        fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
        kind = "torchmetrics FID Inception (torch-fidelity), 2048-d pool features"
    else:
        try:
            fid = FrechetInceptionDistance(feature=_InceptionFeatures(state))
        except RuntimeError as e:
            raise EvaluationError(f"{path} does not fit torchvision's inception_v3 ({str(e).splitlines()[0]})") from e
        kind = "torchvision inception_v3, 2048-d pool features"
    fid = fid.to(device)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), 64):
            batch = images[i:i + 64].to(device)
            fid.update(batch.expand(-1, 3, -1, -1).contiguous(), real=is_real)
    return {"overall": float(fid.compute()), "features": kind, "weights": str(path), "real_images": len(real),
            "fake_images": len(fake)}


# ----------------------------------------------------------------------------------------------- pictures

def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1
        return ImageFont.load_default()


def _pil(images: torch.Tensor, scale: int = 1):
    """uint8 (N, C, H, W) -> one PIL image with the N images side by side."""
    from PIL import Image

    row = torch.cat(list(images), dim=2).permute(1, 2, 0).numpy()
    pil = Image.fromarray(row[:, :, 0] if row.shape[2] == 1 else row).convert("RGB")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def forgetting_grid(samples: list[dict], classes: list[str], columns: list[str], per_cell: int, size: int):
    """A row per class, a column per checkpoint; grey where the class was not learned yet (PIL image)."""
    from PIL import Image, ImageDraw

    pad, left, top = 6, 10 + 8 * max(len(c) for c in classes), 22
    cell_w, cell_h = per_cell * size, size
    img = Image.new("RGB", (left + len(columns) * (cell_w + pad), top + len(classes) * (cell_h + pad)), "white")
    draw, font = ImageDraw.Draw(img), _font(12)
    for j, title in enumerate(columns):
        draw.text((left + j * (cell_w + pad), 4), title, fill="black", font=font)
    for i, c in enumerate(classes):
        y = top + i * (cell_h + pad)
        draw.text((4, y + cell_h // 2 - 6), c, fill="black", font=font)
        for j, cells in enumerate(samples):
            x = left + j * (cell_w + pad)
            if c in cells:
                img.paste(_pil(cells[c][:per_cell]), (x, y))
            else:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=(160, 160, 160))
    return img


def forgetting_frames(samples: list[dict], classes: list[str], columns: list[str], per_row: int, size: int):
    """One frame per checkpoint: every class seen so far, a grey row for the others."""
    from PIL import Image, ImageDraw

    scale = 2 if size <= 32 else 1
    pad, left, top = 4, 10 + 8 * max(len(c) for c in classes), 22
    w, h = per_row * size * scale, size * scale
    frames = []
    for title, cells in zip(columns, samples, strict=True):
        img = Image.new("RGB", (left + w + pad, top + len(classes) * (h + pad)), "white")
        draw, font = ImageDraw.Draw(img), _font(12)
        draw.text((left, 4), title, fill="black", font=font)
        for i, c in enumerate(classes):
            y = top + i * (h + pad)
            draw.text((4, y + h // 2 - 6), c, fill="black", font=font)
            if c in cells:
                img.paste(_pil(cells[c][:per_row], scale), (left, y))
            else:
                draw.rectangle((left, y, left + w - 1, y + h - 1), fill=(160, 160, 160))
        frames.append(img)
    return frames


def accuracy_plot(path: Path, tasks: list[dict], classes: list[str], title: str) -> None:
    """Each class's accuracy after every checkpoint, and the average over classes seen so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [t["task"] for t in tasks]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for c in classes:
        pts = [(t["task"], 100 * t["per_class"][c]) for t in tasks if c in t["per_class"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"class {c}")
    ax.plot(xs, [100 * t["average"] for t in tasks], "k--", lw=2, label="average")
    ax.set(xlabel="after task", ylabel="accuracy on generated images (%)", ylim=(-3, 103), title=title)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(classes) > 6 else 1, loc="lower left")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _save_pil(path: Path, img, **kwargs) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, **kwargs))


def write_pictures(run_dir: Path, samples: list[dict], tasks: list[dict], classes: list[str], size: int,
                   title: str, joint: bool) -> dict:
    """forgetting_grid.png, forgetting.gif and accuracy.png in the run folder; returns their names."""
    columns = [f"joint, {t['tasks_seen']} classes" if joint else f"after task {t['task']}" for t in tasks]
    _save_pil(run_dir / "forgetting_grid.png", forgetting_grid(samples, classes, columns, 4, size), format="PNG")
    frames = forgetting_frames(samples, classes, columns, 8, size)
    _save_pil(run_dir / "forgetting.gif", frames[0], format="GIF", save_all=True, append_images=frames[1:],
              duration=900, loop=0)
    accuracy_plot(run_dir / "accuracy.png", tasks, classes, f"{title}: accuracy of the evaluator on generated images")
    return {"forgetting_grid": "forgetting_grid.png", "forgetting_gif": "forgetting.gif",
            "accuracy_plot": "accuracy.png"}


# ----------------------------------------------------------------------------------------------- runs

def run_checkpoints(run_dir: Path) -> list[tuple[Path, dict]]:
    """The run's task files in task order, with metadata; raises on anything unusable."""
    if not run_dir.is_dir():
        raise EvaluationError(f"run folder {run_dir} does not exist; pass the --out of a training run")
    files = sorted((p for p in run_dir.iterdir() if re.fullmatch(r"task_\d+\.safetensors", p.name)),
                   key=lambda p: int(p.name[5:-12]))
    if not files:
        raise EvaluationError(f"{run_dir} holds no task_XX.safetensors; train it first with train.py --out {run_dir}")
    found = [(p, read_metadata(p)) for p in files]
    first = found[0][1]

    def arch(meta):  # what must be shared by a run's tasks ("seen" grows with DGR's tasks)
        return {k: v for k, v in meta["model"].items() if k != "seen"}

    for p, meta in found:
        if meta["dataset"] != first["dataset"] or arch(meta) != arch(first):
            raise EvaluationError(f"{p} is from another run (dataset {meta['dataset']}, model {meta['model']}) "
                                  f"than {found[0][0].name}; keep one run per folder")
    return found


def _real_data(meta: dict, data_dir: Path, mnist_source: str | None, lsun_cap: int):
    """The real images of the run's dataset, as the run saw them where possible."""
    dataset, source = meta["dataset"], str(meta["data_source"])
    if mnist_source in (None, "auto"):   # follow the run: a run on the shipped digits is scored against them
        mnist_source = "mnist5k" if source.startswith("mnist5k") else "auto"
    if dataset in ("lsun", "folder") and not data_dir.is_dir():
        m = re.match(r"(?:folder: |lsun: lmdb in )(.*?)(?:, at most \d+ images per class)?$", source)
        if m and Path(m.group(1)).is_dir():
            log.info("data: %s (from the run's data source; %s does not exist)", m.group(1), data_dir)
            data_dir = Path(m.group(1))
    size = 32 if meta["model"]["arch"] == "dcgan32" else 64
    data = load_task_data(dataset, data_dir, ",".join(meta["classes"]), mnist_source=mnist_source,
                          lsun_cap=lsun_cap, image_size=size, channels=meta["model"]["channels"])
    if data.size != size or data.channels != meta["model"]["channels"]:
        raise EvaluationError(f"the run makes {meta['model']['channels']}x{size}x{size} images but the data are "
                              f"{data.channels}x{data.size}x{data.size}")
    kwargs = dict(data_dir=data_dir, mnist_source=mnist_source, lsun_cap=lsun_cap, image_size=size,
                  channels=meta["model"]["channels"])
    return data, kwargs


def _training_settings(run_dir: Path, meta: dict) -> dict:
    """Batch size and learning rate of the run (checkpoint metadata, else the run's config.json), so a table
    can say how its budget differs from the paper's."""
    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        saved = {}
    return {k: meta.get(k, saved.get(k)) for k in ("batch_size", "lr")}


def evaluate_run(run_dir: str | Path, eval_samples: int = 6400, seed: int = 0, device: str = "cpu",
                 data_dir: str | Path = "data", mnist_source: str | None = None, lsun_cap: int = 100_000,
                 classifier: str | Path | None = None, classifier_epochs: int | None = None,
                 inception_weights: str | Path | None = None, pictures: bool = True, second: bool = True) -> dict:
    """Evaluate every task checkpoint of a run; write ``RUN/metrics.json`` and the pictures; return the metrics.

    ``mnist_source`` None or 'auto' follows the run (the shipped mnist5k digits if it was trained on them).
    ``classifier``: a classifier file; default the shipped one, else ``classifiers/`` here, else trained now.
    ``second``: also score the same images with the second evaluator (``mlp32``, found or trained the same way;
    32x32 images only): ``tasks[k]["second"]``, and ``tasks[k]["both"]``, each class's lower accuracy of the two.
    """
    start = time.time()
    run_dir = Path(run_dir)
    if eval_samples < 2:
        raise EvaluationError(f"eval_samples must be at least 2, got {eval_samples}")
    if inception_weights and not Path(inception_weights).is_file():
        raise EvaluationError(f"no Inception weights at {inception_weights}; give a local file or leave it out")
    checkpoints = run_checkpoints(run_dir)
    final_meta = checkpoints[-1][1]
    dataset, classes = final_meta["dataset"], list(final_meta["classes"])
    data, train_kwargs = _real_data(final_meta, Path(data_dir), mnist_source, lsun_cap)
    size, channels = train_kwargs["image_size"], train_kwargs["channels"]
    if classifier is not None:
        ev = load_classifier(classifier, device)
    else:
        ev = find_or_train_classifier(dataset, data.source, size, channels, train_kwargs, classifier_epochs, device)
    cfg = ev.meta["config"]
    if ev.meta["dataset"] != dataset or (cfg["size"], cfg["channels"]) != (size, channels):
        raise EvaluationError(f"the classifier {ev.path} is for {ev.meta['dataset']} ({cfg['channels']}x"
                              f"{cfg['size']}x{cfg['size']}) but the run is {dataset} ({channels}x{size}x{size}); "
                              f"use a classifier trained on the run's dataset")
    missing = [c for c in classes if c not in ev.classes]
    if missing:
        raise EvaluationError(f"the classifier {ev.path} does not know classes {missing} of the run; train one on "
                              f"data that has them (python -m mergan.evaluation train-classifier)")
    # The second evaluator, of another family and trained on another split (32x32 images only).
    ev2 = None
    if size == 32 and second:
        ev2 = find_or_train_classifier(dataset, data.source, size, channels, train_kwargs, None, device, "mlp32")
        if [c for c in classes if c not in ev2.classes]:
            raise EvaluationError(f"the second classifier {ev2.path} does not know every class of the run; "
                                  f"delete it to retrain")

    # Table 1: every checkpoint, every class seen so far.
    tasks, pictures_per_task, final_kept = [], [], None
    for k, (path, meta) in enumerate(checkpoints):
        G, meta = load_generator(path, device)
        last = k == len(checkpoints) - 1
        acc, kept = generated_accuracy(G, meta["classes"], ev, eval_samples, seed, device, keep=last or ev2 is not None)
        tasks.append({"task": int(meta["task"]), "tasks_seen": len(meta["classes"]), "checkpoint": path.name,
                      "per_class": acc, "average": _mean(acc.values())})
        line = f"after task {meta['task']}: average accuracy {100 * tasks[-1]['average']:.2f}% ({cfg['arch']})"
        if ev2 is not None:   # the same images, scored by the second evaluator; "both": the lower of the two
            acc2 = {c: _rate(ev2.run(kept[c][0])[0] == ev2.index(c)) for c in meta["classes"]}
            low = {c: min(acc[c], acc2[c]) for c in acc}
            tasks[-1]["second"] = {"arch": ev2.meta["config"]["arch"], "per_class": acc2, "average": _mean(acc2.values())}
            tasks[-1]["both"] = {"per_class": low, "average": _mean(low.values())}
            line += f", {100 * tasks[-1]['second']['average']:.2f}% ({ev2.meta['config']['arch']})"
        log.info("%s over %d classes", line, len(acc))
        if pictures:
            pictures_per_task.append({c: sample(G, torch.full((8,), i), PICTURE_SEED, device)
                                      for i, c in enumerate(meta["classes"])})
        if last:
            final_kept = kept
        del G

    # Real images of the run's classes: the test split, else train.
    split = "test" if all(c in data.test for c in classes) else "train"
    real = {c: _stack((data.test if split == "test" else data.train)[c], max(eval_samples, 10_000)) for c in classes}
    real_x = torch.cat([real[c] for c in classes])
    real_y = torch.cat([torch.full((len(real[c]),), k) for k, c in enumerate(classes)])
    real_preds, real_feats = ev.run(real_x)
    real_acc = {c: _rate(real_preds[real_y == k] == ev.index(c)) for k, c in enumerate(classes)}
    second_info = None
    if ev2 is not None:
        preds2, _ = ev2.run(real_x)
        real2 = {c: _rate(preds2[real_y == k] == ev2.index(c)) for k, c in enumerate(classes)}
        second_info = {"path": _shown(ev2.path), "arch": ev2.meta["config"]["arch"],
                       "test_accuracy": ev2.meta.get("test_accuracy"), "test_split": ev2.meta.get("test_split"),
                       "data_source": ev2.meta.get("data_source"), "train_split": ev2.meta.get("train_split"),
                       "real_accuracy": {"per_class": real2, "average": _mean(real2.values()), "split": split}}

    # FID in the evaluator's feature space, final generator vs real.
    fid = {"per_class": {c: frechet_distance(real_feats[real_y == k], final_kept[c][1]) for k, c in enumerate(classes)},
           "overall": frechet_distance(real_feats, torch.cat([final_kept[c][1] for c in classes])),
           "features": f"evaluator penultimate layer ({ev.net.num_features}-d)",
           "implementation": "torchmetrics FrechetInceptionDistance with a custom feature module",
           "real_split": split, "real_images": len(real_x), "fake_images_per_class": eval_samples}

    # Reverse accuracy: train on generated images as many as the real training data had, test on real.
    n_rev = min(eval_samples, min(len(data.train[c]) for c in classes))
    epochs = int(ev.meta.get("epochs", EPOCHS))
    log.info("reverse accuracy: training a classifier on %d generated images per class, %d epochs", n_rev, epochs)
    rev = reverse_accuracy(cfg, {c: final_kept[c][0][:n_rev] for c in classes}, real_x, real_y, classes, epochs,
                           seed, device)
    rev["real_split"] = split

    if inception_weights:
        fake_all = torch.cat([final_kept[c][0] for c in classes])
        log.info("Inception FID on %d real and %d generated images", len(real_x), len(fake_all))
        inception = inception_fid(inception_weights, real_x, fake_all, device)
    else:
        inception = {"skipped": "no --inception-weights given (a local torchvision inception_v3 state dict or "
                                "torchmetrics' FID weights file); nothing is downloaded"}

    metrics = {
        "run": str(run_dir), "dataset": dataset, "strategy": final_meta["strategy"], "classes": classes,
        "iters": final_meta["iters"], "model": final_meta["model"], "data_source": final_meta["data_source"],
        "eval_samples": eval_samples, "seed": seed, **_training_settings(run_dir, final_meta),
        "classifier": {"path": _shown(ev.path), "arch": cfg["arch"],
                       "test_accuracy": ev.meta.get("test_accuracy"), "test_split": ev.meta.get("test_split"),
                       "data_source": ev.meta.get("data_source"),
                       "real_accuracy": {"per_class": real_acc, "average": _mean(real_acc.values()),
                                         "split": split}},
        **({"second_classifier": second_info} if second_info else {}),
        "tasks": tasks,
        "final": {"task": tasks[-1]["task"], "tasks_seen": tasks[-1]["tasks_seen"], "average": tasks[-1]["average"]},
        "reverse_accuracy": rev, "fid": fid, "inception_fid": inception,
    }
    if pictures:
        metrics["files"] = write_pictures(run_dir, pictures_per_task, tasks, classes, size,
                                          f"{dataset} {final_meta['strategy']}", final_meta["strategy"] == "joint")
    metrics["seconds"] = round(time.time() - start, 1)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _shown(path: Path | None) -> str | None:
    """A path as a reader should see it: relative to the repository for shipped files."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(ASSETS.parent))
    except ValueError:
        return str(path)


def _pct(x) -> str:
    return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"


def _num(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_metrics(m: dict) -> str:
    """The readable table printed after an evaluation."""
    classes = m["classes"]
    w = max(5, max(len(c) for c in classes))
    lines = [f"{m['run']}: {m['dataset']} {m['strategy']}, {m['iters']} iterations per task, model "
             f"{m['model']['arch']} dim {m['model']['dim']}, {m['eval_samples']} samples per class",
             f"evaluator {m['classifier']['arch']} ({m['classifier']['path']}): "
             f"{_pct(m['classifier']['test_accuracy']).strip()}% on real {m['classifier']['test_split']} images",
             "accuracy (%) of the evaluator on generated images:",
             "after task | " + " ".join(f"{c:>{w}}" for c in classes) + " | average"]
    for t in m["tasks"]:
        cells = " ".join(f"{_pct(t['per_class'].get(c)):>{w}}" for c in classes)
        lines.append(f"{t['task']:>10} | {cells} | {_pct(t['average'])}")
    real = m["classifier"]["real_accuracy"]
    lines.append(f"{'real':>10} | " + " ".join(f"{_pct(real['per_class'].get(c)):>{w}}" for c in classes)
                 + f" | {_pct(real['average'])}")
    if m.get("second_classifier"):
        s2 = m["second_classifier"]
        lines.append(f"second evaluator {s2['arch']} ({s2['path']}): {_pct(s2['test_accuracy']).strip()}% on real "
                     f"{s2['test_split']} images; accuracy (%) on the same generated images:")
        for t in m["tasks"]:
            cells = " ".join(f"{_pct(t['second']['per_class'].get(c)):>{w}}" for c in classes)
            lines.append(f"{t['task']:>10} | {cells} | {_pct(t['second']['average'])}")
        real = s2["real_accuracy"]
        lines.append(f"{'real':>10} | " + " ".join(f"{_pct(real['per_class'].get(c)):>{w}}" for c in classes)
                     + f" | {_pct(real['average'])}")
    rev, fid = m["reverse_accuracy"], m["fid"]
    lines.append(f"reverse accuracy: {_pct(rev['accuracy']).strip()}% on {rev['test_images']} real "
                 f"{rev['real_split']} images (trained on {rev['train_images']} generated)")
    lines.append(f"FID, {fid['features']}: overall {_num(fid['overall'])}; per class "
                 + ", ".join(f"{c} {_num(v)}" for c, v in fid["per_class"].items()))
    inc = m["inception_fid"]
    lines.append(f"Inception FID: skipped: {inc['skipped']}" if "skipped" in inc else
                 f"Inception FID: {inc['overall']:.2f} ({inc['features']})")
    return "\n".join(lines)


def evaluate_run_cli(args) -> int:
    """``train.py --test``: evaluate ``args.out``, print the table; errors are one line on stderr, return 1."""
    if not args.out:
        print("error: --test needs --out RUN, the run folder to evaluate", file=sys.stderr)
        return 1
    device = "cuda" if torch.cuda.is_available() and not getattr(args, "cpu", False) else "cpu"
    try:
        m = evaluate_run(args.out, eval_samples=args.eval_samples, seed=args.seed, device=device,
                         data_dir=args.data_dir, mnist_source=args.mnist_source, lsun_cap=args.lsun_cap,
                         classifier=getattr(args, "classifier", None),
                         classifier_epochs=getattr(args, "classifier_epochs", None),
                         inception_weights=getattr(args, "inception_weights", None))
    except (EvaluationError, CheckpointError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_metrics(m))
    print(f"wrote {Path(args.out) / 'metrics.json'} and the pictures in {m['seconds']:.0f} s")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergan.evaluation", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classifier", help="train the evaluator on a dataset's real images; print its accuracy")
    t.add_argument("--dataset", default="mnist", help="mnist, svhn, lsun or folder (default mnist)")
    t.add_argument("--data-dir", default="data")
    t.add_argument("--mnist-source", default="auto", choices=["auto", "full", "mnist5k"])
    t.add_argument("--lsun-cap", type=int, default=100_000)
    t.add_argument("--image-size", type=int, default=32, choices=[32, 64], help="folder datasets")
    t.add_argument("--channels", type=int, default=3, choices=[1, 3], help="folder datasets")
    t.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    t.add_argument("--max-per-class", type=int, default=MAX_PER_CLASS, help="real training images per class")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="default classifiers/<dataset>-<hash of data source>.safetensors")
    t.add_argument("--arch", default=None, choices=list(ARCHS),
                   help="default: the main evaluator of the image size (cnn32 or vgg64); mlp32: the second one")
    t.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    try:
        ev = train_classifier(args.dataset, args.data_dir, mnist_source=args.mnist_source, lsun_cap=args.lsun_cap,
                              image_size=args.image_size, channels=args.channels, epochs=args.epochs,
                              seed=args.seed, device=device, out=args.out, max_per_class=args.max_per_class,
                              arch=args.arch)
    except (EvaluationError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = ev.meta
    print(f"test accuracy: {100 * m['test_accuracy']:.2f}% on {m['test_images']} real {m['test_split']} images "
          f"({m['dataset']}, {m['train_images']} training images, {m['epochs']} epochs, {m['train_seconds']:.0f} s)")
    print(f"saved {ev.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
