"""Bad files and interruptions: every case ends in one line naming the file (or key, or option) and the fix, exit
1, and nothing on disk changed; a run stopped at any moment resumes to the same bytes."""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from test_train import TINY
from mergan import load_generator
from mergan.checkpoints import CheckpointError, save_generator
from mergan.data import DataError, decode_image
from mergan.models import build_generator, model_config

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes' digest (what 'nothing changed' compares)."""
    if not folder.exists():
        return {}
    if folder.is_file():
        return {folder: hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys, *words):
    """The command's one error line, its last on stderr (above it only progress bars), with ``words`` in it."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and lines[-1] == errors[0], lines
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-task RA run, copied by the tests that damage it."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    out = tmp_path_factory.mktemp("finished") / "ra"
    assert train.main(["--classes", "0,1", "--out", str(out), *TINY]) == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


# ------------------------------------------------------------------------------------------- image files
def test_16_bit_and_float_images_are_scaled_not_whitened(tmp_path):
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)   # 0 .. 65472
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    got = decode_image(tmp_path / "deep.png", 32, 1, crop=True)[0].numpy().astype(int)
    assert np.abs(got - np.rint(ramp / 257.0)).max() <= 1    # not clipped at 255
    floats = (ramp / 65535.0).astype(np.float32)
    Image.fromarray(floats, mode="F").save(tmp_path / "float.tif")
    got = decode_image(tmp_path / "float.tif", 32, 1, crop=True)[0].numpy().astype(int)
    assert np.abs(got - np.rint(floats * 255)).max() <= 1
    Image.fromarray(floats * 300, mode="F").save(tmp_path / "hot.tif")
    with pytest.raises(DataError, match="hot.tif has float pixels outside"):
        decode_image(tmp_path / "hot.tif", 32, 1, crop=True)


def folder_with(tmp_path, bad_name: str, bad_bytes: bytes) -> Path:
    root = tmp_path / "imgs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), (40 * i, 90, 30)).save(root / name / f"{i}.png")
    (root / "b" / bad_name).write_bytes(bad_bytes)
    return root


def lmdb_with_bad_value(tmp_path) -> Path:
    from test_data import encode, write_lmdb

    root = tmp_path / "lsun"
    root.mkdir()
    good = encode(Image.new("RGB", (64, 48), (90, 60, 30)), "JPEG")
    write_lmdb(root / "bedroom_train_lmdb", [good, good, b"this is not an image", good])
    return root


def svhn_with_float_pixels(tmp_path) -> Path:
    import scipy.io

    root = tmp_path / "svhn"
    root.mkdir()
    x = np.full((32, 32, 3, 20), 300.0)
    scipy.io.savemat(root / "train_32x32.mat", {"X": x, "y": (np.arange(20) % 10 + 1).reshape(20, 1)})
    return root


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[:300]


@pytest.mark.parametrize("case", ["text-as-png", "truncated-jpeg", "lmdb-value", "svhn-float"])
def test_bad_image_data_one_line_naming_it_and_no_run_left(tmp_path, capsys, case):
    if case == "text-as-png":
        args, words = ["--dataset", "folder", "--data-dir", str(folder_with(tmp_path, "x.png", b"hello")),
                       "--classes", "b"], ["x.png", "not a readable image"]
    elif case == "truncated-jpeg":
        args, words = ["--dataset", "folder", "--data-dir", str(folder_with(tmp_path, "t.jpg", truncated_jpeg())),
                       "--classes", "b"], ["t.jpg", "not a readable image"]
    elif case == "lmdb-value":
        args, words = ["--dataset", "lsun", "--data-dir", str(lmdb_with_bad_value(tmp_path)), "--classes", "bedroom"], \
            ["key '0003'", "not a readable image"]
    else:
        args, words = ["--dataset", "svhn", "--data-dir", str(svhn_with_float_pixels(tmp_path))], ["outside 0-255"]
    out = tmp_path / "run"
    assert train.main(["--strategy", "sft", "--out", str(out), "--dim", "2", "--iters", "40", "--batch-size", "4",
                       *args]) == 1
    one_error_line(capsys, *words)
    assert not out.exists()   # a failed start leaves nothing that changes the next command


# ------------------------------------------------------------------------------------------- run folders
@pytest.mark.parametrize("where", ["file", "below-file"])
def test_out_that_is_a_file_or_below_one(tmp_path, capsys, where):
    f = tmp_path / "taken"
    f.write_text("keep me")
    out = f if where == "file" else f / "run"
    assert train.main(["--classes", "0", "--out", str(out), *TINY]) == 1
    one_error_line(capsys, str(f))
    assert f.read_text() == "keep me"


def test_state_of_another_shape_refused(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path / "r")
    torch.save({"hello": torch.zeros(2)}, out / "state.pt")
    before = snapshot(out)
    assert train.main(["--classes", "0,1,2", "--out", str(out), *TINY]) == 1
    one_error_line(capsys, "state.pt", "not a training state")
    assert snapshot(out) == before


def test_full_disk_while_saving_says_so_and_keeps_files(finished, tmp_path, capsys, monkeypatch):
    out = copy_run(finished, tmp_path / "r")
    before = snapshot(out)
    import shutil
    from collections import namedtuple

    def full(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 433408 vs 433300")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: namedtuple("u", "total used free")(10, 10, 0))
    assert train.main(["--classes", "0,1,2", "--out", str(out), *TINY]) == 1
    one_error_line(capsys, "state.pt", "the disk is full")
    assert snapshot(out) == before
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("field, value", [("dim", 10**7), ("dim", -1), ("dim", "abc"), ("n_classes", 10**10),
                                          ("channels", 2.5), ("arch", "vit")])
def test_crafted_generator_metadata_refused_before_building(finished, tmp_path, capsys, field, value):
    from safetensors.torch import load_file

    from mergan.checkpoints import read_header, write_safetensors

    out = copy_run(finished, tmp_path / "run")
    path = out / "task_00.safetensors"
    raw = read_header(path, "mergan-generator", "", "")
    raw["model"] = json.dumps({**json.loads(raw["model"]), field: value})   # the run's settings sane, its model not
    write_safetensors(path, load_file(str(path)), raw)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"model.{field}|architecture"):
        load_generator(path)
    assert time.perf_counter() - start < 1.0   # nothing of that size was built
    assert train.main(["--test", "--out", str(out)]) == 1
    one_error_line(capsys, "task_00.safetensors")


def test_generator_whose_tensors_do_not_fit_its_metadata(tmp_path):
    from helpers import task_meta

    path = tmp_path / "task_00.safetensors"
    meta = task_meta(model_config("dcgan32", channels=1, dim=4))
    save_generator(path, build_generator(model_config("dcgan32", channels=1, dim=2)), meta)
    with pytest.raises(CheckpointError, match="do not fit its model metadata"):
        load_generator(path)


def test_renamed_task_files_refused_by_test(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path / "r")
    a, b = out / "task_00.safetensors", out / "task_01.safetensors"
    a.rename(out / "x"), b.rename(a), (out / "x").rename(b)
    assert train.main(["--test", "--out", str(out), "--eval-samples", "10"]) == 1
    one_error_line(capsys, "task_00.safetensors", "restore the run's original file names")


def test_eval_samples_out_of_range(finished, capsys):
    assert train.main(["--test", "--out", str(finished), "--eval-samples", "100000000"]) == 1
    one_error_line(capsys, "--eval-samples must be between 2 and 100,000")


def test_report_on_malformed_metrics(tmp_path, capsys):
    from mergan import report

    (tmp_path / "metrics.json").write_text(json.dumps({"tasks": 5, "strategy": "ra", "dataset": "mnist"}))
    assert report.main([str(tmp_path)]) == 1
    one_error_line(capsys, str(tmp_path), "evaluate the run again")


# ------------------------------------------------------------------------------------------- interruptions
def test_stopped_between_state_and_task_file_resumes_to_the_same_bytes(finished, tmp_path, capsys):
    """The end of a task writes the state first: a run stopped before the task's file is written is resumed by
    writing it from the state (here the last task: the run is otherwise finished)."""
    out = copy_run(finished, tmp_path / "r")
    want = snapshot(out)
    (out / "task_01.safetensors").unlink()
    (out / "samples" / "task_01.png").unlink()
    (out / ".task_01.safetensors.abc.tmp").write_bytes(b"")   # a write that a killed process left behind
    assert train.main(["--classes", "0,1", "--out", str(out), *TINY]) == 1
    one_error_line(capsys, "before its files were written", "--resume")
    assert train.main(["--classes", "0,1", "--out", str(out), "--resume", *TINY]) == 0
    assert snapshot(out) == want


@pytest.mark.slow
def test_sigkill_at_the_end_of_a_task_resumes_to_identical_files(finished, tmp_path):
    """A real SIGKILL, the moment the first task's file appears; the resumed run's files are byte-identical to
    the uninterrupted run's."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "train.py", "--classes", "0,1", "--out", str(out), *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}   # as the run it is compared with
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "task_00.safetensors").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    want = {p.relative_to(finished): d for p, d in snapshot(finished).items()}
    got = {p.relative_to(out): d for p, d in snapshot(out).items()}
    assert got == want
