"""Images and folders as people have them: transparency, phone photos' orientation, oversized files, the common
folder layouts and what tools leave in them, and a bad file found before anything is written."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import train
from mergan.data import DataError, decode_image, load_task_data
from mergan.images import probe_image
from test_robustness import one_error_line

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest

QUICK = ["--strategy", "sft", "--dim", "2", "--iters", "2", "--batch-size", "4", "--dataset", "folder"]


def digit_on_transparent(mode="RGBA") -> Image.Image:
    """A black bar drawn on a fully transparent background, as drawing apps export a digit."""
    arr = np.zeros((32, 32, 4), np.uint8)           # transparent black everywhere
    arr[8:24, 14:18] = (0, 0, 0, 255)               # the opaque black stroke
    img = Image.fromarray(arr, "RGBA")
    return img if mode == "RGBA" else img.convert(mode)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (its data is one tiny row): what a decompression bomb
    or a huge scan looks like to a decoder that trusts the header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0"))
            + chunk(b"IEND", b""))


def class_folder(root, name, n=3, color=(200, 30, 30), size=(40, 40)):
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, tuple(max(0, c - 20 * i) for c in color)).save(root / name / f"{i}.png")
    return root / name


# ----------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
@pytest.mark.parametrize("channels", [1, 3])
def test_transparency_is_composited_on_white_as_a_viewer_shows_it(tmp_path, mode, channels):
    if mode == "P":   # a palette image whose background index is transparent, as GIFs and small PNGs store it
        index = np.zeros((32, 32), np.uint8)
        index[8:24, 14:18] = 1
        img = Image.fromarray(index, "P")
        img.putpalette([0, 0, 0, 0, 0, 0])                     # both colours black; index 0 transparent
        img.save(tmp_path / "d.png", transparency=0)
    else:
        digit_on_transparent(mode).save(tmp_path / "d.png")
    got = decode_image(tmp_path / "d.png", 32, channels, crop=True)
    assert got.shape == (channels, 32, 32)
    assert (got[:, 8:24, 14:18] == 0).all()                       # the stroke stays black
    assert (got[:, :6] == 255).all() and (got[:, :, :10] == 255).all()   # the background is white, not black


def test_exif_orientation_is_applied_before_the_crop(tmp_path):
    """A phone stores a portrait photo sideways with EXIF orientation 6 (turn 90 degrees clockwise to show)."""
    upright = np.zeros((60, 30, 3), np.uint8)    # tall: top red, middle green | yellow, bottom blue
    upright[:20] = (255, 0, 0)
    upright[20:40, :15] = (0, 255, 0)
    upright[20:40, 15:] = (255, 255, 0)
    upright[40:] = (0, 0, 255)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)   # what the sensor wrote: wide
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    got = decode_image(tmp_path / "phone.jpg", 30, 3, crop=True).int()
    want = decode_image(tmp_path / "upright.png", 30, 3, crop=True).int()
    assert (got - want).abs().float().mean() < 12                     # JPEG's loss only
    assert got[:, 15, 3].tolist() == pytest.approx([0, 255, 0], abs=40)      # green on the left, as shown
    assert got[:, 15, 26].tolist() == pytest.approx([255, 255, 0], abs=40)   # yellow on the right


@pytest.mark.parametrize("width, height", [(20_000, 10_000), (10_000, 9_500)])   # over Pillow's error, its warning
def test_oversized_image_refused_in_one_line_naming_it(tmp_path, capsys, width, height):
    root = tmp_path / "imgs"
    class_folder(root, "a")
    (root / "a" / "scan.png").write_bytes(png_declaring(width, height))
    with pytest.raises(DataError, match=r"scan.png has \d+ megapixels, more than the 89 megapixels"):
        probe_image(root / "a" / "scan.png")
    with pytest.raises(DataError, match="scan.png has"):
        decode_image(root / "a" / "scan.png", 32, 3, crop=True)
    out = tmp_path / "run"
    assert train.main([*QUICK, "--data-dir", str(root), "--out", str(out)]) == 1
    one_error_line(capsys, "scan.png", "megapixels", "shrink it")
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- layouts
def test_train_test_split_layout(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        class_folder(tmp_path / split, "cats", n)
        class_folder(tmp_path / split, "dogs", n, color=(30, 30, 200))
    td = load_task_data("folder", tmp_path)
    assert td.classes == ["cats", "dogs"]                            # not "train" and "test"
    assert [len(td.train[c]) for c in td.classes] == [3, 3] and [len(td.test[c]) for c in td.classes] == [2, 2]
    assert td.test["cats"].files[0].parent == tmp_path / "test" / "cats"


def test_files_that_tools_leave_are_not_data(tmp_path):
    clean = tmp_path / "clean"
    for c in ("cats", "dogs"):
        class_folder(clean, c)
    messy = tmp_path / "messy"
    for c in ("cats", "dogs"):
        class_folder(messy, c)
    (messy / "cats" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (messy / "cats" / "._0.png").write_bytes(b"\0\5\x16\7AppleDouble")          # macOS's resource fork copy
    (messy / "cats" / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(messy / "cats" / ".ipynb_checkpoints" / "0-checkpoint.png")
    (messy / "__MACOSX" / "cats").mkdir(parents=True)                           # a zip made on a Mac
    (messy / "__MACOSX" / "cats" / "._1.png").write_bytes(b"\0\5\x16\7")
    (messy / "dogs" / "@eaDir" / "0.png").mkdir(parents=True)                   # a NAS's thumbnails
    Image.new("RGB", (8, 8)).save(messy / "dogs" / "@eaDir" / "0.png" / "SYNOFILE_THUMB_S.jpg")
    (messy / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (messy / "labels.csv").write_text("file,label\n")
    a, b = load_task_data("folder", clean), load_task_data("folder", messy)
    assert b.classes == ["cats", "dogs"]
    assert {c: d.fingerprint for c, d in b.source.classes.items()} == \
        {c: d.fingerprint for c, d in a.source.classes.items()}              # the same data, by content


@pytest.mark.parametrize("case, words", [
    ("loose image", ["stray.png", "outside every class folder"]),
    ("splits beside classes", ["split folders (train)", "beside class folders (cats)"]),
    ("held out without train", ["held-out folder (test) but no train folder"]),
    ("two held-out splits", ["two held-out splits (test, val)"]),
    ("held-out class not in train", ["test/birds", "has no training folder"]),
    ("comma in a class name", ["/a,b'", "comma", "rename it"]),
])
def test_other_layouts_one_line(tmp_path, capsys, case, words):
    root = tmp_path / "d"
    if case == "loose image":
        class_folder(root, "cats")
        Image.new("RGB", (8, 8)).save(root / "stray.png")
    elif case == "splits beside classes":
        class_folder(root / "train", "cats")
        class_folder(root, "cats")
    elif case == "held out without train":
        class_folder(root / "test", "cats")
    elif case == "two held-out splits":
        for split in ("train", "test", "val"):
            class_folder(root / split, "cats")
    elif case == "held-out class not in train":
        class_folder(root / "train", "cats")
        class_folder(root / "test", "birds")
    else:
        class_folder(root, "a,b")
        class_folder(root, "c")
    out = tmp_path / "run"
    assert train.main([*QUICK, "--data-dir", str(root), "--out", str(out)]) == 1
    one_error_line(capsys, *words)
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("name, content", [("empty.jpg", b""), ("notes.png", b"just text"),
                                           ("half.png", png_declaring(40, 40)[:20])])
def test_unreadable_file_refused_before_anything_is_written(tmp_path, capsys, name, content):
    """Found while the data are read, in any class: the run folder is never made."""
    root = tmp_path / "d"
    class_folder(root, "a")
    class_folder(root, "b")
    (root / "b" / name).write_bytes(content)
    out = tmp_path / "run"
    assert train.main([*QUICK, "--save-every", "1", "--data-dir", str(root), "--out", str(out)]) == 1
    one_error_line(capsys, name, "remove or replace it")
    assert not out.exists()
    (root / "b" / name).unlink()
    assert train.main([*QUICK, "--save-every", "1", "--data-dir", str(root), "--out", str(out)]) == 0


def damaged_png() -> bytes:
    """A PNG whose header is sound and whose pixel data is cut short: found only when it is decoded."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()[:200]


def test_damaged_file_found_while_training_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Decoding finds it after the first saves of a new run: the start is undone (the data will change, and the
    run's identity with them), so the same command starts afresh once the file is fixed."""
    from mergan.trainer import Trainer

    root = tmp_path / "d"
    class_folder(root, "a", n=12)
    (root / "a" / "5.png").write_bytes(damaged_png())
    saves, save = [], Trainer._save_state
    monkeypatch.setattr(Trainer, "_save_state", lambda self, *a, **k: (saves.append(a), save(self, *a, **k))[1])
    out = tmp_path / "run"
    args = [*QUICK, "--iters", "10", "--critic-iters", "1", "--save-every", "1", "--data-dir", str(root),
            "--out", str(out)]
    assert train.main(args) == 1
    one_error_line(capsys, "5.png", "not a readable image")
    assert saves and not out.exists()                 # it had saved, and left nothing
    Image.new("RGB", (40, 40)).save(root / "a" / "5.png")
    assert train.main(args) == 0


def test_damaged_file_in_a_later_class_fixed_then_resumed(tmp_path, capsys):
    """The first class's task is delivered; the damaged file is in the next class, whose task had not begun:
    fixed, the run continues where it stopped."""
    root = tmp_path / "d"
    class_folder(root, "a")
    class_folder(root, "b", n=6)
    (root / "b" / "4.png").write_bytes(damaged_png())
    out = tmp_path / "run"
    args = [*QUICK, "--data-dir", str(root), "--out", str(out)]
    assert train.main(args) == 1
    one_error_line(capsys, "4.png", "not a readable image")
    assert (out / "task_00.safetensors").is_file() and not (out / "task_01.safetensors").exists()
    Image.new("RGB", (40, 40), (0, 0, 90)).save(root / "b" / "4.png")
    assert train.main([*args, "--resume"]) == 0
    assert (out / "task_01.safetensors").is_file()
    assert torch.load(out / "state.pt", weights_only=True)["task"] == 1
