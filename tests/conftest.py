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

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

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
                           "--dim", "8", "--batch-size", "16", "--mnist-source", "mnist5k", "--cpu",
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
