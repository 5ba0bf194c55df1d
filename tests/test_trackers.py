"""--report-to: Accelerate's trackers, TensorBoard read back with its own event reader (scalars at one increasing
step, each task's sample grid as the PNG in samples/), and one line for a tracker that is unknown or missing."""
import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from mergan.trackers import names, requested, step

TINY = ["--dim", "4", "--iters", "3", "--batch-size", "8", "--classes", "0,1"]

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def _events(run):
    """Every event file of the run's TensorBoard logs, read by TensorBoard's own reader."""
    found = {}
    for path in sorted((run / "logs").rglob("events.out.tfevents.*")):
        ea = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
        ea.Reload()
        found[path] = ea
    return found


def test_report_to_tensorboard_logs_losses_and_every_tasks_grid(tmp_path, mnist_slice):
    run = tmp_path / "ra"
    assert train.main(["--strategy", "ra", "--report-to", "tensorboard", "--data-dir", str(mnist_slice),
                       "--out", str(run), *TINY]) == 0
    events = _events(run)
    main = next(ea for ea in events.values() if ea.Tags()["images"])
    tags = main.Tags()
    assert set(tags["scalars"]) == {"task0/d_loss", "task0/g_loss", "task1/d_loss", "task1/g_loss"}
    # iters 3: each task has 4 iterations, logged at its last; one step increasing across the tasks
    assert [e.step for e in main.Scalars("task0/d_loss")] == [step(0, 4, 3)] == [4]
    assert [e.step for e in main.Scalars("task1/d_loss")] == [step(1, 4, 3)] == [8]
    assert all(np.isfinite(e.value) for t in tags["scalars"] for e in main.Scalars(t))
    grids = main.Images("samples")
    assert [g.step for g in grids] == [4, 8]
    for t, g in enumerate(grids):   # the image is the task's sample grid, pixel for pixel
        logged = np.asarray(Image.open(io.BytesIO(g.encoded_image_string)).convert("RGB"))
        saved = np.asarray(Image.open(run / "samples" / f"task_{t:02d}.png").convert("RGB"))
        assert logged.shape == saved.shape and (logged == saved).all()
    hparams = next((run / "logs").rglob("hparams.yml")).read_text()   # the resolved settings, at the start
    assert "strategy: ra" in hparams and "model.dim: 4" in hparams and "run_id:" in hparams


def test_the_tensorboard_flag_and_a_bare_report_to_mean_tensorboard():
    assert requested(None) is None and requested("none") is None
    assert requested(None, tensorboard=True) == ["tensorboard"]
    assert requested("tensorboard", tensorboard=True) == ["tensorboard"]
    args = train.build_parser().parse_args(["--report-to"])
    assert requested(args.report_to, args.tensorboard) == ["tensorboard"]


def test_a_tracker_that_is_unknown_or_not_installed_is_one_line(tmp_path, capsys):
    from accelerate.tracking import get_available_trackers

    missing = next((n for n in names() if n not in {str(t) for t in get_available_trackers()}), None)
    cases = [("tensorbord", "unknown tracker 'tensorbord' for --report-to; choose from"),
             ("none,tensorboard", "--report-to none cannot go with other trackers")]
    if missing:
        cases.append((missing, f"--report-to {missing} needs the {missing} package, which is not installed: "
                               f"pip install {missing}"))
    for value, message in cases:
        out = tmp_path / value.replace(",", "-")
        assert train.main(["--report-to", value, "--out", str(out), *TINY]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
        assert not out.exists()   # refused before anything was made
