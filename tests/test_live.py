"""Teaching a finished run one more class, live (``mergan.live``), as the demo's live tab does."""
import re
import shutil

import pytest
import torch

import demo_app
from mergan import live, sampling
from mergan.checkpoints import CheckpointError, load_generator
from mergan.lesson import LessonsFull, Turns, lesson_frames, stopped_frame


pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def live_start(run, n_classes):
    """64 samples of each class from the run's last delivered generator, with the noise a lesson uses."""
    G, meta = load_generator(sorted(run.glob("task_*.safetensors"))[-1])
    labels = torch.arange(n_classes).repeat_interleave(64)
    return sampling.sample(G, labels, meta.config.sample_seed).view(n_classes, 64, 1, 32, 32)


def test_teach_streams_grids_of_every_class_and_stops_when_closed(tiny_runs):
    steps = list(live.teach(tiny_runs / "mnist-ra", "3", updates=4, every=2))
    assert [s.updates for s in steps] == [0, 2, 4]
    grid = steps[-1].grid
    assert grid.dtype == torch.uint8 and grid.shape[1] == 2 + 4 * 34     # 4 rows of 32x32 digits, 2 px padding
    assert not torch.equal(steps[0].grid, steps[-1].grid)                 # the generator changed
    samples = steps[-1].samples                                           # 64 of each class, for scoring the rows
    assert samples.shape == (4, 64, 1, 32, 32) and samples.dtype == torch.uint8
    assert torch.equal(grid, sampling.grid(samples[:, :8].flatten(0, 1), nrow=8))   # the grid shows the first 8
    delivered = list(live.teach(tiny_runs / "mnist-ra", "3", updates=4, every=2, delivered=True))
    assert torch.equal(delivered[0].samples, live_start(tiny_runs / "mnist-ra", 4))     # the task file's generator
    assert not torch.equal(delivered[-1].samples, samples)                # the weight average trails the weights
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


def test_teach_refuses_settings_out_of_range_and_another_network(tiny_runs, tmp_path):
    """A crafted config.json (its run id recomputed so that it reads) builds nothing: a penalty every 0 steps, and
    a network other than the one the run's task file holds, are refused before the trainer is built."""
    import dataclasses
    import time

    from mergan.runs import RunFolder, run_id

    for change, says in (({"penalty_every": 0}, "penalty"), ({"model": "huge"}, "another")):
        run = RunFolder(shutil.copytree(tiny_runs / "mnist-ra", tmp_path / f"ra-{says}"))
        record = run.read_record()
        if change.get("model") == "huge":
            change = {"model": {**record.config.model, "dim": 1024}}
        cfg = dataclasses.replace(record.config, **change)
        run.write_record(dataclasses.replace(record, config=cfg, run_id=run_id(cfg)))
        start = time.perf_counter()
        with pytest.raises(CheckpointError, match=says):
            next(live.teach(run.path, "3", updates=2, every=1))
        assert time.perf_counter() - start < 5


@pytest.fixture(scope="module")
def exp(tiny_runs):
    return demo_app.discover(tiny_runs).experiments[0]


def test_the_lesson_starts_both_learners_from_the_generator_that_remembers(exp):
    """SFT and MeRGAN-RA both start from RA's last generator (update 0: the same rows, the same scores), each row
    is labelled and scored by the shipped evaluator, and the status ends when the lesson ends."""
    import numpy as np

    assert demo_app.lesson_choices(exp) == [str(d) for d in range(3, 10)]
    assert exp.evaluator is not None                  # tiny_runs learned the official MNIST: the shipped evaluator
    frames = list(lesson_frames(exp, "7", updates=4, every=2))
    assert [f.state for f in frames] == ["learning", "learning", "learning", "done"]
    assert [f.updates for f in frames[1:]] == [0, 2, 4]
    first, last = frames[1], frames[-1]
    assert first.learners == ["SFT", "MeRGAN-RA"]
    assert first.scores[0] == first.scores[1] == first.start and list(first.start) == ["0", "1", "2", "7"]
    band = 52                                         # below the title band, both pictures are the same rows
    assert np.array_equal(np.asarray(first.pictures[0])[band:], np.asarray(first.pictures[1])[band:])
    assert not np.array_equal(np.asarray(last.pictures[0])[band:], np.asarray(last.pictures[1])[band:])
    assert last.start == first.start and set(last.scores[0]) == {"0", "1", "2", "7"}
    assert 'data-state="done"' in last.status and '<progress max="4" value="4"' in last.status
    assert "Done: 4 of 4 updates on 7" in last.status
    assert '<tr data-class="7"><th scope="row">7 (new)</th>' in last.table
    assert last.alts[0].startswith("SFT after 4 of 4 updates on the new digit 7: a row of 8 samples per digit, "
                                   "0, 1, 2, 7; recognised per row: 0 ")


def test_lesson_messages_name_what_to_do(exp, tiny_runs, tmp_path):
    """A digit already learned, a half-written live file, a run deleted while the demo runs: one line each, with
    the digits that can be taught and what to do; never a bare "Error"."""
    assert next(lesson_frames(exp, "1")).status.count("Pick a digit the runs have not learned: 3, 4, 5, 6, 7, 8, "
                                                      "9.") == 1
    runs = tmp_path / "runs"
    for s in ("sft", "ra"):
        shutil.copytree(tiny_runs / f"mnist-{s}", runs / f"mnist-{s}")
    copy = demo_app.discover(runs).experiments[0]
    live_file = runs / "mnist-ra" / "live.safetensors"
    live_file.write_bytes(live_file.read_bytes()[:5000])              # half-written
    frames = list(lesson_frames(copy, "5", updates=2, every=1))
    assert frames[-1].state == "error" and "python -m mergan.live export" in frames[-1].status
    assert "may be truncated" in frames[-1].status
    shutil.rmtree(runs / "mnist-ra")                                   # deleted after the demo started
    (frame,) = lesson_frames(copy, "5", updates=2, every=1)
    assert frame.state == "error" and "can no longer learn: its config.json is not a plain file" in frame.status
    assert "Restore the run folder" in frame.status
    assert "3, 4, 5, 6, 7, 8, 9" in next(lesson_frames(copy, "2")).status   # the list, though the run is gone


def test_lessons_take_turns_and_say_how_long_the_wait_is(exp):
    """One lesson at a time: a second visitor is told their place and the wait, and starts by themselves when the
    first ends; a full line is refused in one line; leaving frees the turn; a visitor who asks again (Stop, then
    Teach) ends their earlier lesson and takes its place."""
    turns = Turns(max_waiting=1, expected_s=30.0)
    first = lesson_frames(exp, "5", updates=4, every=2, turns=turns, client="a")
    assert next(first).state == "learning"                             # "Preparing": the turn is the first's
    second = lesson_frames(exp, "6", updates=4, every=2, turns=turns, client="b")
    waiting = next(second)
    wait = re.search(r"1 lesson ahead of you, about (\d+) s", waiting.status)
    assert waiting.state == "waiting" and 25 <= int(wait.group(1)) <= 30     # the first's expected 30 s, less waited
    third = next(lesson_frames(exp, "7", updates=4, every=2, turns=turns, client="c"))
    assert third.state == "error" and "1 visitors are waiting for a lesson already" in third.status
    rest = list(first)
    assert rest[-1].state == "done"
    after = [f.state for f in second]                                  # the turn passed on by itself
    assert after[-1] == "done" and "waiting" not in after[1:]
    stopped = lesson_frames(exp, "8", updates=50, every=1, turns=turns, client="d")
    frames = [next(stopped) for _ in range(3)]
    stopped.close()                                                    # Stop: the learners end, the turn is free
    said = stopped_frame(frames[-1]).status
    assert 'data-state="stopped"' in said and "Stopped at update 1 of 50 on 8" in said
    earlier = lesson_frames(exp, "8", updates=50, every=1, turns=turns, client="e")
    assert next(earlier).state == "learning" and next(earlier).updates == 0
    again = lesson_frames(exp, "9", updates=2, every=1, turns=turns, client="e")   # the same visitor asks again
    assert next(again).state == "waiting"
    assert list(earlier) == []                                         # the earlier lesson ends at its next picture
    assert [f.state for f in again][-1] == "done"
    with pytest.raises(LessonsFull):
        for client in "fghij":
            turns.join(client)
