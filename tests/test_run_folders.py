"""A run folder's writer and identity, and what every message asks of the user: one command writes a folder at a
time (the next says who), files from another run are refused by name, and every message names an action that
works for the command that printed it."""
import errno
import os
import shutil
import signal
import subprocess
import sys

import pytest
from PIL import Image

import train
from mergan.runs import RunFolder
from test_robustness import ROOT, copy_run, one_error_line, snapshot
from test_train import TINY

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def run(out, *extra, classes="0,1", seed="0"):
    return train.main(["--classes", classes, "--out", str(out), "--seed", seed, *TINY, *extra])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished RA runs with the same shapes, of other seeds: each file of one fits the other's networks."""
    from accelerate.state import AcceleratorState

    root = tmp_path_factory.mktemp("two")
    for seed in ("0", "1"):
        AcceleratorState._reset_state(True)
        assert run(root / f"seed{seed}", seed=seed) == 0
    return root


# ------------------------------------------------------------------------------------------- one writer
def test_a_second_command_on_a_folder_being_written_says_who_writes_it(two_runs, tmp_path, capsys):
    out = copy_run(two_runs / "seed0", tmp_path / "r")
    before = snapshot(out)
    with RunFolder(out).writing("python train.py --classes 0,1,2 --out r"):
        assert run(out, classes="0,1,2") == 1                     # an extension
        one_error_line(capsys, f"{out} is being written by process {os.getpid()}", "--classes 0,1,2 --out r",
                       "wait until it ends")
        assert train.main(["--test", "--out", str(out), "--eval-samples", "10"]) == 1   # its evaluation
        one_error_line(capsys, "is being written by process")
    assert snapshot(out) == before
    fresh = tmp_path / "new"
    with RunFolder(fresh).writing("python train.py --out new", create=True):
        assert run(fresh) == 1                                     # two starts into one new folder
        one_error_line(capsys, "is being written by")
    assert run(fresh) == 0


def test_a_killed_writer_leaves_no_lock_behind(tmp_path, capsys):
    out = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mergan.runs import RunFolder\n"
                               f"with RunFolder({str(out)!r}).writing('python train.py --out r', create=True):\n"
                               "    print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert run(out) == 1
    one_error_line(capsys, f"process {holder.pid}")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert run(out) == 0                                           # the OS released it with the process


# ------------------------------------------------------------------------------------------- identity
def test_another_runs_files_of_the_same_shapes_refused_by_name(two_runs, tmp_path, capsys):
    mine, other = two_runs / "seed0", two_runs / "seed1"
    out = copy_run(mine, tmp_path / "state")
    shutil.copy(other / "state.pt", out / "state.pt")             # --resume, an extension
    before = snapshot(out)
    for extra in (["--resume"], ["--classes", "0,1,2"]):
        assert train.main(["--out", str(out), "--seed", "0", *TINY, *extra, *(["--classes", "0,1"] if
                                                                             extra == ["--resume"] else [])]) == 1
        one_error_line(capsys, "state.pt", "belongs to another run")
    assert snapshot(out) == before
    out = copy_run(mine, tmp_path / "task")
    shutil.copy(other / "task_01.safetensors", out / "task_01.safetensors")   # the generator RA replays
    before = snapshot(out)
    assert run(out, classes="0,1,2") == 1
    one_error_line(capsys, "task_01.safetensors", "belongs to another run")
    assert train.main(["--test", "--out", str(out), "--eval-samples", "10"]) == 1
    one_error_line(capsys, "task_01.safetensors", "belongs to another run")
    assert snapshot(out) == before
    from mergan.catalog import discover

    catalog = discover(out)                                       # the demo shows the run's own generators only
    assert any("task_01.safetensors" in m and "belongs to another run" in m for m in catalog.messages)
    assert sorted(catalog.experiments[0].runs["ra"].generators) == [0]


def test_a_state_whose_weights_do_not_fit_is_one_line(two_runs, tmp_path, capsys):
    import torch

    out = copy_run(two_runs / "seed0", tmp_path / "r")
    state = torch.load(out / "state.pt", weights_only=True)
    state["G"]["fc.weight"] = torch.zeros(3, 3)
    torch.save(state, out / "state.pt")
    before = snapshot(out)
    assert run(out, classes="0,1,2") == 1
    one_error_line(capsys, "the saved weights do not fit", "fc.weight", "restore the run's own state.pt")
    assert snapshot(out) == before


def test_a_folder_dataset_is_its_content_wherever_it_is_named(tmp_path, capsys, monkeypatch):
    data = tmp_path / "pets"
    for name, color in (("cats", (200, 40, 40)), ("dogs", (40, 40, 200))):
        (data / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (36, 36), tuple(c + 10 * i for c in color)).save(data / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    quick = ["--dataset", "folder", "--strategy", "sft", "--dim", "2", "--iters", "1", "--batch-size", "4"]
    out = tmp_path / "run"
    assert train.main([*quick, "--data-dir", "pets", "--classes", "cats", "--out", str(out)]) == 0
    moved = tmp_path / "elsewhere" / "my pets"
    shutil.copytree(data, moved)                                  # the same images, by an absolute path
    assert train.main([*quick, "--data-dir", str(moved), "--classes", "cats,dogs", "--out", str(out)]) == 0
    Image.new("RGB", (36, 36), (0, 255, 0)).save(data / "cats" / "1.png")   # other images, the same name
    before = snapshot(out)
    (data / "birds").mkdir()
    Image.new("RGB", (36, 36)).save(data / "birds" / "0.png")
    assert train.main([*quick, "--data-dir", "pets", "--classes", "cats,dogs,birds", "--out", str(out)]) == 1
    one_error_line(capsys, "trained on other data", "images of class cats differ", "restore those images")
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------- messages
def test_ctrl_c_names_the_command_that_continues(tmp_path, capsys, monkeypatch):
    from mergan.trainer import Trainer

    out = tmp_path / "r"
    step, calls = Trainer.critic_step, [0]

    def interrupted_after(n):
        def critic_step(self, *a, **k):
            calls[0] += 1
            if calls[0] > n:
                raise KeyboardInterrupt
            return step(self, *a, **k)
        return critic_step

    monkeypatch.setattr(Trainer, "critic_step", interrupted_after(2))   # before the first save
    assert run(out) == 130
    one_error_line(capsys, "interrupted before the first save", "run the same command")
    assert not out.exists()
    calls[0] = 0
    monkeypatch.setattr(Trainer, "critic_step", interrupted_after(18))  # after task 0's saves
    assert run(out) == 130
    line = one_error_line(capsys, "interrupted; the run continues from its last save with: python train.py")
    command = line.split("with: python train.py ", 1)[1].split()
    assert command[-1] == "--resume"
    monkeypatch.setattr(Trainer, "critic_step", step)
    assert train.main(command) == 0


def test_a_start_killed_in_its_first_write_is_started_again(tmp_path, capsys):
    out = tmp_path / "r"
    (out / "samples").mkdir(parents=True)
    (out / ".config.json.x1y2.tmp").write_text('{"format_ver')   # what a kill during the first write leaves
    (out / ".lock").touch()
    assert run(out, "--resume") == 1
    one_error_line(capsys, "nothing to resume", "drop --resume")
    assert run(out) == 0


def test_a_full_disk_names_the_command_that_continues(two_runs, tmp_path, capsys, monkeypatch):
    from mergan import checkpoints

    out = copy_run(two_runs / "seed0", tmp_path / "r")
    before, real = snapshot(out), checkpoints.os.replace

    def full(src, dst):
        if str(dst).endswith("state.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", full)
    assert run(out, classes="0,1,2") == 1
    one_error_line(capsys, "state.pt: the disk is full", "free some space, then run the same command with --resume")
    assert snapshot(out) == before
