"""Teaching a finished run one more class, live (``mergan.live``), as the demo's live tab does."""
import shutil

import pytest
import torch

import demo_app
from mergan import live
from mergan.checkpoints import CheckpointError


pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def test_teach_streams_grids_of_every_class_and_stops_when_closed(tiny_runs):
    steps = list(live.teach(tiny_runs / "mnist-ra", "3", updates=4, every=2))
    assert [s.updates for s in steps] == [0, 2, 4]
    grid = steps[-1].grid
    assert grid.dtype == torch.uint8 and grid.shape[1] == 2 + 4 * 34     # 4 rows of 32x32 digits, 2 px padding
    assert not torch.equal(steps[0].grid, steps[-1].grid)                 # the generator changed
    lesson = live.teach(tiny_runs / "mnist-sft", "3", updates=50, every=1)
    assert next(lesson).updates == 0 and next(lesson).updates == 1
    lesson.close()                                                        # stops there; nothing was written
    assert not list((tiny_runs / "mnist-sft").glob("task_03*"))


def test_teach_refuses_a_learned_class_and_a_missing_live_file(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match="already learned"):
        next(live.teach(tiny_runs / "mnist-ra", "1", updates=2, every=1))
    run = shutil.copytree(tiny_runs / "mnist-jtr", tmp_path / "jtr")
    with pytest.raises(CheckpointError, match="python -m mergan.live export"):
        next(live.teach(run, "3", updates=2, every=1))
    (run / "state.pt").unlink()
    with pytest.raises(CheckpointError, match="state.pt is missing"):
        live.export(run)


def test_demo_lesson_frames_for_sft_and_ra(tiny_runs):
    exp = demo_app.discover(tiny_runs).experiments[0]
    assert demo_app.live_choices(exp) == [str(d) for d in range(3, 10)]
    frames = list(demo_app.lesson_frames(exp, "7", updates=4, every=2))
    assert len(frames) == 3 and "Done" in frames[-1][2] and frames[-1][0].size == frames[-1][1].size
    import numpy as np

    assert not np.array_equal(np.asarray(frames[0][0]), np.asarray(frames[-1][0]))
    assert "Pick a digit" in next(demo_app.lesson_frames(exp, "1"))[2]
