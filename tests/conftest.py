"""Shared test setup.

The environment comes first, before anything imports gradio: no analytics or version check, no Hub look-ups,
and a temporary folder of this run's own for the files gradio serves.
"""
import os
import tempfile

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="mergan-gradio-")
# pytest-xdist runs the suite in several processes (pyproject's addopts): each gets its share of the cores, so
# that they do not oversubscribe them (set before torch is imported; the commands tests start inherit it).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(share))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# --- a slice of the official MNIST, written as the four IDX files: real digits, cheap to train evaluators on ---
SLICE = (300, 100)   # training and test digits per class


@pytest.fixture(scope="session")
def mnist_slice(tmp_path_factory) -> Path:
    """A folder holding ``MNIST/raw/*-ubyte.gz`` with the first 300 training and 100 test digits of each class of
    the shipped official files (pass it as --data-dir)."""
    import gzip
    import struct

    import numpy as np

    from mergan.data import MNIST, read_idx

    root = tmp_path_factory.mktemp("mnist-slice")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train", SLICE[0]), ("t10k", SLICE[1])):
        x = read_idx(MNIST / f"{stem}-images-idx3-ubyte.gz")
        y = read_idx(MNIST / f"{stem}-labels-idx1-ubyte.gz")
        keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)]))
        for kind, arr in (("images-idx3", x[keep]), ("labels-idx1", y[keep])):
            header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
            (raw / f"{stem}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.tobytes(), mtime=0))
    return root


@pytest.fixture(scope="session")
def slice_evaluators(mnist_slice, tmp_path_factory):
    """Both evaluators trained for one epoch (the MLP two) on the slice, in a cache folder of their own: point
    ``mergan.classifier.CACHE`` at ``.cache`` (or copy it to ``classifiers/`` where a command runs) and the
    evaluation of a run on the slice finds them."""
    from types import SimpleNamespace

    from mergan.classifier import cache_name, evaluator_data, train_classifier

    cache = tmp_path_factory.mktemp("classifiers")
    data = evaluator_data("mnist", mnist_slice)
    main = train_classifier("mnist", mnist_slice, epochs=1, out=cache / cache_name(data, "cnn32"), data=data)
    second = train_classifier("mnist", mnist_slice, epochs=2, arch="mlp32", out=cache / cache_name(data, "mlp32"),
                              data=data)
    return SimpleNamespace(cache=cache, main=main, second=second)


@pytest.fixture(scope="session")
def evaluated_run(tmp_path_factory, mnist_slice, slice_evaluators):
    """A tiny RA run on the slice (classes 3 then 0, the quick preset, 3 updates per task) trained by train.main
    and evaluated by ``mergan test`` (64 samples per class). ``card_after_training``: its card before the
    evaluation. Shared: a test that changes it works on a copy."""
    from types import SimpleNamespace

    from accelerate.state import AcceleratorState

    import train
    from mergan import classifier, cli

    run = tmp_path_factory.mktemp("evaluated") / "ra"
    AcceleratorState._reset_state(True)
    assert train.main(["--strategy", "ra", "--preset", "quick", "--classes", "3,0", "--iters", "3", "--dim", "8",
                       "--data-dir", str(mnist_slice), "--out", str(run), "--cpu"]) == 0
    AcceleratorState._reset_state(True)
    before = (run / "README.md").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(classifier, "CACHE", slice_evaluators.cache)
        assert cli.main(["test", "--out", str(run), "--eval-samples", "64"]) == 0
    return SimpleNamespace(path=run, card_after_training=before)


# --- demo (tests/test_demo.py, tests/test_browser.py): tiny real runs written by train.py -------------------
DEMO_CLASSES = ["0", "1", "2"]
DEMO_STRATEGIES = ("sft", "ra", "jtr", "joint")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """``runs/mnist-{sft,ra,jtr,joint}``: 3 tasks (digits 0, 1, 2), 3 iterations, width 8, written by train.main
    in this process (a process per run paid torch's import four times over)."""
    import train
    from accelerate.state import AcceleratorState
    from mergan.live import export

    root = tmp_path_factory.mktemp("demo-runs")
    for s in DEMO_STRATEGIES:
        AcceleratorState._reset_state(True)
        assert train.main(["--strategy", s, "--preset", "quick", "--classes", ",".join(DEMO_CLASSES), "--iters", "3",
                           "--dim", "8", "--batch-size", "16", "--cpu",
                           "--out", str(root / f"mnist-{s}")]) == 0, f"train.py --strategy {s} failed"
    AcceleratorState._reset_state(True)
    for s in ("sft", "ra"):   # what the demo's live tab needs
        export(root / f"mnist-{s}")
    return root


@pytest.fixture
def fresh_accelerator_state():
    """Tests that run train.main many times in one process: Accelerate keeps its settings (mixed precision) per
    process, so each test starts from a fresh state."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield


@pytest.fixture(scope="session")
def two_experiments(tiny_runs, tmp_path_factory) -> Path:
    """One runs folder with two experiments: the tiny runs on digits 0-2, and SFT and RA runs on digits 5 and 6
    (trained the same tiny way)."""
    import shutil

    import train
    from accelerate.state import AcceleratorState

    root = tmp_path_factory.mktemp("two-experiments")
    for s in DEMO_STRATEGIES:
        shutil.copytree(tiny_runs / f"mnist-{s}", root / f"mnist-{s}")
    for s in ("sft", "ra"):
        AcceleratorState._reset_state(True)
        assert train.main(["--strategy", s, "--preset", "quick", "--classes", "5,6", "--iters", "3", "--dim", "8",
                           "--batch-size", "16", "--cpu", "--out", str(root / f"mnist56-{s}")]) == 0
    AcceleratorState._reset_state(True)
    return root
