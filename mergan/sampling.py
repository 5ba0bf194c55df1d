"""Sampling shared by the trainer, the evaluation and the demo.

Batch norm uses batch statistics, so an image depends on the batch it was generated in. Every class is
therefore generated in its own forward calls of ``CHUNK`` images (the original's 64 same-class samples), with
noise drawn from the seed: image k of class c for seed s is the same whether 1 or 100 images are asked for.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

CHUNK = 64


def class_noise(z_dim: int, n: int, seed: int, label: int) -> torch.Tensor:
    """Noise for the first ``n`` images of ``label`` under ``seed`` (CPU, float32)."""
    g = torch.Generator().manual_seed(int(seed) * 1009 + int(label))
    return torch.randn(n, z_dim, generator=g)


@torch.no_grad()
def generate(G, labels, seed: int = 0, device=None) -> torch.Tensor:
    """Float images in [-1, 1], (N, C, H, W), for the given conditioning labels (grouped per class)."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten().cpu()
    if len(labels) and (labels.min() < 0 or labels.max() >= G.n_classes):
        raise ValueError(f"label out of range: the generator has {G.n_classes} conditioning labels")
    device = device or next(G.parameters()).device
    out = torch.empty(len(labels), G.channels, G.size, G.size)
    for label in labels.unique().tolist():
        where = (labels == label).nonzero().flatten()
        n = math.ceil(len(where) / CHUNK) * CHUNK
        z = class_noise(G.z_dim, n, seed, label)
        imgs = []
        for i in range(0, n, CHUNK):
            y = torch.full((CHUNK,), label, dtype=torch.long, device=device)
            imgs.append(G(z[i:i + CHUNK].to(device), y).float().cpu())
        out[where] = torch.cat(imgs)[: len(where)]
    return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to uint8 pixels, the original's ``x*128+128`` clipped to [0, 255]."""
    return (images * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)


def sample(G, labels, seed: int = 0, device=None) -> torch.Tensor:
    """uint8 images (N, C, H, W) for conditioning ``labels``; the same seed gives the same images."""
    return to_uint8(generate(G, labels, seed, device))


def grid(images: torch.Tensor, nrow: int, pad: int = 2) -> torch.Tensor:
    """Tile uint8 (N, C, H, W) images into one uint8 (C, H', W') picture, ``nrow`` images per row."""
    from torchvision.utils import make_grid

    return make_grid(images, nrow=nrow, padding=pad, pad_value=255)


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Write a uint8 (C, H, W) image as PNG, atomically."""
    from PIL import Image

    from .checkpoints import atomic_write

    arr = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


def class_grid(G, n_labels: int, per_class: int = 10, seed: int = 0) -> torch.Tensor:
    """A row per conditioning label 0..n_labels-1, ``per_class`` images each, from fixed noise."""
    labels = torch.arange(n_labels).repeat_interleave(per_class)
    return grid(sample(G, labels, seed), nrow=per_class)
