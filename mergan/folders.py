"""Folder datasets as people lay them out: the supported layouts, what in them is data, each class's images.

Two layouts are read (``--dataset folder --data-dir DIR``):

    DIR/<class>/...                one folder per class, its images at any depth; a ``test/`` folder inside a
                                   class folder holds that class's held-out images
    DIR/train/<class>/...          the split layout (torchvision's ImageFolder, one per split): the classes are
    DIR/test/<class>/...           train's folders; ``test`` (or ``val``, ``valid``, ``validation``) holds out
                                   images of those classes

What tools leave beside images is not data: names starting with a dot (``.DS_Store``, macOS's ``._*`` copies,
``.ipynb_checkpoints``), ``__MACOSX``, ``@eaDir`` (NAS thumbnails), ``Thumbs.db``, ``desktop.ini``, and any
file whose extension is not an image's (``images.IMAGE_EXTENSIONS``). Anything else that fits neither layout
(an image outside every class folder, split folders beside class folders, two held-out splits, a held-out class
that train lacks, a class name that ``--classes`` cannot name) is refused in one line naming it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .images import IMAGE_EXTENSIONS, DataError, probe_image
from .records import MAX_CLASS_NAME, ClassData, fingerprint

TRAIN = "train"
HELD_OUT = ("test", "val", "valid", "validation")
TOOL_NAMES = {"__MACOSX", "@eaDir", "Thumbs.db", "desktop.ini", "__pycache__", "$RECYCLE.BIN",
              "System Volume Information", "lost+found"}
LAYOUTS = "one folder per class (DIR/<class>/), or DIR/train/<class>/ with DIR/test/<class>/"


def ignored(name: str) -> bool:
    """A file or folder that a tool left, not data."""
    return name.startswith(".") or name in TOOL_NAMES


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not ignored(p.name))
    except OSError as e:
        raise DataError(f"cannot read {folder} ({e.strerror or e}); check the path and its permissions") from None


def _no_loose_images(folder: Path, where: str) -> None:
    loose = [p for p in _entries(folder) if p.is_file() and is_image(p)]
    if loose:
        raise DataError(f"{loose[0]} lies outside every class folder; move it into {where}/<class>/ or remove "
                        f"it ({LAYOUTS})")


def check_class_name(name: str, where: Path) -> None:
    """A class name that ``--classes`` can name and every record can hold."""
    bad = ("it holds a comma (--classes separates names with commas)" if "," in name else
           "it starts or ends with a space" if name != name.strip() else
           "it holds a control character" if any(ord(ch) < 32 or ord(ch) == 127 for ch in name) else
           f"it is longer than {MAX_CLASS_NAME} characters" if len(name) > MAX_CLASS_NAME else None)
    if bad:
        raise DataError(f"the class folder {str(where / name)!r} cannot be a class: {bad}; rename it")


@dataclass
class Layout:
    """Where each class's images are: ``train[c]`` its training folder, ``test[c]`` its held-out folder if any
    (``split``: the split layout, else held-out images are in ``test/`` inside the class folder)."""

    root: Path
    classes: list[str]               # every class, alphabetical
    train: dict[str, Path]
    test: dict[str, Path]
    split: bool

    def files(self, c: str) -> tuple[list[Path], list[Path]]:
        """The class's (training, held-out) image files, sorted."""
        found = _images(self.train[c])
        if self.split:
            held = _images(self.test[c]) if c in self.test else []
            return found, held
        held = [p for p in found if "test" in p.relative_to(self.train[c]).parts[:-1]]
        return [p for p in found if p not in set(held)], held


def _images(folder: Path) -> list[Path]:
    out = []
    for p in folder.rglob("*"):
        parts = p.relative_to(folder).parts
        if not any(ignored(part) for part in parts) and is_image(p) and p.is_file():
            out.append(p)
    return sorted(out)


def layout(data_dir: Path) -> Layout:
    """The folder's layout; ``DataError`` (one line) for anything that fits neither."""
    if not data_dir.is_dir():
        raise DataError(f"image folder {data_dir} does not exist; pass --data-dir with one sub-folder per class")
    folders = [p.name for p in _entries(data_dir) if p.is_dir()]
    splits = [f for f in folders if f == TRAIN or f in HELD_OUT]
    if not splits:
        if not folders:
            raise DataError(f"{data_dir} has no sub-folders; put each category's images in its own sub-folder "
                            f"({LAYOUTS})")
        _no_loose_images(data_dir, str(data_dir))
        return Layout(data_dir, folders, {c: data_dir / c for c in folders}, {}, False)
    others = [f for f in folders if f not in splits]
    if TRAIN not in splits or others:
        what = (f"split folders ({', '.join(splits)}) beside class folders ({', '.join(others[:3])})" if others
                else f"a held-out folder ({', '.join(splits)}) but no train folder")
        raise DataError(f"{data_dir} has {what}; lay it out as {LAYOUTS}")
    held = [f for f in splits if f != TRAIN]
    if len(held) > 1:
        raise DataError(f"{data_dir} has two held-out splits ({', '.join(held)}); keep one (test) and move or remove "
                        f"the other")
    train = data_dir / TRAIN
    _no_loose_images(train, str(train))
    classes = [p.name for p in _entries(train) if p.is_dir()]
    if not classes:
        raise DataError(f"{train} has no class folders; put each category's images in {train}/<class>/")
    test = {}
    if held:
        _no_loose_images(data_dir / held[0], str(data_dir / held[0]))
        test = {p.name: p for p in _entries(data_dir / held[0]) if p.is_dir()}
        extra = [c for c in test if c not in classes]
        if extra:
            raise DataError(f"{data_dir / held[0] / extra[0]} has no training folder {train / extra[0]}; every "
                            f"held-out class must be one of train's classes")
    return Layout(data_dir, classes, {c: train / c for c in classes}, test, True)


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); make it readable or remove it") from None
    return h.hexdigest()


def class_data(files: list[Path], root: Path, held_out: list[Path] = ()) -> ClassData:
    """A class's training images by their names (relative to ``root``, the class folder) and bytes, so the same
    images anywhere are the same data. Every image's header (and the held-out images') is checked on the way
    (``images.probe_image``), so an empty, unknown or oversized file is refused before anything is trained."""
    for p in held_out:
        probe_image(p)
    parts = []
    for p in files:
        parts.append(f"{p.relative_to(root)}:{_file_fingerprint(p)}")
        probe_image(p)
    return ClassData(len(files), fingerprint(*parts))
