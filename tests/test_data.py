"""mergan.data on small fixtures written in the real on-disk formats: MNIST IDX, SVHN .mat, LSUN lmdb, folders."""
import gzip
import io
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import mergan.data as data
from mergan.batches import BatchStream, batch_indices, to_float
from mergan.data import DataError, TensorImages, load_task_data, parse_classes, read_idx


# ----------------------------------------------------------------------------------------------- helpers

def write_idx(path, arr, gz=False):
    """An IDX file as MNIST ships it: big-endian magic 0x0800|ndim (2049 labels, 2051 images), dims, bytes."""
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_mnist(folder, gz=False, per_class=(3, 2), seed=0):
    """Four IDX files with `per_class` train/test images of every digit; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, stem, n in (("train", "train", per_class[0]), ("test", "t10k", per_class[1])):
        y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n))
        x = rng.integers(1, 256, size=(len(y), 28, 28), dtype=np.uint8)  # never 0: the padding must be
        write_idx(folder / f"{stem}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", y, gz)
        out[split] = (x, y)
    return out


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_lmdb(path, values):
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, v in enumerate(values):
            txn.put(b"%04d" % (i + 1), v)
    env.close()


def lsun_images():
    """Encoded images as LSUN stores them, in key order; the PNGs are lossless so their pixels can be checked."""
    rng = np.random.default_rng(1)
    wide = np.zeros((64, 128, 3), np.uint8)
    wide[:, :32] = (255, 0, 0)                     # left quarter red, the rest blue
    wide[:, 32:] = (0, 0, 255)
    return [
        encode(Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)), "JPEG", quality=90),
        encode(Image.new("L", (50, 50), 77), "PNG"),                       # greyscale
        encode(Image.fromarray(wide), "PNG"),                               # non-square 128x64
        encode(Image.new("RGB", (70, 40), (10, 200, 30)), "WEBP", lossless=True),
        encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG"),
        encode(Image.fromarray(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)), "JPEG"),
    ]


@pytest.fixture
def lsun_dir(tmp_path):
    write_lmdb(tmp_path / "bedroom_train_lmdb", lsun_images())
    write_lmdb(tmp_path / "kitchen_train_lmdb", [encode(Image.new("RGB", (64, 64), (0, 0, 0)), "PNG")] * 3)
    return tmp_path


def save_png(path, size, color, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


@pytest.fixture
def folder_dir(tmp_path):
    save_png(tmp_path / "cats" / "a.png", (40, 30), (255, 0, 0))
    save_png(tmp_path / "cats" / "b.PNG", (20, 50), (0, 255, 0))
    save_png(tmp_path / "cats" / "test" / "c.png", (33, 33), (0, 0, 255))
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)                     # left quarter red: a center crop removes it
    wide[:, 20:] = (0, 255, 0)
    (tmp_path / "dogs").mkdir()
    Image.fromarray(wide).save(tmp_path / "dogs" / "wide.png")
    save_png(tmp_path / "dogs" / "grey.png", (64, 64), 200, mode="L")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    return tmp_path


# ----------------------------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["torchvision", "flat"])
def test_mnist_idx_padded_split_and_source(tmp_path, gz, layout):
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    raw = write_mnist(folder, gz=gz)
    td = load_task_data("mnist", tmp_path)
    assert td.classes == [str(i) for i in range(10)] and td.channels == 1 and td.size == 32
    assert td.source.description.startswith("mnist: 30 training and 20 test digits, IDX files in")
    assert td.source.location == str(folder.resolve())
    for split, sets in (("train", td.train), ("test", td.test)):
        x, y = raw[split]
        for c in range(10):
            got = sets[str(c)].images
            want = torch.from_numpy(x[y == c])
            assert got.dtype == torch.uint8 and got.shape == (len(want), 1, 32, 32)
            assert torch.equal(got[:, 0, 2:30, 2:30], want)
            border = got.clone()
            border[:, :, 2:30, 2:30] = 0
            assert border.sum() == 0


def test_mnist_files_under_data_dir_win_and_the_class_order_is_kept(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    td = load_task_data("mnist", tmp_path, "3,1")
    assert td.classes == ["3", "1"] and set(td.train) == {"3", "1"}
    assert "IDX files in" in td.source.description
    assert len(td.train["3"]) == 3 and len(td.test["1"]) == 2


def test_the_official_mnist_is_shipped_and_read_without_any_download(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "socket", lambda *a, **k: pytest.fail("no network may be used"))
    td = load_task_data("mnist", tmp_path / "nothing-here")
    assert td.source.location is None and "shipped in assets/mnist" in td.source.description
    counts = {c: (len(td.train[c]), len(td.test[c])) for c in td.classes}
    # the official counts (the files' README)
    assert [n for n, _ in counts.values()] == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert [n for _, n in counts.values()] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x = td.train["7"].images
    assert x.shape == (6265, 1, 32, 32) and x.dtype == torch.uint8
    assert x[:, :, :2].sum() == 0 and x[:, :, :, -2:].sum() == 0 and x.max() > 200  # real digits, padded


def test_the_shipped_mnist_files_are_the_official_ones():
    import hashlib

    want = {"train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}
    for name, digest in want.items():
        assert hashlib.sha256(gzip.decompress((data.MNIST / f"{name}.gz").read_bytes())).hexdigest() == digest


def test_data_are_fingerprinted_by_content_per_class(tmp_path):
    write_mnist(tmp_path / "a", seed=0)
    write_mnist(tmp_path / "b", seed=0)
    write_mnist(tmp_path / "c", seed=1)
    a, b, c = (load_task_data("mnist", tmp_path / k).source for k in "abc")
    assert a.location != b.location and a.classes == b.classes and a.differs(b) is None   # same bytes elsewhere
    assert a.differs(c) is not None and "class 0" in a.differs(c)
    assert a.subset(["1"]).differs(c.subset(["2"])) is None   # no class in common: nothing differs


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_raises_with_path(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as e:
        load_task_data("mnist", tmp_path)
    assert str(path) in str(e.value)
    with pytest.raises(DataError, match="cannot read IDX"):
        read_idx(path)


@pytest.mark.parametrize("raw", [b"", b"\x00\x00", b"\x00\x00\x08\x03\x00\x00", b"\x00\x00\x0d\x01\x00\x00\x00\x00"])
def test_bad_idx_headers_raise(tmp_path, raw):
    path = tmp_path / "x-idx"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=str(path)):
        read_idx(path)


def test_read_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", arr)), arr)
    labels = np.array([5, 0, 9], np.uint8)
    path = write_idx(tmp_path / "b", labels, gz=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(path.read_bytes())[:4] == struct.pack(">I", 2049)
    assert np.array_equal(read_idx(path), labels)


# ----------------------------------------------------------------------------------------------- SVHN

def write_svhn(path, n, seed):
    import scipy.io

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # labels 1..10, 10 is digit 0
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y[:, 0]


def test_svhn_transpose_and_label_10_is_zero(tmp_path):
    x, y = write_svhn(tmp_path / "train_32x32.mat", 30, 0)
    xt, yt = write_svhn(tmp_path / "test_32x32.mat", 20, 1)
    td = load_task_data("svhn", tmp_path)
    assert td.channels == 3 and td.size == 32 and td.source.location == str(tmp_path.resolve()) and "svhn: " in td.source.description
    for digit in range(10):
        label = 10 if digit == 0 else digit
        got = td.train[str(digit)].images
        assert got.shape == (3, 3, 32, 32) and got.dtype == torch.uint8
        for j, i in enumerate(np.flatnonzero(y == label)):
            assert torch.equal(got[j], torch.from_numpy(x[:, :, :, i]).permute(2, 0, 1))
        assert len(td.test[str(digit)]) == 2
    img, lab = td.labeled(["0", "5"])[0]
    assert lab == 0 and torch.equal(img, torch.from_numpy(x[:, :, :, 9]).permute(2, 0, 1))


def test_svhn_without_test_file(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", 10, 0)
    td = load_task_data("svhn", tmp_path)
    assert td.test == {} and len(td.train["0"]) == 1


def test_svhn_missing_or_bad_train_file(tmp_path):
    write_svhn(tmp_path / "test_32x32.mat", 10, 0)
    with pytest.raises(DataError, match="train_32x32.mat"):
        load_task_data("svhn", tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="cannot read"):
        load_task_data("svhn", tmp_path)


# ----------------------------------------------------------------------------------------------- LSUN

def test_lsun_decodes_all_formats(lsun_dir):
    td = load_task_data("lsun", lsun_dir, "bedroom,kitchen")
    assert td.classes == ["bedroom", "kitchen"] and td.size == 64 and td.channels == 3
    ds = td.train["bedroom"]
    assert len(ds) == 6 and ds.keys[:2] == [b"0001", b"0002"]
    imgs = [ds[i] for i in range(len(ds))]
    assert all(im.shape == (3, 64, 64) and im.dtype == torch.uint8 for im in imgs)
    assert (imgs[1] == 77).all()                                   # greyscale -> 3 equal channels
    wide = imgs[2]                                                 # resized directly, not cropped
    assert wide[:, :, :14].tolist() == torch.tensor([255, 0, 0]).view(3, 1, 1).expand(3, 64, 14).tolist()
    assert (wide[2, :, 18:] == 255).all() and (wide[0, :, 18:] == 0).all()
    assert (imgs[3].float().mean((1, 2)) - torch.tensor([10.0, 200.0, 30.0])).abs().max() < 2  # WEBP


def test_lsun_cap_and_extra_categories(lsun_dir):
    write_lmdb(lsun_dir / "dining_room_train_lmdb", [encode(Image.new("RGB", (8, 8)), "PNG")] * 4)
    write_lmdb(lsun_dir / "bedroom_val_lmdb", lsun_images()[:2])
    td = load_task_data("lsun", lsun_dir, "dining_room,bedroom", lsun_cap=2)
    assert [len(td.train[c]) for c in td.classes] == [2, 2]
    assert len(td.test["bedroom"]) == 2 and "dining_room" not in td.test
    assert td.all_classes[-1] == "dining_room" and "at most 2" in td.source.description


def test_lsun_missing_category(lsun_dir, tmp_path):
    with pytest.raises(DataError, match="church_outdoor_train_lmdb"):
        load_task_data("lsun", lsun_dir)                          # default order needs all four
    with pytest.raises(DataError, match="not in dataset lsun"):
        load_task_data("lsun", lsun_dir, "bathroom")
    with pytest.raises(DataError, match="does not exist"):
        load_task_data("lsun", tmp_path / "nowhere", "bedroom")


def test_lsun_empty_or_broken_lmdb(tmp_path):
    write_lmdb(tmp_path / "bedroom_train_lmdb", [])
    with pytest.raises(DataError, match="empty"):
        load_task_data("lsun", tmp_path, "bedroom")
    (tmp_path / "tower_train_lmdb").mkdir()
    with pytest.raises(DataError, match="cannot open lmdb"):
        load_task_data("lsun", tmp_path, "tower")


def test_lsun_pickles_before_and_after_reading(lsun_dir):
    ds = load_task_data("lsun", lsun_dir, "bedroom").train["bedroom"]
    first = pickle.loads(pickle.dumps(ds))[4]                      # a copy made before any read
    assert torch.equal(ds[4], first) and first.shape == (3, 64, 64)
    copy = pickle.loads(pickle.dumps(ds))                          # after: the environment is open here
    assert copy.keys == ds.keys and torch.equal(copy[4], first)


def test_lsun_loads_twice_in_one_process(lsun_dir):
    a = load_task_data("lsun", lsun_dir, "bedroom", lsun_cap=3).train["bedroom"]
    a[0]
    b = load_task_data("lsun", lsun_dir, "bedroom").train["bedroom"]  # lmdb refuses a second open
    assert len(a) == 3 and len(b) == 6 and torch.equal(a[2], b[2])


def batches(stream, n):
    return [next(stream) for _ in range(n)]


def test_lsun_workers_give_same_batches(lsun_dir):
    td = load_task_data("lsun", lsun_dir, "bedroom,kitchen")
    ds = td.labeled(["kitchen", "bedroom"])
    assert not ds.in_memory
    runs = []
    for workers in (2, 0, 2):                                      # workers open their own env, then inherit
        stream = BatchStream(ds, 4, seed=3, start=2, num_workers=workers)
        assert (stream._loader is not None) == (workers > 0)
        runs.append(batches(stream, 5))
        del stream
    for got in (runs[0], runs[2]):
        for (x0, y0), (x1, y1) in zip(runs[1], got):
            assert x0.shape == (4, 3, 64, 64) and torch.equal(x0, x1) and torch.equal(y0, y1)
    assert {int(v) for b in runs[1] for v in b[1]} == {0, 1}


# ----------------------------------------------------------------------------------------------- folders

@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_folder_sizes_channels_and_held_out_test(folder_dir, size, channels):
    td = load_task_data("folder", folder_dir, image_size=size, channels=channels)
    assert td.classes == ["cats", "dogs"] and td.all_classes == ["cats", "dogs"]
    assert td.size == size and td.channels == channels and td.source.location == str(folder_dir.resolve())
    assert [p.name for p in td.train["cats"].files] == ["a.png", "b.PNG"]
    assert [p.name for p in td.test["cats"].files] == ["c.png"] and "dogs" not in td.test
    for ds in (td.train["cats"], td.train["dogs"], td.test["cats"]):
        for i in range(len(ds)):
            im = ds[i]
            assert im.shape == (channels, size, size) and im.dtype == torch.uint8
    red, blue = td.train["cats"][0], td.test["cats"][0]
    if channels == 3:
        assert red[:, 0, 0].tolist() == [255, 0, 0] and blue[:, 5, 5].tolist() == [0, 0, 255]
        wide = td.train["dogs"][1]                                 # center-cropped: the red quarter is gone
        assert (wide[0] == 0).all() and (wide[1] == 255).all()
        assert (td.train["dogs"][0] == 200).all()                  # greyscale to RGB
    else:
        assert (red == 76).all() and (td.train["dogs"][0] == 200).all()  # ITU-R 601 luma of pure red


def test_folder_classes_order_and_labels(folder_dir):
    td = load_task_data("folder", folder_dir, "dogs,cats")
    assert td.classes == ["dogs", "cats"]
    lab = td.labeled(["cats", "dogs"])
    assert len(lab) == 4 and [lab[i][1] for i in range(4)] == [1, 1, 0, 0]
    assert torch.equal(lab[2][0], td.train["dogs"][0])
    test = td.labeled(["cats"], split="test")
    assert len(test) == 1 and test[0][1] == 1


def test_folder_errors(folder_dir, tmp_path):
    (folder_dir / "empty").mkdir()
    (folder_dir / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="has no images"):
        load_task_data("folder", folder_dir)
    assert load_task_data("folder", folder_dir, "cats").classes == ["cats"]
    with pytest.raises(DataError, match="image-size 48"):
        load_task_data("folder", folder_dir, "cats", image_size=48)
    with pytest.raises(DataError, match="no sub-folders"):
        load_task_data("folder", folder_dir / "dogs")
    with pytest.raises(DataError, match="does not exist"):
        load_task_data("folder", tmp_path / "missing")
    with pytest.raises(DataError, match="unknown dataset"):
        load_task_data("cifar", tmp_path)


# ----------------------------------------------------------------------------------------------- classes

def test_parse_classes():
    avail = ["a", "b", "c"]
    assert parse_classes(None, avail, "x") == avail and parse_classes(None, avail, "x") is not avail
    assert parse_classes(" c, a ", avail, "x") == ["c", "a"]


@pytest.mark.parametrize("text, msg", [("a,z", "class 'z' is not in dataset x; choose from a, b, c"),
                                       ("a,,b", "empty class name"), ("", "empty class name"),
                                       ("a,", "empty class name"), ("a,b,a", "repeats a class")])
def test_parse_classes_errors(text, msg):
    with pytest.raises(DataError) as e:
        parse_classes(text, ["a", "b", "c"], "x")
    assert msg in str(e.value)


def test_mnist_bad_classes(tmp_path):
    with pytest.raises(DataError, match="empty class name"):
        load_task_data("mnist", tmp_path, "0,,1")
    with pytest.raises(DataError, match="repeats"):
        load_task_data("mnist", tmp_path, "1,1")
    with pytest.raises(DataError, match="'10'"):
        load_task_data("mnist", tmp_path, "10")


# ----------------------------------------------------------------------------------------------- batches

def test_batch_indices_deterministic_and_epoch_wise():
    a = [batch_indices(10, 3, seed=5, k=k).tolist() for k in range(6)]
    assert a == [batch_indices(10, 3, seed=5, k=k).tolist() for k in range(6)]
    assert a != [batch_indices(10, 3, seed=6, k=k).tolist() for k in range(6)]
    for epoch in (a[:3], a[3:]):                                   # 3 batches per epoch, no repeats in one
        flat = sum(epoch, [])
        assert len(flat) == 9 and len(set(flat)) == 9 and set(flat) <= set(range(10))
    assert a[:3] != a[3:]


def test_small_dataset_gives_full_batches():
    for k in range(5):
        idx = batch_indices(3, 8, seed=0, k=k).tolist()
        assert len(idx) == 8 and set(idx) == {0, 1, 2}
    images = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    b = next(BatchStream(TensorImages(images), 8, seed=0))
    assert b.shape == (8, 1, 2, 2) and set(b[:, 0, 0, 0].tolist()) == {0, 1, 2}


def test_stream_resumes_exactly():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    ds = TensorImages(images)
    full = batches(BatchStream(ds, 3, seed=7), 9)
    for k in (1, 3, 4):
        assert [b.tolist() for b in batches(BatchStream(ds, 3, seed=7, start=k), 9 - k)] == \
               [b.tolist() for b in full[k:]]
    assert full[0].view(-1).tolist() == batch_indices(10, 3, 7, 0).tolist()


def test_to_float_range():
    x = to_float(torch.tensor([0, 255, 128], dtype=torch.uint8))
    assert x.dtype == torch.float32 and x[0] == -1.0 and x[1] == 1.0 and abs(x[2] - 0.00392) < 1e-4
