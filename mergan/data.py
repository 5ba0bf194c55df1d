"""Datasets, one category per task: MNIST (IDX), SVHN (.mat), LSUN (lmdb) and the user's image folders.

Every loader yields uint8 images (C, H, W); batches are mapped to [-1, 1] floats as the original does with
``2*(x-.5)``. MNIST is zero-padded from 28x28 to 32x32 (``tflib/mnist.py:95-97``); SVHN's label 10 is digit 0;
LSUN images are resized directly to 64x64 without cropping (``tflib/lsun.py:35-37``).

Image files are decoded by ``mergan.images``; the layouts of image folders are ``mergan.folders``'s. Batches of
them: ``mergan.batches``.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import folders
from .images import IMAGE_EXTENSIONS, DataError, decode_image  # noqa: F401 - the data's errors and decoding
from .records import ClassData, DataSource, fingerprint

log = logging.getLogger("mergan")

# The repository's assets/, beside the package; an installed wheel carries its mnist/ and classifiers/ inside the
# package instead (pyproject.toml).
_HERE = Path(__file__).resolve().parent
ASSETS = _HERE / "assets" if (_HERE / "assets").is_dir() else _HERE.parent / "assets"
MNIST = ASSETS / "mnist"     # the official MNIST files (60,000 training, 10,000 test digits), gzip
DIGITS = [str(i) for i in range(10)]
LSUN_CATEGORIES = ["bedroom", "kitchen", "church_outdoor", "tower"]
DATASETS = ("mnist", "svhn", "lsun", "folder")


# ----------------------------------------------------------------------------------------------- readers

def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST IDX file, gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
        data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}; re-download it or delete it to use another source")


def _find_idx(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / (stem + ".gz")):
        if p.is_file():
            return p
    return None


def _mnist_folder(data_dir: Path) -> Path | None:
    """Where the four MNIST IDX files are: torchvision's ``MNIST/raw`` layout or the folder itself."""
    for folder in (data_dir / "MNIST" / "raw", data_dir):
        if all(_find_idx(folder, f"{s}-{k}") for s in ("train", "t10k")
               for k in ("images-idx3-ubyte", "labels-idx1-ubyte")):
            return folder
    return None


@functools.lru_cache(maxsize=4)
def _read_mnist(folder: str, stamp: tuple) -> dict:
    """The four IDX files of ``folder`` as 32x32 uint8 tensors, read once per process (``stamp``: the files' sizes
    and times, so changed files are read again)."""
    folder = Path(folder)
    splits = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        x = read_idx(_find_idx(folder, f"{stem}-images-idx3-ubyte"))
        y = read_idx(_find_idx(folder, f"{stem}-labels-idx1-ubyte"))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.shape[1:] != (28, 28):
            raise DataError(f"MNIST files in {folder} do not match (images {x.shape}, labels {y.shape}); MNIST has "
                            f"28x28 images and one label each: replace them with the official files")
        if len(y) and y.max() > 9:
            raise DataError(f"MNIST labels in {folder} go up to {int(y.max())}; digits are 0-9: replace the files")
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[:, None]  # 28x28 -> 32x32, as the paper
        splits[split] = (torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))
    return splits


def load_mnist(data_dir: Path) -> tuple[dict, str, str | None]:
    """MNIST as {'train': (images, labels), 'test': (...)} with 32x32 uint8 images, a description and the folder
    read (None: the official files shipped in ``assets/mnist``).

    The four IDX files (gzipped or not) under ``data_dir`` win, in torchvision's ``MNIST/raw`` layout or in the
    folder itself; else the official files shipped with the repository. Nothing is downloaded.
    """
    folder = _mnist_folder(data_dir)
    location = None if folder is None else str(folder.resolve())
    folder = folder or MNIST
    files = sorted(p for p in folder.iterdir() if "-ubyte" in p.name)
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    splits = _read_mnist(str(folder), stamp)
    n_train, n_test = len(splits["train"][1]), len(splits["test"][1])
    where = "the official files shipped in assets/mnist" if location is None else f"IDX files in {folder}"
    return splits, f"mnist: {n_train:,} training and {n_test:,} test digits, {where}", location


def load_svhn(data_dir: Path) -> tuple[dict, str, str]:
    """SVHN's cropped-digit ``train_32x32.mat`` / ``test_32x32.mat``; label 10 becomes digit 0."""
    import scipy.io

    splits = {}
    for split in ("train", "test"):
        path = data_dir / f"{split}_32x32.mat"
        if not path.is_file():
            if split == "test":
                continue
            raise DataError(f"no {path}; download train_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
                            f"into --data-dir")
        try:
            mat = scipy.io.loadmat(path)
            x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        except Exception as e:
            raise DataError(f"cannot read {path}: {e}; download it again")
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
            raise DataError(f"{path} has images of shape {x.shape}, expected (32, 32, 3, N)")
        if x.dtype != np.uint8:   # the official files hold uint8 pixels; others must be whole numbers 0-255
            if not (np.issubdtype(x.dtype, np.number) and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 255):
                raise DataError(f"{path} has {x.dtype} pixels outside 0-255; SVHN's .mat files hold uint8 pixels: "
                                f"download it again")
            x = np.rint(x).astype(np.uint8)
        if not np.isin(y, np.arange(1, 11)).all():
            raise DataError(f"{path} has labels outside 1-10; SVHN's .mat files label digits 1-10: download it again")
        y[y == 10] = 0
        x = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # HWCN -> NCHW
        splits[split] = (torch.from_numpy(x), torch.from_numpy(y))
    return splits, f"svhn: {len(splits['train'][1]):,} training images in {data_dir}", str(data_dir.resolve())


# ----------------------------------------------------------------------------------------------- datasets

class TensorImages(Dataset):
    """Images already in memory (uint8 N,C,H,W)."""

    in_memory = True

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


_LMDB_ENVS: dict = {}  # path -> this process's read-only environment: lmdb refuses to open one twice


def _lmdb_env(path: str):
    """The process's one environment for ``path``; a forked worker inherits the parent's (if any) and may use it."""
    import lmdb

    key = os.path.realpath(path)
    if key not in _LMDB_ENVS:
        _LMDB_ENVS[key] = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False, subdir=True)
    return _LMDB_ENVS[key]


class LmdbImages(Dataset):
    """One LSUN category's lmdb, as LSUN distributes it (keys: image ids, values: encoded images).

    The environment is opened lazily, once per process (``_lmdb_env``: lmdb refuses a second open of the same
    files in one process), so the dataset pickles and copies of it share the one environment.
    """

    in_memory = False

    def __init__(self, path: Path, size: int = 64, cap: int | None = None):
        import lmdb

        self.path, self.size = str(path), size
        shared = os.path.realpath(self.path) in _LMDB_ENVS
        try:
            env = _lmdb_env(self.path)
        except lmdb.Error as e:
            raise DataError(f"cannot open lmdb {path}: {e}; pass the folder LSUN's download unpacked "
                            f"(<category>_train_lmdb)")
        with env.begin() as txn:
            keys = []
            for key in txn.cursor().iternext(keys=True, values=False):
                keys.append(bytes(key))
                if cap is not None and len(keys) >= cap:
                    break
        if not shared:  # opened just to list the keys: each DataLoader worker opens its own
            env.close()
            del _LMDB_ENVS[os.path.realpath(self.path)]
        if not keys:
            raise DataError(f"lmdb {path} is empty")
        self.keys = keys

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        with _lmdb_env(self.path).begin() as txn:
            data = txn.get(self.keys[i])
        key = self.keys[i].decode("utf-8", "replace")
        return decode_image(bytes(data), self.size, 3, crop=False, name=f"lmdb {self.path} key {key[:60]!r}")


class FileImages(Dataset):
    in_memory = False

    def __init__(self, files: list[Path], size: int, channels: int):
        self.files, self.size, self.channels = files, size, channels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return decode_image(self.files[i], self.size, self.channels, crop=True)


class Labeled(Dataset):
    """The union of per-class datasets, returning (image, label) with label = the class's task index."""

    def __init__(self, parts: list[Dataset], labels: list[int]):
        self.parts, self.labels = parts, labels
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.in_memory = all(getattr(p, "in_memory", False) for p in parts)

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, i):
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[k][i - int(self.offsets[k])], self.labels[k]


# ----------------------------------------------------------------------------------------------- tasks

@dataclass
class TaskData:
    """A dataset split into one category per task, in task order."""

    name: str
    source: DataSource                         # what was loaded, by content (``records.DataSource``)
    channels: int
    size: int
    classes: list[str]                         # task order; class i is conditioning label i
    train: dict[str, Dataset]
    test: dict[str, Dataset] = field(default_factory=dict)
    all_classes: list[str] = field(default_factory=list)

    def labeled(self, classes: list[str], split: str = "train") -> Labeled:
        sets = self.train if split == "train" else self.test
        return Labeled([sets[c] for c in classes], [self.classes.index(c) for c in classes])


def parse_classes(text: str | list[str] | None, available: list[str], dataset: str,
                  first: list[str] | None = None) -> list[str]:
    """The classes in task order: ``text`` the user's comma-separated list (or a list of names, from a record);
    None: every class, ``first`` (a run's classes, being continued) first, then the rest in the default order."""
    if text is None:
        first = [c for c in (first or []) if c in available]
        order = first + [c for c in available if c not in first]
    elif isinstance(text, str):
        order = [c.strip() for c in text.split(",")]
        if not text.strip() or any(not c for c in order):
            raise DataError(f"--classes {text!r} has an empty class name; give a comma-separated list such as "
                            f"{','.join(available[:3])}")
    else:
        order = list(text)
    for c in order:
        if c not in available:
            raise DataError(f"class {c!r} is not in dataset {dataset}; choose from {', '.join(available)[:300]}")
    if len(set(order)) != len(order):
        raise DataError(f"--classes {','.join(order)!r} repeats a class; each class is one task and appears once")
    return order


def _split_by_class(split: tuple[torch.Tensor, torch.Tensor], classes: list[str]) -> dict[str, Dataset]:
    x, y = split
    out = {}
    for c in classes:
        imgs = x[y == int(c)]
        if len(imgs) == 0:
            raise DataError(f"class {c} has no images in the data")
        out[c] = TensorImages(imgs)
    return out


def _tensor_source(dataset: str, description: str, location, train: dict) -> DataSource:
    """Digits held in memory: each class fingerprinted by its images' bytes."""
    return DataSource(dataset, description[:1000], location,
                      {c: ClassData(len(d), fingerprint(d.images.numpy().tobytes())) for c, d in train.items()})


def load_task_data(dataset: str, data_dir: str | Path, classes: str | list[str] | None = None, *,
                   lsun_cap: int = 100_000, image_size: int = 32, channels: int = 3,
                   first: list[str] | None = None) -> TaskData:
    """Build the per-task datasets. ``classes`` is the user's comma-separated order or a list of names (default:
    the paper's, or alphabetical; ``first``: a continued run's classes first, see ``parse_classes``). Folder
    datasets: the layouts of ``mergan.folders``. Raises ``DataError`` (one line naming the file or folder)."""
    data_dir = Path(data_dir)
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if lsun_cap < 1:
        raise DataError(f"--lsun-cap must be at least 1 image per class (paper: 100,000), got {lsun_cap}")
    if dataset in ("mnist", "svhn"):
        order = parse_classes(classes, DIGITS, dataset, first)
        splits, description, location = load_mnist(data_dir) if dataset == "mnist" else load_svhn(data_dir)
        train = _split_by_class(splits["train"], order)
        test = _split_by_class(splits["test"], order) if "test" in splits else {}
        ch = 1 if dataset == "mnist" else 3
        return TaskData(dataset, _tensor_source(dataset, description, location, train), ch, 32, order, train, test,
                        list(DIGITS))
    if dataset == "lsun":
        if not data_dir.is_dir():
            raise DataError(f"LSUN folder {data_dir} does not exist; pass --data-dir with <category>_train_lmdb "
                            f"folders")
        order = parse_classes(classes, LSUN_CATEGORIES + _lsun_extra(data_dir), dataset, first)
        train, test = {}, {}
        for c in order:
            path = data_dir / f"{c}_train_lmdb"
            if not path.is_dir():
                raise DataError(f"no {path}; download LSUN's {c} with its download.py and unzip it into "
                                f"--data-dir")
            train[c] = LmdbImages(path, 64, lsun_cap)
            if (data_dir / f"{c}_val_lmdb").is_dir():
                test[c] = LmdbImages(data_dir / f"{c}_val_lmdb", 64, None)
        # LSUN's keys name its images by content; the first lsun_cap of them are what a run sees
        source = DataSource("lsun", f"lsun: lmdb in {str(data_dir)[:500]}, at most {lsun_cap:,} images per class",
                            str(data_dir.resolve()),
                            {c: ClassData(len(d), fingerprint(*d.keys)) for c, d in train.items()})
        return TaskData("lsun", source, 3, 64, order, train, test, LSUN_CATEGORIES + _lsun_extra(data_dir))
    # folder: the layouts of mergan.folders
    if image_size not in (32, 64):
        raise DataError(f"--image-size {image_size} is not supported; use 32 (DCGAN) or 64 (ResNet)")
    found = folders.layout(data_dir)
    order = parse_classes(classes, found.classes, "folder", first)
    train, test, prints = {}, {}, {}
    for c in order:
        folders.check_class_name(c, found.train[c].parent)
        files, held = found.files(c)
        if not files:
            raise DataError(f"{found.train[c]} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        prints[c] = folders.class_data(files, found.train[c], held)
        train[c] = FileImages(files, image_size, channels)
        if held:
            test[c] = FileImages(held, image_size, channels)
    where = str(data_dir)[:500]   # the description is one line of a record (at most 1,000 characters)
    source = DataSource("folder", f"folder: {len(order)} classes of images in {where}", str(data_dir.resolve()),
                        prints)
    return TaskData("folder", source, channels, image_size, order, train, test, found.classes)


def _lsun_extra(data_dir: Path) -> list[str]:
    found = sorted(p.name[: -len("_train_lmdb")] for p in data_dir.glob("*_train_lmdb") if p.is_dir())
    return [c for c in found if c not in LSUN_CATEGORIES]
