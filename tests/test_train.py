"""train.py end to end on the shipped real digits: every strategy, resume, extension, bad input."""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from mergan import load_generator, sample
from mergan.checkpoints import CheckpointError, read_metadata
from mergan.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dim", "4", "--iters", "3", "--save-every", "2", "--batch-size", "8"]


pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def run(out, *extra, strategy="ra", classes="0,1"):
    return train.main(["--strategy", strategy, "--classes", classes, "--out", str(out), *TINY, *extra])


class Crash(Exception):
    """Stands for the process dying."""


def crash_after_saves(monkeypatch, n):
    """Make training die right after its ``n``-th resumable state save."""
    from mergan.trainer import Trainer

    save, count = Trainer._save_state, [0]

    def save_then_crash(self, *args, **kwargs):
        save(self, *args, **kwargs)
        count[0] += 1
        if count[0] >= n:
            raise Crash(f"died after state save {count[0]}")

    monkeypatch.setattr(Trainer, "_save_state", save_then_crash)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Finished runs of every strategy on classes 0,1,2 (trained once, read by several tests)."""
    from accelerate.state import AcceleratorState

    root = tmp_path_factory.mktemp("finished")
    for strategy in sorted(STRATEGIES):
        AcceleratorState._reset_state(True)
        assert run(root / strategy, strategy=strategy, classes="0,1,2") == 0
    return root


def tensors(path):
    return load_file(str(path))


def same_files(a, b):
    ta, tb = tensors(a), tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_end_to_end(finished, strategy):
    out = finished / strategy
    files = sorted(out.glob("task_*.safetensors"))
    expected = ["task_02.safetensors"] if strategy == "joint" else [f"task_{t:02d}.safetensors" for t in range(3)]
    assert [f.name for f in files] == expected
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["strategy"] == strategy and saved["config"]["classes"] == ["0", "1", "2"]
    assert saved["strategy"] == STRATEGIES[strategy].info().to_dict() and saved["format_version"] == 2
    for f in files:
        meta = read_metadata(f)
        assert meta.strategy.name == strategy and meta.dataset == "mnist"
        assert meta.classes == ["0", "1", "2"][: meta.task + 1]
        assert "shipped in assets/mnist" in meta.data_source.description and meta.model["dim"] == 4
        assert meta.iters == (9 if strategy == "joint" else 3)
        assert meta.run_id == saved["run_id"]
        # the whole resolved configuration travels with the generator, RA's weight included
        assert meta.config.batch_size == 8
        assert meta.config.ra_lambda == (pytest.approx(1e-3 * 64 / 8) if strategy in ("ra", "jtr-ra") else None)
        assert (out / "samples" / f"task_{meta.task:02d}.png").is_file()
        G, _ = load_generator(f)
        imgs = sample(G, [0, 1, 2], seed=0)
        assert imgs.dtype == torch.uint8 and imgs.shape == (3, 1, 32, 32)


def test_first_task_identical_across_sequential_strategies(finished):
    # the paper's Fig. 5 starts every method from the same first-task network; here it comes for free
    for s in ("ra", "jtr", "ewc"):
        assert same_files(finished / "sft/task_00.safetensors", finished / f"{s}/task_00.safetensors"), s


def test_same_command_same_numbers(finished, tmp_path):
    assert run(tmp_path / "a", classes="0,1") == 0   # the first two tasks of the finished three-task run
    assert same_files(tmp_path / "a/task_01.safetensors", finished / "ra/task_01.safetensors")


# saves with --iters 3 --save-every 2: iteration 2 of each task, then the task's end (joint: iterations 2, 4, ...)
@pytest.mark.parametrize("strategy, saves", [("ra", 1), ("ra", 3), ("ewc", 2), ("joint", 2)])
def test_resume_after_interrupt_equals_uninterrupted(finished, tmp_path, monkeypatch, strategy, saves):
    classes = "0,1,2"
    part = tmp_path / "part"
    with monkeypatch.context() as m:
        crash_after_saves(m, saves)
        with pytest.raises(Crash):
            run(part, strategy=strategy, classes=classes)
    assert (part / "state.pt").is_file()
    # without --resume the interrupted run is not touched
    assert run(part, strategy=strategy, classes=classes) == 1
    assert run(part, "--resume", strategy=strategy, classes=classes) == 0
    for f in sorted((finished / strategy).glob("task_*.safetensors")):
        assert same_files(f, part / f.name), f.name


def test_extending_a_finished_run_trains_only_new_tasks(finished, tmp_path, capsys):
    ext = tmp_path / "ext"
    assert run(ext, classes="0,1") == 0
    before = {f.name: digest(f) for f in ext.glob("task_*.safetensors")}
    assert run(ext, classes="0,1") == 0  # nothing to do
    assert "nothing to train" in capsys.readouterr().out
    assert run(ext, classes="0,1,2") == 0
    assert {f.name: digest(f) for f in ext.glob("task_0[01].safetensors")} == before
    # adding a class needs neither old data nor retraining, and gives what one long run gives
    assert same_files(finished / "ra/task_02.safetensors", ext / "task_02.safetensors")


def test_mismatched_configuration_refused(finished, tmp_path, capsys):
    out = shutil.copytree(finished / "ra", tmp_path / "r")
    assert run(out, "--seed", "3", classes="0,1,2") == 1
    assert "seed" in capsys.readouterr().err
    assert run(out, classes="1,0,2") == 1
    assert "same classes in the same order" in capsys.readouterr().err
    assert run(out, strategy="sft", classes="0,1,2") == 1


def test_nan_loss_stops_with_one_line_and_keeps_saved_files(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert run(out, classes="0,1") == 0
    saved = [*out.glob("task_*.safetensors"), *out.glob("samples/*.png")]
    before = {f: digest(f) for f in saved}
    import mergan.losses as losses

    monkeypatch.setattr(losses, "wasserstein_generator_loss", lambda d: d.float().mean() * float("nan"))
    assert run(out, classes="0,1,2") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and err[0].startswith("error: ") and "nan" in err[0] and "task 2" in err[0], err
    assert not (out / "task_02.safetensors").exists()
    assert {f: digest(f) for f in saved} == before
    assert run(out, classes="0,1") == 0  # the run is still usable as it was


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar"], "unknown dataset"),
    (["--strategy", "foo"], "unknown strategy"),
    (["--classes", "0,,1"], "empty class name"),
    (["--classes", "12"], "class '12' is not in dataset mnist"),
    (["--classes", "0,0"], "repeats a class"),
    (["--preset", "huge"], "unknown preset"),
    (["--dataset", "svhn", "--data-dir", "nowhere"], "train_32x32.mat"),
    (["--dataset", "lsun", "--data-dir", "nowhere"], "does not exist"),
    (["--mixed-precision", "fp16", "--cpu"], "fp16 mixed precision needs a CUDA GPU"),
    (["--iters", "0"], "--iters must be between 1"),
    (["--betas", "0.5"], "--betas takes two numbers"),
    (["--betas", "0.5,1.5"], "--betas must each be in [0, 1)"),
    (["--betas", "nan,0.9"], "--betas must each be in [0, 1)"),
    (["--ema", "1"], "--ema must be in [0, 1)"),
    (["--ema", "nan"], "--ema must be in [0, 1)"),
    (["--critic-iters", "0"], "--critic-iters must be at least 1"),
    (["--penalty-every", "0"], "--penalty-every must be at least 1"),
    (["--penalty-weight", "-1"], "--penalty-weight must be a finite number, 0 or more"),
    (["--penalty-weight", "inf"], "--penalty-weight must be a finite number, 0 or more"),
    (["--batch-size", "1"], "--batch-size must be between 2"),
    (["--batch-size", "100000"], "--batch-size must be between 2"),
    (["--replay-batch", "1"], "--replay-batch must be between 2"),
    (["--lr", "0"], "--lr must be a number in (0, 1)"),
    (["--lr", "inf"], "--lr must be a number in (0, 1)"),
    (["--lr", "nan"], "--lr must be a number in (0, 1)"),
    (["--ra-lambda", "nan"], "--ra-lambda must be a finite number, 0 or more"),
    (["--ra-lambda", "-1"], "--ra-lambda must be a finite number, 0 or more"),
    (["--ewc-lambda", "inf"], "--ewc-lambda must be a finite number, 0 or more"),
    (["--dim", "100000"], "--dim must be between 1 and 1024"),
    (["--save-every", "0"], "--save-every must be at least 1"),
    (["--lsun-cap", "0"], "--lsun-cap must be at least 1"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_one_clear_line(tmp_path, capsys, args, message):
    assert train.main(["--out", str(tmp_path / "r"), *args]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize("args, lr, batch, ra_lambda", [
    (["--preset", "paper"], 1e-4, 64, 1e-3),                         # the paper's values
    (["--preset", "paper", "--dataset", "svhn"], 1e-4, 64, 1e-2),
    (["--preset", "paper", "--batch-size", "32"], 1e-4, 32, 2e-3),   # the summed RA term keeps its balance
    (["--preset", "quick"], 4e-4, 64, 1.2e-2),                       # the CPU-sized preset: x3, and x4 for 16 replays
    (["--preset", "quick", "--ra-lambda", "1e-3", "--lr", "1e-4"], 1e-4, 64, 1e-3),  # explicit values win
    (["--strategy", "jtr-ra", "--preset", "paper"], 1e-4, 64, 1e-3),   # the original code's --JTR --RA: RA's weight
    (["--strategy", "jtr-ra", "--preset", "quick"], 4e-4, 64, 3e-3),   # quick: a quarter of RA's (README, JTR+RA)
    (["--strategy", "jtr-ra", "--preset", "quick", "--ra-lambda", "1.2e-2"], 4e-4, 64, 1.2e-2),
])
def test_preset_settings(args, lr, batch, ra_lambda):
    ns = train.build_parser().parse_args(["--strategy", "ra", *args])
    cfg = train.make_config(ns, _data(ns.dataset))
    assert (cfg.lr, cfg.batch_size) == (lr, batch) and cfg.ra_lambda == pytest.approx(ra_lambda)


def _data(dataset="mnist"):
    from types import SimpleNamespace

    from mergan.records import ClassData, DataSource

    return SimpleNamespace(name=dataset, size=32, channels=1, all_classes=[str(i) for i in range(10)],
                           classes=["0", "1"], source=DataSource(dataset, "test", None, {c: ClassData(1, c) for c in "01"}))


def _config(*args):
    ns = train.build_parser().parse_args(["--strategy", "ra", *args])
    return train.make_config(ns, _data())


def test_paper_preset_is_the_original_game_and_quick_its_measured_departures():
    paper = _config("--preset", "paper")
    assert (paper.loss, paper.critic_iters, paper.beta1, paper.beta2, paper.gp_weight, paper.penalty_every,
            paper.ema, paper.iters, paper.model["dim"]) == ("wgan-gp", 5, 0.0, 0.9, 10.0, 1, 0.0, 4000, 32)
    quick = _config("--preset", "quick")
    assert (quick.loss, quick.critic_iters, quick.beta1, quick.beta2, quick.gp_weight, quick.penalty_every,
            quick.ema, quick.iters, quick.model["dim"]) == ("ns-r1", 1, 0.5, 0.99, 0.1, 4, 0.995, 1500, 16)
    # the original: one batch of replays shared by the old digits; quick: 16 for each old digit
    assert (paper.replay_batch, paper.replay_split, quick.replay_batch, quick.replay_split) == (
        None, None, 16, "per-class")
    # every setting can be set back to the original's from the command line
    back = _config("--preset", "quick", "--loss", "wgan-gp", "--critic-iters", "5", "--betas", "0,0.9",
                   "--penalty-weight", "10", "--penalty-every", "1", "--ema", "0")
    assert (back.loss, back.critic_iters, back.beta1, back.beta2, back.gp_weight, back.penalty_every,
            back.ema) == ("wgan-gp", 5, 0.0, 0.9, 10.0, 1, 0.0)
    assert _config("--preset", "quick", "--replay-split", "shared").replay_split == "shared"


def test_command_line_error_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "--out", str(tmp_path / "r"), "--classes", "0,11"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: class '11' is not in dataset mnist; choose from "
                                                "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"]


def test_out_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert run(tmp_path, classes="0") == 1
    assert "not a run folder" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_truncated_or_foreign_checkpoint_clear_error(tmp_path):
    out = tmp_path / "r"
    assert run(out, classes="0") == 0
    good = (out / "task_00.safetensors").read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(bad)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a MeRGAN generator"):
        load_generator(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no MeRGAN generator at"):
        load_generator(tmp_path / "missing.safetensors")


def test_corrupt_state_is_refused_without_damage(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    with monkeypatch.context() as m:
        crash_after_saves(m, 1)
        with pytest.raises(Crash):
            run(out, classes="0,1")
    (out / "state.pt").write_bytes(b"garbage")
    assert run(out, "--resume", classes="0,1") == 1
    assert "corrupt" in capsys.readouterr().err
    assert (out / "state.pt").read_bytes() == b"garbage"


def test_bf16_mixed_precision_and_tensorboard_on_cpu(tmp_path):
    out = tmp_path / "bf16"
    assert run(out, "--mixed-precision", "bf16", "--tensorboard", strategy="jtr", classes="0,1") == 0
    G, meta = load_generator(out / "task_01.safetensors")
    assert all(p.dtype == torch.float32 for p in G.parameters())  # autocast only; weights stay float32
    assert sample(G, [0, 1]).float().std() > 0
    assert list((out / "logs").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_lsun_lmdb_and_svhn_mat_and_image_folders_end_to_end(tmp_path):
    """The other datasets through train.py: 64x64 ResNet on lmdb, 3-channel digits, a user's own categories."""
    from PIL import Image
    from test_data import encode, lsun_images, write_lmdb, write_svhn

    lsun = tmp_path / "lsun"
    lsun.mkdir()
    write_lmdb(lsun / "bedroom_train_lmdb", lsun_images())
    write_lmdb(lsun / "kitchen_train_lmdb", [encode(Image.new("RGB", (64, 48), (90, 60, 30)), "JPEG")] * 5)
    svhn = tmp_path / "svhn"
    svhn.mkdir()
    write_svhn(svhn / "train_32x32.mat", 60, seed=0)
    folder = tmp_path / "mine"
    for name, color in (("apples", (200, 30, 30)), ("pears", (40, 200, 40))):
        for i in range(3):
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40 + i, 40), color).save(folder / name / f"{i}.png")
    cases = [
        (["--dataset", "lsun", "--data-dir", str(lsun), "--classes", "kitchen"], "ra", (3, 64), ["kitchen"]),
        (["--dataset", "svhn", "--data-dir", str(svhn), "--classes", "0,1"], "jtr", (3, 32), ["0", "1"]),
        (["--dataset", "folder", "--data-dir", str(folder), "--channels", "1"], "dgr", (1, 32),
         ["apples", "pears"]),
    ]
    for args, strategy, (channels, size), classes in cases:
        out = tmp_path / f"run-{args[1]}"
        assert train.main(["--strategy", strategy, "--out", str(out), "--dim", "2", "--iters", "1", "--batch-size", "8",
                           *args]) == 0
        G, meta = load_generator(out / f"task_{len(classes) - 1:02d}.safetensors")
        assert meta.classes == classes and meta.dataset == args[1]
        assert meta.model["arch"] == ("resnet64" if size == 64 else "dcgan32")
        assert meta.model["channels"] == channels
        assert sample(G, list(range(len(classes)))).shape == (len(classes), channels, size, size)


def test_run_without_training_state_cannot_be_extended(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(out, classes="0") == 0
    (out / "state.pt").unlink()  # as the shipped runs in assets/
    assert run(out, classes="0,1") == 1
    assert "no training state" in capsys.readouterr().err
    assert not (out / "task_01.safetensors").exists()
