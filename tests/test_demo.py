"""The demo's views, called as functions on tiny runs written by train.py (see ``tiny_runs`` in conftest)."""
import json
import shutil

import numpy as np
import pytest
import torch

import demo_app
from mergan.catalog import accuracy_curves
from mergan import load_generator, sample, save_generator
from mergan.sampling import grid


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As the app runs (build_demo): one thread, fastest for these small generators on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def catalog(tiny_runs):
    return demo_app.discover(tiny_runs)


@pytest.fixture(scope="module")
def exp(catalog):
    return catalog.experiments[0]


def pixels(img):
    return np.asarray(img)


def test_discovery_groups_the_runs_into_one_experiment(catalog, exp):
    assert catalog.messages == []
    assert len(catalog.experiments) == 1
    assert exp.dataset == "mnist" and exp.classes == ["0", "1", "2"]
    assert {s: sorted(r.generators) for s, r in exp.runs.items()} == {
        "sft": [0, 1, 2], "ra": [0, 1, 2], "jtr": [0, 1, 2], "joint": [2]}


def test_pickers_mark_classes_not_learned_yet(exp):
    assert demo_app.task_choices(exp) == [("0", 0), ("1", 1), ("2", 2)]   # "Generators after learning" 1
    assert demo_app.class_choices(exp, 1) == [("0", "0"), ("1", "1"), ("2 (not learned yet)", "2")]
    assert [v for _, v in demo_app.variant_choices(exp)] == ["ra", "jtr"]


@pytest.mark.parametrize("n", [1, 5, 16])
def test_side_by_side_shows_the_packages_samples_upscaled(tiny_runs, exp, n):
    sft, ra, info = demo_app.side_by_side(exp, 2, "0", "ra", n, 7)
    G, _ = load_generator(tiny_runs / "mnist-ra" / "task_02.safetensors")
    expected = grid(sample(G, [0] * n, seed=7), nrow=min(n, 8))[0].numpy()      # (H, W), one channel
    got = pixels(ra)
    scale = got.shape[0] // expected.shape[0]
    assert scale >= 2 and got.shape == (expected.shape[0] * scale, expected.shape[1] * scale)
    assert np.array_equal(got[::scale, ::scale], expected)
    assert pixels(sft).shape == got.shape
    assert "Seed **7**" in info and "class **0**" in info


def test_same_seed_same_images_and_sft_differs_from_mergan(exp):
    a_sft, a_ra, _ = demo_app.side_by_side(exp, 2, "0", "ra", 8, 3)
    b_sft, b_ra, _ = demo_app.side_by_side(exp, 2, "0", "ra", 8, 3)
    assert np.array_equal(pixels(a_sft), pixels(b_sft)) and np.array_equal(pixels(a_ra), pixels(b_ra))
    assert not np.array_equal(pixels(a_sft), pixels(a_ra))
    _, c_ra, _ = demo_app.side_by_side(exp, 2, "0", "ra", 8, 4)
    assert not np.array_equal(pixels(a_ra), pixels(c_ra))
    _, jtr, _ = demo_app.side_by_side(exp, 2, "0", "jtr", 8, 3)
    assert not np.array_equal(pixels(jtr), pixels(a_ra))


@pytest.mark.parametrize("task, cls, variant, n, seed, says", [
    (0, "2", "ra", 4, 0, "learned in task 2"),
    (1, "7", "ra", 4, 0, "not in this experiment"),
    (5, "0", "ra", 4, 0, "out of range"),
    (2, "0", "ra", 0, 0, "between 1 and 64"),
    (2, "0", "ra", 4, -1, "Seed must be"),
    (2, "0", "ra", "many", 0, "whole numbers"),
])
def test_bad_requests_are_explained(exp, task, cls, variant, n, seed, says):
    sft, mer, info = demo_app.side_by_side(exp, task, cls, variant, n, seed)
    assert sft is None and mer is None and says in info


def test_a_missing_strategy_is_a_message_beside_the_other_image(exp):
    sft, mer, info = demo_app.side_by_side(exp, 1, "0", "dgr", 4, 0)
    assert sft is not None and mer is None and "no run of this strategy" in info
    sft, mer, info = demo_app.side_by_side(exp, 1, "0", "joint", 4, 0)
    assert sft is not None and mer is None and "only after the last task" in info


def test_timeline_has_a_row_per_strategy_and_a_column_per_task(exp):
    img, info = demo_app.timeline(exp, "1", 4, 0)
    again, _ = demo_app.timeline(exp, "1", 4, 0)
    assert np.array_equal(pixels(img), pixels(again))
    assert "SFT, MeRGAN-RA, MeRGAN-JTR, Joint" in info
    assert img.height > 4 * 60 and img.width > 3 * 60
    img, info = demo_app.timeline(exp, "9", 4, 0)
    assert img is None and "not in this experiment" in info


def test_no_runs_is_a_message_not_an_error(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        catalog = demo_app.discover(folder)
        assert catalog.experiments == [] and "train.py" in catalog.messages[-1]
    assert "No runs loaded" in demo_app.side_by_side(None, 0, "0", "ra", 4, 0)[2]
    assert demo_app.timeline(None, "0", 4, 0)[0] is None
    assert "train.py" in demo_app.numbers(None).html
    import gradio as gr
    assert isinstance(demo_app.build_demo(tmp_path), gr.Blocks)


def test_broken_and_foreign_checkpoints_are_skipped_with_a_message(tiny_runs, tmp_path):
    for s in ("sft", "ra", "jtr"):
        shutil.copytree(tiny_runs / f"mnist-{s}", tmp_path / f"mnist-{s}")
    (tmp_path / "mnist-ra" / "task_01.safetensors").write_bytes(b"\x00garbage" * 50)   # unreadable
    garbage = tmp_path / "garbage"                                                       # nothing loadable
    garbage.mkdir()
    shutil.copy(tiny_runs / "mnist-jtr" / "config.json", garbage)
    (garbage / "task_00.safetensors").write_bytes(b"not a safetensors file")
    shutil.copy(tiny_runs / "mnist-ra" / "task_02.safetensors", tmp_path / "mnist-jtr" / "task_02.safetensors")
    edited = shutil.copytree(tiny_runs / "mnist-jtr", tmp_path / "svhn-jtr")           # mnist files, svhn config
    cfg = json.loads((edited / "config.json").read_text())
    cfg["config"]["dataset"] = "svhn"
    (edited / "config.json").write_text(json.dumps(cfg))

    catalog = demo_app.discover(tmp_path)
    text = "\n".join(catalog.messages)
    assert "mnist-ra/task_01.safetensors" in text and "not a readable safetensors file" in text
    assert "garbage" in text and "none of its checkpoints" in text
    assert "mnist-jtr/task_02.safetensors" in text and "belongs to another run" in text
    assert "svhn-jtr" in text and "was edited after its run started" in text
    assert [e.name for e in catalog.experiments] == ["mnist: classes 0, 1, 2"]
    exp = catalog.experiments[0]
    assert sorted(exp.runs) == ["jtr", "ra", "sft"] and sorted(exp.runs["ra"].generators) == [0, 2]
    assert sorted(exp.runs["jtr"].generators) == [0, 1]
    sft, ra, info = demo_app.side_by_side(exp, 1, "0", "ra", 4, 0)
    assert sft is not None and ra is None and "no loadable checkpoint for task 1" in info
    assert demo_app.side_by_side(exp, 2, "0", "ra", 4, 0)[1] is not None


def test_a_run_of_mergan_01_is_skipped_with_how_to_convert_it(tiny_runs, tmp_path):
    old = shutil.copytree(tiny_runs / "mnist-sft", tmp_path / "mnist-sft")
    cfg = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**cfg["config"], "data_source": "mnist: old"}))   # format 1
    catalog = demo_app.discover(tmp_path)
    assert catalog.experiments == [] and "python -m mergan.runs upgrade RUN" in catalog.messages[0]


def test_numbers_note_then_table(tiny_runs, exp, tmp_path):
    from test_evaluation import _metrics

    view = demo_app.numbers(exp)
    assert "python train.py --test --out" in view.html and view.pictures == {} and view.chart is None
    for s in ("sft", "ra"):
        shutil.copytree(tiny_runs / f"mnist-{s}", tmp_path / f"mnist-{s}")
    m = _metrics("sft", "runs/sft", [0.99, 0.6, 0.4], 0.5, 0.3, 12.5)
    m.tasks[-1].main.per_class["0"] = 0.1
    (tmp_path / "mnist-sft" / "metrics.json").write_text(json.dumps(m.to_dict()))
    (tmp_path / "mnist-ra" / "metrics.json").write_text("{truncated")
    shutil.copy(tiny_runs / "mnist-sft" / "samples" / "task_00.png", tmp_path / "mnist-sft" / "forgetting_grid.png")
    exp2 = demo_app.discover(tmp_path).experiments[0]
    view = demo_app.numbers(exp2, tmp_path)
    table = view.html
    row = '<th scope="row">{}</th><td>{}</td>'.format
    assert row("after 1 tasks", "99.00") in table and row("after 3 tasks", "40.00") in table
    assert row("FID, evaluator features", "12.50") in table
    assert row("reverse accuracy (real: ceiling)", "50.0 (99.0)") in table
    assert row("mean recall (real: ceiling)", "0.30 (0.94)") in table
    assert row("0", "10.0 / 0.30") in table                                  # per class, after the last task
    assert "mnist-ra/metrics.json` is not shown" in table and "unreadable" in table    # said, not "no metrics yet"
    for metric in ("<b>accuracy</b>", "<b>reverse accuracy</b>", "<b>recall</b>", "<b>FID</b>"):
        assert metric in table                                                # each explained where it appears
    assert list(view.pictures) == ["SFT"] and view.pictures["SFT"].grid is not None
    assert view.chart is not None and view.chart.width < 1000 and "SFT 99, 60, 40" in view.chart_alt
    curves = accuracy_curves(demo_app.discover(tmp_path).experiments[0])
    assert curves == [{"after task": t, "accuracy (%)": a, "strategy": "SFT"} for t, a in ((0, 99.0), (1, 60.0),
                                                                                            (2, 40.0))]


def test_numbers_show_the_forgetting_gif_as_a_checked_copy(tiny_runs, tmp_path):
    from PIL import Image

    run = shutil.copytree(tiny_runs / "mnist-sft", tmp_path / "runs" / "mnist-sft")
    frames = [Image.new("RGB", (40, 20), c) for c in ("white", "black", "gray")]
    frames[0].save(run / "forgetting.gif", save_all=True, append_images=frames[1:], duration=300)
    out = tmp_path / "served"
    out.mkdir()
    view = demo_app.numbers(demo_app.discover(tmp_path / "runs").experiments[0], out)
    gif = view.pictures["SFT"].gif
    assert gif.parent == out and gif.read_bytes() == (run / "forgetting.gif").read_bytes()
    assert view.pictures["SFT"].grid is None                      # this run has no forgetting_grid.png


def test_budget_note_reads_the_runs_config(exp):
    note = demo_app.budget_note(exp)
    assert "3 generator updates per task, network width 8, batch 16" in note and "CPU-sized" in note
    assert "non-saturating loss with R1, 1 critic step(s) per update, weight average delivered" in note


def test_budget_note_names_each_budget_when_the_runs_differ(exp):
    """Runs of one experiment trained at different budgets (the shipped ten-task runs): each budget is named with
    the runs that had it, none passed off as another's."""
    from dataclasses import replace

    runs = dict(exp.runs)
    ra = runs["ra"]
    wider = replace(ra.record.config, iters=3000, model={**ra.record.config.model, "dim": 24})
    runs["ra"] = replace(ra, record=replace(ra.record, config=wider))
    note = demo_app.budget_note(replace(exp, runs=runs))
    others = " and ".join(r.info.short for name, r in exp.runs.items() if name != "ra")
    assert f"{others}: 3 generator updates per task, network width 8, batch 16" in note
    assert "MeRGAN-RA: 3000 generator updates per task, network width 24, batch 16" in note
    assert note.count("network width") == 2 and "CPU-sized" in note


def test_a_mergan_variant_outside_the_papers_columns_comes_after_them(exp):
    """MeRGAN-RA, the paper's headline, stays the default; JTR+RA (the original code's combination, no column of
    the paper's) is offered after the paper's two."""
    from dataclasses import replace

    from mergan.strategies import STRATEGIES

    runs = dict(exp.runs)
    jtr = runs["jtr"]
    runs["jtr-ra"] = replace(jtr, record=replace(jtr.record, strategy=STRATEGIES["jtr-ra"].info()))
    both = replace(exp, runs=runs)
    assert both.strategies("mergan") == ["ra", "jtr", "jtr-ra"]
    assert [v for _, v in demo_app.variant_choices(both)] == ["ra", "jtr", "jtr-ra"]
    assert demo_app.default_variant(both) == "ra"


def test_shipped_runs_load_and_show_forgetting():
    """``python demo_app.py`` on a fresh machine: the runs in assets/ are found, and after the last task SFT's
    class 0 differs from MeRGAN's for the same noise."""
    catalog = demo_app.discover(demo_app.DEFAULT_RUNS)
    assert catalog.messages == []
    exp = catalog.experiments[0]
    assert exp.dataset == "mnist" and exp.classes == ["0", "1", "2", "3", "4"]
    assert {"sft", "ra", "jtr"} <= set(exp.runs)
    for run in exp.runs.values():
        assert run.generators, run.name
    last = exp.n_tasks - 1
    sft, ra, info = demo_app.side_by_side(exp, last, "0", "ra", 16, 0)
    assert sft is not None and ra is not None and "⚠️" not in info
    assert not np.array_equal(pixels(sft), pixels(ra))


def test_shipped_runs_tell_the_story():
    """What the demo is for, scored by the shipped evaluator: after the last task SFT no longer draws the old
    digits, MeRGAN (RA and JTR) still does, and every run has learned the newest one."""
    from mergan.classifier import load_classifier
    from mergan.classifier import SHIPPED
    from mergan.metrics import generated_accuracy

    evaluator = load_classifier(next(SHIPPED.glob("mnist-*.safetensors")))
    exp = demo_app.discover(demo_app.DEFAULT_RUNS).experiments[0]
    old = {}
    for name in ("sft", "ra", "jtr"):
        G = exp.runs[name].generators[exp.n_tasks - 1]
        acc, _ = generated_accuracy(G, exp.classes, evaluator, n=100)
        assert acc[exp.classes[-1]] > 0.5, (name, acc)
        old[name] = sum(acc[c] for c in exp.classes[:-1]) / (len(exp.classes) - 1)
    assert old["sft"] < 0.1, old
    assert old["ra"] > 0.6 and old["jtr"] > 0.6, old


def test_assets_stay_small():
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "assets"
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 40 * 2**20, f"assets/ is {total / 2**20:.1f} MB"


def test_shipped_runs_verdicts_say_what_each_panel_draws():
    """The line above each panel, scored by the shipped evaluator: SFT asked for 0 draws 4s, MeRGAN draws 0s;
    EWC, offered as a baseline, is seen not to have learned 2."""
    exp = demo_app.discover(demo_app.DEFAULT_RUNS).experiments[0]
    assert exp.evaluator is not None
    sft, ra = demo_app.verdicts(exp, 4, "0", "ra", 0)
    assert sft.startswith("### SFT") and "asked for 0, draws 4s: 0% recognised as 0" in sft
    assert ra.startswith("### MeRGAN-RA") and "draws 0s: 100% recognised as 0" in ra
    _, ewc = demo_app.verdicts(exp, 4, "2", "ewc", 0)
    assert "asked for 2, draws 0s" in ewc
    assert [label for label, _ in demo_app.variant_choices(exp)][:2] == ["MeRGAN-RA (replay alignment)",
                                                                         "MeRGAN-JTR (joint training with replay)"]
    assert all(label.endswith("(baseline)") for label, _ in demo_app.variant_choices(exp)[2:])
    # a class not learned yet, or a bad seed: a heading without a verdict, never an exception
    assert demo_app.verdicts(exp, 0, "3", "ra", 0) == ("### SFT", "### MeRGAN-RA")
    assert demo_app.verdicts(exp, 4, "0", "ra", -5) == ("### SFT", "### MeRGAN-RA")


def test_shipped_ten_task_runs_compare_mergan_with_joint_training():
    """The 10-task final generators (no SFT run among them) form their own experiment: the left panel is joint
    training, the upper bound, and every panel draws after the tenth task."""
    exp = demo_app.discover(demo_app.DEFAULT_RUNS).experiments[1]
    assert exp.classes == [str(i) for i in range(10)] and sorted(exp.runs) == ["joint", "jtr", "jtr-ra", "ra"]
    left, right, info = demo_app.side_by_side(exp, 9, "3", "ra", 8, 0)
    assert left is not None and right is not None and "⚠️" not in info and "Joint and MeRGAN-RA" in info
    heads = demo_app.verdicts(exp, 9, "3", "ra", 0)
    assert heads[0].startswith("### Joint\n**draws 3s") and heads[1].startswith("### MeRGAN-RA\n**draws 3s")
    assert demo_app.compare_label(exp) == "Compare Joint with"
    assert demo_app.compare_label(demo_app.discover(demo_app.DEFAULT_RUNS).experiments[0]) == "Compare SFT with"
    # the first lines say what the left panel is: joint training here, not the SFT these runs do not have
    intro = demo_app._intro(exp)
    assert intro.startswith("**Joint** learned the digits all at once") and "SFT" not in intro
    first = demo_app.discover(demo_app.DEFAULT_RUNS).experiments[0]
    assert "**SFT** (plain fine-tuning) forgets" in demo_app._intro(first)


def test_examples_one_click_away_on_the_shipped_runs():
    exp = demo_app.discover(demo_app.DEFAULT_RUNS).experiments[0]
    labels = [label for label, _ in demo_app.examples(exp)]
    assert labels == ["Forgetting: 0 after learning 4", "MeRGAN-RA's hardest digit: 2", "EWC asked for 4"]


def test_crafted_runs_folder_cannot_crash_or_stall_the_demo(tiny_runs, tmp_path):
    """A runs folder from anywhere: a task file whose metadata asks for a huge network, and a config.json with
    10,000 classes, are skipped with a short message; the rest loads, and fast."""
    import time

    huge = shutil.copytree(tiny_runs / "mnist-ra", tmp_path / "mnist-ra")
    G, meta = load_generator(huge / "task_01.safetensors")
    meta.model = {**meta.model, "dim": 10**7}
    save_generator(huge / "task_01.safetensors", G, meta)
    many = shutil.copytree(tiny_runs / "mnist-sft", tmp_path / "mnist-sft")
    cfg = json.loads((many / "config.json").read_text())
    cfg["config"]["classes"] = [str(i) for i in range(10_000)]
    (many / "config.json").write_text(json.dumps(cfg))
    start = time.perf_counter()
    catalog = demo_app.discover(tmp_path)
    assert time.perf_counter() - start < 10
    text = "\n".join(catalog.messages)
    assert "model.dim" in text and "more than the 20 shown" in text
    assert all(len(m) <= 300 for m in catalog.messages)
    exp = catalog.experiments[0]
    assert sorted(exp.runs) == ["ra"] and sorted(exp.runs["ra"].generators) == [0, 2]


def test_an_example_belongs_to_the_experiment_shown(two_experiments):
    """Two experiments in one runs folder: an example sets the generators, class and comparison of the experiment
    shown now and is drawn with the samples and seed in the boxes, under that experiment's name."""
    catalog = demo_app.discover(two_experiments)
    first, second = catalog.experiments
    assert second.classes == ["5", "6"]
    d = demo_app.respond(catalog, "experiment", second.name, 2, "0", "ra", 4, 9)    # the visitor switches
    assert (d.task, d.class_name, d.variant) == (1, "5", "ra")
    assert d.examples == demo_app.examples(second) and d.examples[0][0] == "Forgetting: 5 after learning 6"
    d = demo_app.respond(catalog, "example", second.name, 0, "6", "ra", 4, 9, example=0)
    assert (d.task, d.class_name, d.variant) == (1, "5", "ra")
    want = demo_app.side_by_side(second, 1, "5", "ra", 4, 9)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(d.comparison.images, want[:2]))
    assert "Seed **9**: 4 sample(s) of class **5**" in d.comparison.info
    d = demo_app.respond(catalog, "example", first.name, 2, "2", "jtr", 5, 3, example=0)
    assert (d.task, d.class_name, d.variant) == (2, "0", "ra") and "class **0**" in d.comparison.info


def test_each_trigger_writes_back_only_its_own_controls(catalog, exp):
    d = demo_app.respond(catalog, "task", exp.name, 1, "0", "ra", 4, 0)
    assert d.class_choices[2] == ("2 (not learned yet)", "2") and d.class_name is None and d.task is None
    d = demo_app.respond(catalog, "dice", exp.name, 2, "0", "ra", 4, 0)
    assert 0 <= d.seed <= demo_app.MAX_SEED and f"Seed **{d.seed}**" in d.comparison.info
    d = demo_app.respond(catalog, "draw", exp.name, 2, "1", "jtr", 3, 5)
    assert (d.task, d.class_name, d.variant, d.seed) == (None, None, None, None)
    assert d.comparison.alts[1].startswith("3 samples drawn by MeRGAN-JTR after learning 2, asked for digit 1 "
                                           "(seed 5)")


def test_a_runs_folder_it_does_not_control_is_read_within_bounds(tiny_runs, tmp_path, monkeypatch):
    """A metrics.json that is a link to an endless file, pictures that declare 400 million pixels, 3,000 task
    files, a generator file over the demo's size limit, too many run folders: each is one short line or a note,
    the rest is served."""
    import os
    import re
    import struct
    import time
    import zlib

    from mergan import catalog as catalog_module

    monkeypatch.chdir(tmp_path)   # messages name paths as typed from here
    a = shutil.copytree(tiny_runs / "mnist-sft", tmp_path / "a-sft")
    os.symlink("/dev/zero", a / "metrics.json")
    b = shutil.copytree(tiny_runs / "mnist-ra", tmp_path / "b-ra")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    (b / "forgetting_grid.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8,
                                            0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    (b / "forgetting.gif").write_bytes(b"GIF89a" + struct.pack("<HH", 20000, 20000) + bytes(20))
    c = shutil.copytree(tiny_runs / "mnist-jtr", tmp_path / "c-jtr")
    for t in range(3, 3000):
        os.link(c / "task_02.safetensors", c / f"task_{t:02d}.safetensors")
    start = time.perf_counter()
    catalog = demo_app.discover(tmp_path)
    assert time.perf_counter() - start < 10
    assert [m for m in catalog.messages if "c-jtr" in m] == [
        "`c-jtr`: ignored 2997 task file(s) beyond its 3 classes (task_03.safetensors … task_2999.safetensors)"]
    exp = catalog.experiments[0]
    assert sorted(exp.runs) == ["jtr", "ra", "sft"] and sorted(exp.runs["jtr"].generators) == [0, 1, 2]
    view = demo_app.numbers(exp, tmp_path)
    assert "a-sft/metrics.json` is not shown" in view.html and "not a plain file" in view.html
    assert "MeRGAN-RA" not in view.pictures                            # neither picture of b-ra is read
    monkeypatch.setattr(catalog_module, "MAX_GENERATOR_BYTES", 1000)
    monkeypatch.setattr(catalog_module, "MAX_RUNS", 2)
    catalog = demo_app.discover(tmp_path)
    text = "\n".join(catalog.messages)
    assert "holds 3 folders; showing the first 2" in text
    assert re.search(r"skipped `a-sft/task_00.safetensors`: \d+ kB, more than the 1 kB the demo reads", text)
    assert catalog.experiments == [] and all(len(m) <= 300 for m in catalog.messages)


def test_the_demo_trains_only_through_live_teach(tiny_runs):
    """The demo learns strategy identities from the runs' records: loading runs, drawing, the numbers and the
    lesson's plan import neither the trainer nor the strategies (``mergan.live.teach`` does, when called)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, demo_app\n"
            "from mergan.lesson import lesson_plan\n"
            f"exp = demo_app.discover({str(tiny_runs)!r}).experiments[0]\n"
            "demo_app.compare(exp, 2, '0', 'ra', 4, 0); demo_app.numbers(exp); demo_app.timeline(exp, '1')\n"
            "plan = lesson_plan(exp)\n"
            "print(plan.start.name, [name for name, _ in plan.learners], "
            "sorted(m for m in sys.modules if m in ('mergan.trainer', 'mergan.strategies')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, text=True,
                         capture_output=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip().splitlines()[-1] == "mnist-ra ['sft', 'ra'] []", out.stderr[-2000:]
