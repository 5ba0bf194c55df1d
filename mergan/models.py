"""Generators and critics of Memory Replay GANs (Wu et al., NeurIPS 2018).

Two pairs, as in the original code:

- ``dcgan32`` (MNIST, SVHN; ``network/gan32_model.py``): a three-layer DCGAN whose class enters the
  generator *only* through class-conditional batch norm, and a critic with no normalisation.
- ``resnet64`` (LSUN; ``network/gan64_model.py``, igul222's WGAN-GP "Good" ResNet): the label is a one-hot
  concatenated to z, every batch norm of the generator is plain, and the critic uses per-sample layer norm.

Both critics have two heads on the same feature: a scalar WGAN output and an auxiliary-classifier (AC-GAN)
logit head with at least 10 outputs (10 in the original, also for LSUN's 4 classes).

Batch norm always uses the statistics of the current batch (the original's moving averages are never
updated or read), in training, for the frozen previous generator and when sampling. That is why samples
of one class are always generated in their own forward call (see ``mergan.sampling``), or in one call with
``groups``: the generators' ``groups=k`` splits the batch into k equal consecutive chunks and normalises each
with its own statistics, exactly as k separate calls would, at the cost of one.

Weights are initialised as tflib does: uniform in +-sigma*sqrt(3), biases zero.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .records import MAX_CLASSES

ARCHS = ("dcgan32", "resnet64")


def _uniform_(weight: torch.Tensor, std: float) -> None:
    bound = std * math.sqrt(3.0)
    nn.init.uniform_(weight, -bound, bound)


def tflib_init_(module: nn.Module, he: bool = True) -> nn.Module:
    """Initialise a Linear, Conv2d or ConvTranspose2d layer as tflib's ops do."""
    w = module.weight
    if isinstance(module, nn.Linear):
        fan_in, fan_out = w.shape[1], w.shape[0]
        _uniform_(w, math.sqrt(2.0 / (fan_in + fan_out)))
    elif isinstance(module, nn.ConvTranspose2d):
        cin, cout, k = w.shape[0], w.shape[1], w.shape[2]
        stride = module.stride[0]
        fan_in, fan_out = cin * k * k / stride**2, cout * k * k
        _uniform_(w, math.sqrt(4.0 / (fan_in + fan_out)))
    elif isinstance(module, nn.Conv2d):
        cout, cin, k = w.shape[0], w.shape[1], w.shape[2]
        stride = module.stride[0]
        fan_in, fan_out = cin * k * k, cout * k * k / stride**2
        _uniform_(w, math.sqrt((4.0 if he else 2.0) / (fan_in + fan_out)))
    else:
        raise TypeError(f"no tflib initialisation for {type(module).__name__}")
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def batch_norm(x: torch.Tensor, groups: int = 1, eps: float = 1e-5, weight=None, bias=None) -> torch.Tensor:
    """Batch norm with the current batch's statistics, computed separately for each of ``groups`` equal
    consecutive chunks of the batch (as if each chunk were its own forward call); optional per-channel affine."""
    if groups == 1:
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    n, c, h, w = x.shape
    if n % groups:
        raise ValueError(f"a batch of {n} does not split into {groups} equal groups")
    m = n // groups
    # (groups*m, c) -> (m, groups*c): each group's channels become channels of their own.
    y = x.view(groups, m, c, h, w).transpose(0, 1).reshape(m, groups * c, h, w)
    y = F.batch_norm(y, None, None, training=True, eps=eps)
    y = y.view(m, groups, c, h, w).transpose(0, 1).reshape(n, c, h, w)
    if weight is not None:
        y = y * weight[:, None, None] + bias[:, None, None]
    return y


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm over the whole batch with a per-class scale and offset (``tflib/ops/cond_batchnorm.py``)."""

    def __init__(self, channels: int, n_classes: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(n_classes, channels))
        self.offset = nn.Parameter(torch.zeros(n_classes, channels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor, groups: int = 1) -> torch.Tensor:
        # Always the current batch's mean and biased variance (no running buffers).
        x = batch_norm(x, groups, self.eps)
        return x * self.scale[labels][:, :, None, None] + self.offset[labels][:, :, None, None]


class Generator32(nn.Module):
    """32x32 DCGAN generator; the class enters through conditional batch norm only."""

    def __init__(self, z_dim: int = 128, n_classes: int = 10, dim: int = 32, channels: int = 1):
        super().__init__()
        self.z_dim, self.n_classes, self.channels, self.size = z_dim, n_classes, channels, 32
        self.dim = dim
        self.fc = tflib_init_(nn.Linear(z_dim, 4 * 4 * 4 * dim))
        widths = [4 * dim, 2 * dim, dim]
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(w, n_classes) for w in widths)

        def deconv(cin, cout):  # 'SAME' transposed conv, output exactly twice the input
            return tflib_init_(nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1))

        self.deconvs = nn.ModuleList([deconv(4 * dim, 2 * dim), deconv(2 * dim, dim), deconv(dim, channels)])

    def forward(self, z: torch.Tensor, labels: torch.Tensor, groups: int = 1) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], 4 * self.dim, 4, 4)
        for norm, deconv in zip(self.norms, self.deconvs):
            x = deconv(F.relu(norm(x, labels, groups)))
        return torch.tanh(x)


class Critic32(nn.Module):
    """32x32 DCGAN critic with a WGAN head and an auxiliary-classifier head; no normalisation."""

    def __init__(self, n_classes: int = 10, dim: int = 32, channels: int = 1):
        super().__init__()
        self.n_classes = n_classes
        self.convs = nn.ModuleList(
            tflib_init_(nn.Conv2d(cin, cout, 5, stride=2, padding=2))
            for cin, cout in [(channels, dim), (dim, 2 * dim), (2 * dim, 4 * dim)]
        )
        self.critic = tflib_init_(nn.Linear(4 * 4 * 4 * dim, 1))
        self.classifier = tflib_init_(nn.Linear(4 * 4 * 4 * dim, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        h = x.flatten(1)
        return self.critic(h).squeeze(1), self.classifier(h)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _bn(module: nn.BatchNorm2d, x: torch.Tensor, groups: int) -> torch.Tensor:
    return batch_norm(x, groups, module.eps, module.weight, module.bias)


class UpBlock(nn.Module):
    """Residual block that doubles the resolution (``gan64_model.py`` ResidualBlock, resample='up')."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = tflib_init_(nn.Conv2d(cin, cout, 1), he=False)
        self.bn1 = nn.BatchNorm2d(cin, track_running_stats=False)
        self.conv1 = tflib_init_(nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        self.bn2 = nn.BatchNorm2d(cout, track_running_stats=False)
        self.conv2 = tflib_init_(nn.Conv2d(cout, cout, 3, padding=1))

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        short = self.shortcut(_upsample(x))
        h = self.conv1(_upsample(F.relu(_bn(self.bn1, x, groups))))
        return short + self.conv2(F.relu(_bn(self.bn2, h, groups)))


class DownBlock(nn.Module):
    """Residual block that halves the resolution, with per-sample layer norm (resample='down')."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = tflib_init_(nn.Conv2d(cin, cout, 1), he=False)
        # GroupNorm with one group = tflib's Layernorm over (C, H, W) with a per-channel scale and offset.
        self.ln1 = nn.GroupNorm(1, cin)
        self.conv1 = tflib_init_(nn.Conv2d(cin, cin, 3, padding=1, bias=False))
        self.ln2 = nn.GroupNorm(1, cin)
        self.conv2 = tflib_init_(nn.Conv2d(cin, cout, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.shortcut(F.avg_pool2d(x, 2))
        h = self.conv1(F.relu(self.ln1(x)))
        return short + F.avg_pool2d(self.conv2(F.relu(self.ln2(h))), 2)


class Generator64(nn.Module):
    """64x64 ResNet generator; the label is a one-hot concatenated to z, batch norms are unconditional."""

    def __init__(self, z_dim: int = 128, n_classes: int = 10, dim: int = 64, channels: int = 3):
        super().__init__()
        self.z_dim, self.n_classes, self.channels, self.size = z_dim, n_classes, channels, 64
        self.dim = dim
        self.fc = tflib_init_(nn.Linear(z_dim + n_classes, 4 * 4 * 8 * dim))
        widths = [8 * dim, 8 * dim, 4 * dim, 2 * dim, dim]
        self.blocks = nn.Sequential(*(UpBlock(a, b) for a, b in zip(widths, widths[1:])))
        self.bn = nn.BatchNorm2d(dim, track_running_stats=False)
        self.out = tflib_init_(nn.Conv2d(dim, channels, 3, padding=1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor, groups: int = 1) -> torch.Tensor:
        onehot = F.one_hot(labels, self.n_classes).to(z.dtype)
        x = self.fc(torch.cat([z, onehot], 1)).view(z.shape[0], 8 * self.dim, 4, 4)
        for block in self.blocks:
            x = block(x, groups)
        return torch.tanh(self.out(F.relu(_bn(self.bn, x, groups))))


class Critic64(nn.Module):
    """64x64 ResNet critic with layer norm, a WGAN head and an auxiliary-classifier head."""

    def __init__(self, n_classes: int = 10, dim: int = 64, channels: int = 3):
        super().__init__()
        self.n_classes = n_classes
        self.stem = tflib_init_(nn.Conv2d(channels, dim, 3, padding=1), he=False)
        widths = [dim, 2 * dim, 4 * dim, 8 * dim, 8 * dim]
        self.blocks = nn.Sequential(*(DownBlock(a, b) for a, b in zip(widths, widths[1:])))
        self.critic = tflib_init_(nn.Linear(4 * 4 * 8 * dim, 1))
        self.classifier = tflib_init_(nn.Linear(4 * 4 * 8 * dim, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.stem(x)).flatten(1)
        return self.critic(h).squeeze(1), self.classifier(h)


class ReplayGenerator(nn.Module):
    """Deep Generative Replay's deliverable (Shin et al. 2017, as MeRGAN's paper implemented it): an
    *unconditional* generator and the classifier ("solver") trained alongside it, here the critic's
    auxiliary-classifier head.

    Asked for a class, it draws unconditional batches and keeps the images the solver assigns to that class
    (rejection sampling over the ``seen`` classes). The candidates' noise is derived from the given noise, so
    the same noise gives the same images. After ``max_tries`` batches the remaining slots keep the last
    candidates, whatever their class: a DGR that has forgotten a class cannot draw it.
    """

    max_tries = 20

    def __init__(self, z_dim=128, n_classes=10, dim=32, channels=1, arch="dcgan32", seen=10):
        super().__init__()
        cfg = {"arch": arch, "z_dim": z_dim, "n_classes": n_classes, "dim": dim, "channels": channels}
        self.generator, self.solver = build_generator(cfg), build_critic(cfg)
        self.z_dim, self.n_classes, self.channels = z_dim, n_classes, channels
        self.size, self.seen = self.generator.size, seen

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.solver(x)[1][:, : self.seen].argmax(1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros_like(labels)
        out = self.generator(z, zeros)
        todo = self.classify(out) != labels
        g = torch.Generator().manual_seed(int(z[0, :8].abs().sum().item() * 1e6) % (2**31))
        for _ in range(self.max_tries):
            if not todo.any():
                break
            cand = self.generator(torch.randn(z.shape, generator=g).to(z), zeros)
            good = (self.classify(cand) == labels).nonzero().flatten()
            slots = todo.nonzero().flatten()[: len(good)]
            out[slots] = cand[good[: len(slots)]]
            todo[slots] = False
        return out


# Sane bounds for the sizes of a model's constructor arguments, checked before anything is built from them (a
# crafted file must not make the loader allocate gigabytes): the widest known model is LSUN's (dim 64, z 128).
MODEL_BOUNDS = {"z_dim": (1, 4096), "n_classes": (1, MAX_CLASSES), "dim": (1, 1024), "channels": (1, 4),
                "seen": (1, MAX_CLASSES)}


def model_problem(model, deliverable: str = "generator") -> str | None:
    """What is wrong with a model's constructor arguments (``model_config``'s, with ``seen`` for DGR's
    generator+solver), or None: a known architecture and integer sizes within ``MODEL_BOUNDS``."""
    if not isinstance(model, dict) or not isinstance(model.get("arch"), str) or model["arch"] not in ARCHS:
        return f"'model' names no known architecture ({', '.join(ARCHS)})"
    for key, (lo, hi) in MODEL_BOUNDS.items():
        if key == "seen" and deliverable != "generator+solver":
            continue
        value = model.get(key)
        if type(value) is not int or not lo <= value <= hi:
            return f"'model.{key}' is {str(value)[:40]!r}, not an integer in [{lo}, {hi}]"
    return None


def model_config(arch: str, *, channels: int, n_classes: int = 10, dim: int | None = None,
                 z_dim: int = 128) -> dict:
    """The constructor arguments of a generator/critic pair; stored in every checkpoint's metadata."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if dim is None:
        dim = 32 if arch == "dcgan32" else 64
    return {"arch": arch, "z_dim": z_dim, "n_classes": max(10, n_classes), "dim": dim, "channels": channels}


def with_labels(cfg: dict, n_labels: int) -> dict:
    """The model with room for ``n_labels`` conditioning labels: its ``n_classes`` grown if it has fewer, never
    shrunk. A run sizes its label tables when it starts (``config.resolve``); a run extended with more classes
    than that grows them (``grow_state``)."""
    return {**cfg, "n_classes": max(cfg["n_classes"], n_labels)}


def grow_state(saved: dict, target: dict, added: int = 0) -> dict:
    """``saved``, a state dict of a network with ``added`` fewer labels, fitted to ``target`` (the same network's
    state dict): every tensor whose label dimension grew (by exactly ``added``, in one dimension) keeps its old
    entries and takes the new ones from ``target`` (a freshly initialised network: conditional batch norm's
    scale 1 and offset 0, the auxiliary classifier's new rows, ResNet's new one-hot columns of ``fc``). Tensors
    of the same shape are taken as saved. Raises ``ValueError`` naming a tensor that is missing or of another
    shape."""
    out = {}
    for k, t in target.items():
        s = saved.get(k)
        grew = None if s is None else [b - a for a, b in zip(s.shape, t.shape)]
        if s is None or s.dim() != t.dim() or sorted(grew) not in ([0] * t.dim(), [0] * (t.dim() - 1) + [added]):
            raise ValueError(f"{k}: {None if s is None else tuple(s.shape)} does not fit {tuple(t.shape)}")
        if s.shape == t.shape:
            out[k] = s
        else:
            grown = t.detach().clone().to(s.dtype)
            grown[tuple(slice(0, n) for n in s.shape)] = s
            out[k] = grown
    return out


def build_generator(cfg: dict) -> nn.Module:
    cls = {"dcgan32": Generator32, "resnet64": Generator64}[cfg["arch"]]
    return cls(z_dim=cfg["z_dim"], n_classes=cfg["n_classes"], dim=cfg["dim"], channels=cfg["channels"])


def build_deliverable(kind: str, cfg: dict) -> nn.Module:
    """What a task file holds (``TaskMeta.deliverable``): a conditional generator, or an unconditional generator
    with the classifier that labels its images (``generator+solver``, DGR's; ``cfg["seen"]``: its classes)."""
    if kind == "generator+solver":
        args = {k: cfg[k] for k in ("z_dim", "n_classes", "dim", "channels", "arch")}
        return ReplayGenerator(**args, seen=cfg.get("seen", cfg["n_classes"]))
    return build_generator(cfg)


def build_critic(cfg: dict) -> nn.Module:
    cls = {"dcgan32": Critic32, "resnet64": Critic64}[cfg["arch"]]
    return cls(n_classes=cfg["n_classes"], dim=cfg["dim"], channels=cfg["channels"])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
