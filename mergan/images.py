"""Image files as people have them, decoded to what the networks see.

Every image of a folder dataset or an LSUN lmdb is decoded here (``decode_image``): EXIF orientation applied
(a phone photo is stored sideways with a tag saying how to turn it; ``PIL.ImageOps.exif_transpose``),
transparency composited on white as an image viewer shows it (black digits drawn on a transparent background
stay black on white, not black on black), 16-bit and float pixels scaled to 8 bits, and an image larger than
Pillow decodes safely (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels) refused before its pixels are
read. ``probe_image`` checks a file's header only (format and size), cheaply, before anything is trained.
Every failure is a ``DataError`` naming the file and what to do.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
BACKGROUND = (255, 255, 255)   # what shows through transparent pixels, as in an image viewer


class DataError(Exception):
    """A problem with the user's data: the message names it and says how to fix it."""


def _to_8bit(img, name: str):
    """An image of 16-bit or float pixels as 8-bit, scaled to its format's range (PIL's own conversion clips
    16-bit values at 255, which turns the image white); float pixels must lie in [0, 1]."""
    from PIL import Image

    arr = np.asarray(img)
    if img.mode.startswith("I"):         # 16- or 32-bit integers: 16-bit PNG/TIFF data
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"{name} has 32-bit pixel values outside 0-65535; save it as an 8- or 16-bit image")
        arr = arr.astype(np.float64) / 257.0
    else:                                # "F": float pixels
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise DataError(f"{name} has float pixels outside [0, 1]; save it as an 8-bit image")
        arr = arr.astype(np.float64) * 255.0
    return Image.fromarray(np.rint(arr).astype(np.uint8), mode="L")


def _too_large(e: Exception, name: str) -> DataError:
    """Pillow's decompression-bomb check, as one line naming the file (its message holds the pixel count)."""
    from PIL import Image

    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "more pixels than that"
    return DataError(f"{name} has {size}, more than the {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels decoded "
                     f"safely; shrink it (training sees at most 64x64 pixels) or remove it")


def _open(data: bytes | Path, name: str):
    """The file opened lazily (header read, pixels not), the decompression-bomb warning raised as an error."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _too_large(e, name) from None


def _failure(e: Exception, name: str) -> DataError:
    if isinstance(e, PermissionError):
        return DataError(f"cannot read {name}: permission denied; make it readable or remove it")
    if isinstance(e, OSError) and e.errno is not None:   # the disk, not the image (PIL's own errors have none)
        return DataError(f"cannot read {name} ({e.strerror or e}); check the file or remove it")
    return DataError(f"{name} is not a readable image ({type(e).__name__}); remove or replace it")


def probe_image(data: bytes | Path, name: str | None = None) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding its pixels: an empty, unknown or too large
    file raises ``DataError`` naming it. A file whose pixel data is damaged passes; ``decode_image`` finds it."""
    name = name or str(data)
    try:
        with _open(data, name) as img:
            return img.size
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:   # PIL's errors for unknown or broken files
        raise _failure(e, name) from e


def _flatten(img):
    """Transparency composited on ``BACKGROUND``: RGBA/LA images, and palette or grey images with a
    transparent colour; other images unchanged."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return img


def decode_image(data: bytes | Path, size: int, channels: int, crop: bool, name: str | None = None) -> torch.Tensor:
    """Decode an image file to uint8 (C, size, size): upright (EXIF orientation), transparency on white, then
    center-cropped (folders) or resized directly (LSUN, as the original). A file that is not an image, is
    truncated, or is too large raises ``DataError`` naming it (``name``: an lmdb key, or the path)."""
    from PIL import Image, ImageOps

    name = name or str(data)
    try:
        img = _open(data, name)
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            img = _to_8bit(img, name)
        img = _flatten(img).convert("L" if channels == 1 else "RGB")
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:   # unknown, truncated or broken files
        raise _failure(e, name) from e
    if crop:
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())
