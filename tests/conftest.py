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

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# --- demo (tests/test_demo.py, tests/test_browser.py): tiny real runs written by train.py -------------------
DEMO_CLASSES = ["0", "1", "2"]
DEMO_STRATEGIES = ("sft", "ra", "jtr", "joint")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """``runs/mnist-{sft,ra,jtr,joint}``: 3 tasks (digits 0, 1, 2), 3 iterations, width 8; trained in parallel."""
    root = tmp_path_factory.mktemp("demo-runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {s: subprocess.Popen(
        [sys.executable, "train.py", "--strategy", s, "--preset", "quick", "--classes", ",".join(DEMO_CLASSES),
         "--iters", "3", "--dim", "8", "--mnist-source", "mnist5k", "--cpu", "--out", str(root / f"mnist-{s}")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for s in DEMO_STRATEGIES}
    for s, p in procs.items():
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"train.py --strategy {s} failed:\n{out[-3000:]}"
    from mergan.live import export

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
