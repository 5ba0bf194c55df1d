"""Evaluation: metrics on cases with known answers (accuracy, variety, the Fréchet distance's closed form), the
evaluators and how they are found, the report, the CLI's errors, and real runs evaluated end to end (a slice of
the official MNIST, tiny budgets)."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import train
from mergan import classifier, evaluation, report
from mergan.batches import to_float
from mergan.classifier import cache_name, evaluator_data, load_classifier, per_class_accuracy, save_classifier
from mergan.classifier import train_classifier
from mergan.data import load_task_data
from mergan.metrics import frechet_distance, generated_accuracy, prdc
from mergan.scores import Metrics


@pytest.fixture(scope="module")
def evaluators(slice_evaluators):
    """Both evaluators trained on the slice (conftest), cached where the evaluation looks for them."""
    return slice_evaluators


@pytest.fixture
def cached(evaluators, monkeypatch, tmp_path):
    """The evaluation finds the slice's evaluators in its cache (and nothing shipped for the slice)."""
    monkeypatch.setattr(classifier, "CACHE", evaluators.cache)
    return evaluators


@pytest.fixture(scope="module")
def digits(mnist_slice):
    return load_task_data("mnist", mnist_slice)


class RealImages(torch.nn.Module):
    """A fake generator whose label-i images are the real test images of ``classes[source(i)]``, in order (or
    the first ``distinct`` of them over and over)."""

    def __init__(self, digits, classes, source=lambda label: label, distinct=None):
        super().__init__()
        self.images = {i: to_float(digits.test[classes[source(i)]].images[:distinct]) for i in range(len(classes))}
        self.n_classes, self.channels, self.size, self.z_dim = len(classes), 1, 32, 4
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.served = {}

    def forward(self, z, labels):
        label = int(labels[0])
        k = self.served.get(label, 0)
        imgs = self.images[label]
        idx = torch.arange(k, k + len(z)) % len(imgs)   # successive calls walk through the test set
        self.served[label] = k + len(z)
        return imgs[idx]


def test_classifier_file_round_trip_and_metadata(evaluators, digits):
    m = evaluators.main.meta
    assert m["dataset"] == "mnist" and m["classes"] == [str(i) for i in range(10)]
    assert m["test_split"] == "test" and m["test_images"] == 1000 and m["config"]["arch"] == "cnn32"
    assert m["train_images"] + m["validation_images"] == 3000 and m["validation_images"] == 250   # a twelfth
    assert m["epochs"] == 1 and m["epoch_choices"] == {"1": m["validation_accuracy"]}
    assert m["data_fingerprint"] == evaluator_data("mnist", digits.source.location).source.fingerprint
    assert 0.5 < m["test_accuracy"] <= 1 and 0 < m["reverse_ceiling"]["accuracy"] <= 1
    x = torch.cat([digits.test[c].images for c in digits.classes])
    y = torch.cat([torch.full((len(digits.test[c]),), k) for k, c in enumerate(digits.classes)])
    preds, feats = load_classifier(evaluators.main.path).run(x)
    assert feats.shape == (1000, 128)
    assert abs(float((preds == y).float().mean()) - m["test_accuracy"]) < 1e-6   # reloaded weights, same answers


def test_epochs_are_chosen_on_the_validation_images(mnist_slice, tmp_path):
    ev = train_classifier("mnist", mnist_slice, epochs=(1, 3), out=tmp_path / "e.safetensors", arch="mlp32")
    tried = ev.meta["epoch_choices"]
    assert set(tried) == {"1", "3"} and ev.meta["epochs"] == int(max(tried, key=tried.get))
    assert ev.meta["validation_accuracy"] == max(tried.values()) and "reverse_ceiling" not in ev.meta


def test_real_images_as_generator_score_the_classifiers_own_accuracy(evaluators, digits):
    classes = ["7", "2", "5"]   # a task order unlike the classifier's: labels map through names
    G = RealImages(digits, classes)
    acc, _ = generated_accuracy(G, classes, evaluators.main, n=100, seed=0)
    x = torch.cat([digits.test[c].images for c in classes])
    y = torch.cat([torch.full((100,), evaluators.main.index(c)) for c in classes])
    own = per_class_accuracy(evaluators.main, x, y, evaluators.main.classes)
    assert acc == {c: pytest.approx(own[c], abs=1e-6) for c in classes}


def test_a_generator_of_one_class_scores_about_one_over_k(evaluators, digits):
    classes = ["0", "1", "2", "3", "4"]
    G = RealImages(digits, classes, source=lambda label: 3)   # always draws real 3s
    acc, _ = generated_accuracy(G, classes, evaluators.main, n=100, seed=0)
    assert acc["3"] > 0.7 and all(acc[c] < 0.1 for c in ("0", "1", "2", "4"))
    assert abs(sum(acc.values()) / 5 - 1 / 5) < 0.07


def test_prdc_of_a_hand_computed_case():
    """k = 1 on a line. Real 0, 1, 2, 3: each ball has radius 1 (the nearest other real point). Fake 0.5, 10, 11:
    radii 9.5, 1, 1. Precision: of the fakes only 0.5 lies in a real ball: 1/3. Recall: every real point lies in
    the ball of 0.5: 1. Density: 0.5 lies in the balls of 0 and 1, the others in none: (2 + 0 + 0) / 3 / k = 2/3.
    Coverage: the real points whose own ball holds a fake, 0 and 1: 1/2."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0], [11.0]])
    assert prdc(real, fake, k=1) == {"precision": pytest.approx(1 / 3, abs=1e-6), "recall": 1.0,
                                     "density": pytest.approx(2 / 3, abs=1e-6), "coverage": 0.5}
    assert prdc(real, fake[:2], k=1) is None   # too few for k neighbours besides each point itself


def test_variety_sees_what_accuracy_cannot(evaluators, digits):
    """A generator that draws one clean digit over and over is recognised, but covers none of its class."""
    from mergan.evaluation import _real, _variety

    classes = ["0", "1"]
    for distinct, varied in ((None, True), (1, False)):
        G = RealImages(digits, classes, distinct=distinct)
        acc, kept = generated_accuracy(G, classes, evaluators.main, n=100, seed=0, keep=True)
        real_x, real_y, split = _real(digits, classes, 100)
        feats = evaluators.main.run(real_x)[1]
        v = _variety(evaluators.main, kept, digits, classes, real_x, real_y, feats, split, 100, 0, "cpu")
        assert min(acc.values()) > 0.5
        if varied:   # the real test digits themselves: at the real-against-real ceiling
            assert v.mean("recall") > 0.8 and v.mean("coverage") > 0.8
        else:
            assert v.mean("recall") < 0.05 and v.mean("coverage") < 0.05
    assert v.reverse_images_per_class == 100 and v.k == 5 and set(v.prdc_ceiling) == {"0", "1"}


def test_reverse_accuracy_says_what_each_real_class_was_taken_for(evaluators, digits):
    """A generator that draws 1s for label 0 and 0s for label 1: the reverse classifier learns the swap, so real
    0s are taken for 1s and real 1s for 0s; the confusion counts every real test image once."""
    from mergan.evaluation import _real, _variety

    classes = ["0", "1"]
    G = RealImages(digits, classes, source=lambda label: 1 - label)
    _, kept = generated_accuracy(G, classes, evaluators.main, n=100, seed=0, keep=True)
    real_x, real_y, split = _real(digits, classes, 100)
    v = _variety(evaluators.main, kept, digits, classes, real_x, real_y, evaluators.main.run(real_x)[1], split, 100,
                 0, "cpu")
    assert v.reverse.average < 0.1
    for k, c in enumerate(classes):
        row = v.reverse_confusion[c]
        assert sum(row.values()) == int((real_y == k).sum())
        assert row.get(c, 0) / sum(row.values()) == pytest.approx(v.reverse.per_class[c], abs=1e-6)
        other, share = v.taken_for(c)
        assert other == classes[1 - k] and share > 0.5   # most of them (one epoch on 200 images)
    from mergan.tables import run_rows
    rows = run_rows(SimpleNamespace(classes=classes, tasks=[], main=None, second=None, variety=v))[-1][2]
    assert rows[0][:3] == ["0", f"{100 * v.reverse.per_class['0']:.1f}", f"1 ({100 * v.taken_for('0')[1]:.1f})"]



def test_frechet_distance_zero_for_the_same_set_and_mean_shift_in_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-4)
    shift = torch.tensor([1.0, -2.0] + [0.0] * 6)
    assert frechet_distance(a, a + shift) == pytest.approx(5.0, rel=1e-3)   # same covariance: |shift|^2
    assert frechet_distance(a, 2 * a) > 1
    assert frechet_distance(a[:1], a) is None


def test_classifier_lookup_prefers_shipped_then_cache_and_never_a_stale_one(tmp_path, monkeypatch, evaluators,
                                                                           digits, mnist_slice):
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    monkeypatch.setattr(classifier, "SHIPPED", shipped)
    monkeypatch.setattr(classifier, "CACHE", cache)
    data = evaluator_data("mnist", mnist_slice)
    trained, new = [], SimpleNamespace(meta={"test_split": "test", "test_accuracy": 1.0}, path="new")
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: trained.append(k) or new)
    name = cache_name(data, "cnn32")
    assert classifier.find_or_train_classifier(data, "cnn32", {}, epochs=1) is new
    assert trained[0]["out"] == cache / name and trained[0]["epochs"] == 1
    save_classifier(cache / name, evaluators.main.net, {**evaluators.main.meta, "seed": 11})
    assert classifier.find_or_train_classifier(data, "cnn32", {}).meta["seed"] == 11
    save_classifier(shipped / name, evaluators.main.net, {**evaluators.main.meta, "seed": 22})
    assert classifier.find_or_train_classifier(data, "cnn32", {}).meta["seed"] == 22
    # an evaluator of other images under this name is not taken: it is trained anew
    save_classifier(shipped / name, evaluators.main.net, {**evaluators.main.meta, "data_fingerprint": "0" * 16})
    save_classifier(cache / name, evaluators.main.net, {**evaluators.main.meta, "data_fingerprint": "0" * 16})
    assert classifier.find_or_train_classifier(data, "cnn32", {}) is new and len(trained) == 2
    # what the demo does: an evaluator that learned the very images of the runs' classes
    monkeypatch.setattr(classifier, "CACHE", evaluators.cache)
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "none")
    assert classifier.find_classifier(digits.source.subset(["3", "4"]), 32, 1).path == evaluators.main.path
    assert classifier.find_classifier(load_task_data("mnist", tmp_path / "none", "3").source, 32, 1) is None


def test_shipped_evaluators_of_the_official_mnist():
    """Both evaluators of the shipped official MNIST: another family each, another split, chosen epochs."""
    data = evaluator_data("mnist", Path("nowhere"))
    cnn = load_classifier(classifier.SHIPPED / cache_name(data, "cnn32"))
    mlp = load_classifier(classifier.SHIPPED / cache_name(data, "mlp32"))
    for ev in (cnn, mlp):
        assert ev.meta["data_fingerprint"] == data.source.fingerprint and ev.meta["test_images"] == 10_000
        assert ev.meta["train_images"] + ev.meta["validation_images"] == 60_000
        assert ev.path.stat().st_size < 4_000_000
    assert cnn.meta["config"]["arch"] == "cnn32" and cnn.meta["test_accuracy"] >= 0.99
    assert mlp.meta["config"]["arch"] == "mlp32" and mlp.meta["test_accuracy"] >= 0.98
    assert not any(isinstance(m, torch.nn.Conv2d) for m in mlp.net.modules())
    assert [m.out_features for m in mlp.net.modules() if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 128, 10]
    assert mlp.meta["seed"] != cnn.meta["seed"]   # another validation split
    assert cnn.meta["reverse_ceiling"]["images_per_class"] == 1000 and cnn.meta["reverse_ceiling"]["accuracy"] > 0.97


def _cli(capsys, *argv):
    rc = train.main(["--test", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc, err = _cli(capsys, "--out", str(tmp_path / "missing"))
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]
    (tmp_path / "empty").mkdir()
    rc, err = _cli(capsys, "--out", str(tmp_path / "empty"))
    assert rc == 1 and len(err) == 1 and "no task_XX.safetensors" in err[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "task_00.safetensors").write_bytes(b"\x00garbage")
    rc, err = _cli(capsys, "--out", str(bad))
    assert rc == 1 and len(err) == 1 and "config.json" in err[0]


def _train_tiny(out, strategy, classes, data_dir, iters=3):
    argv = ["--strategy", strategy, "--preset", "quick", "--classes", classes, "--iters", str(iters), "--dim", "8",
            "--data-dir", str(data_dir), "--out", str(out), "--cpu"]
    assert train.main(argv) == 0


def test_end_to_end_on_a_tiny_run(tmp_path, capsys, cached, mnist_slice):
    run = tmp_path / "ra"
    _train_tiny(run, "ra", "3,0", mnist_slice)
    capsys.readouterr()
    assert train.main(["--test", "--out", str(run), "--eval-samples", "64"]) == 0   # the run's own data
    printed = capsys.readouterr().out
    assert "after task" in printed and sum(line.startswith("Inception FID: skipped") for line in
                                           printed.splitlines()) == 1
    m = Metrics.from_dict(json.loads((run / "metrics.json").read_text()))
    assert [t.task for t in m.tasks] == [0, 1] and m.classes == ["3", "0"] and m.eval_samples == 64
    assert list(m.tasks[0].main.per_class) == ["3"] and list(m.tasks[1].main.per_class) == ["3", "0"]
    for t in m.tasks:
        assert all(0 <= a <= 1 for a in t.main.per_class.values())
        assert t.main.average == pytest.approx(sum(t.main.per_class.values()) / len(t.main.per_class), abs=1e-5)
        # the same images scored by the second evaluator, and the lower of the two per class
        assert set(t.second.per_class) == set(t.main.per_class)
        assert t.both.per_class == {c: min(a, t.second.per_class[c]) for c, a in t.main.per_class.items()}
    assert m.main.path == str(cached.main.path) and m.second.arch == "mlp32"
    assert m.main.test_accuracy == cached.main.meta["test_accuracy"] and m.strategy.name == "ra"
    assert "second evaluator mlp32" in printed and "taken for" in printed
    v = m.variety
    assert 0 <= v.reverse_accuracy <= 1 and v.reverse_images_per_class == 64 and v.real_split == "test"
    assert set(v.prdc) == {"3", "0"} and all(0 <= row["recall"] <= 1 for row in v.prdc.values())
    assert set(v.prdc_ceiling) == {"3", "0"} and v.mean("recall", ceiling=True) > 0.5
    # recall followed task by task, over the classes seen so far; after the last task it is the final variety's
    assert [list(t.recall.per_class) for t in m.tasks] == [["3"], ["3", "0"]]
    assert m.tasks[-1].recall.per_class == {c: row["recall"] for c, row in v.prdc.items()}
    assert "recall of each class seen after every task" in printed
    assert m.fid["overall"] > 0 and set(m.fid["per_class"]) == {"3", "0"}
    assert "skipped" in m.inception_fid
    grid = Image.open(run / "forgetting_grid.png").convert("RGB")
    assert grid.width > grid.height and (160, 160, 160) in {c for _, c in grid.getcolors(1 << 16)}  # 0 unseen at t0
    assert Image.open(run / "forgetting.gif").n_frames == 2
    assert Image.open(run / "accuracy.png").size == (700, 400)
    # The same run scored by a classifier of another dataset is refused.
    other = tmp_path / "svhn.safetensors"
    cfg = classifier.classifier_config(32, 3, 10)
    save_classifier(other, classifier.build_classifier(cfg), {**cached.main.meta, "dataset": "svhn", "config": cfg})
    rc, err = _cli(capsys, "--out", str(run), "--eval-samples", "64", "--classifier", str(other))
    assert rc == 1 and len(err) == 1 and "svhn" in err[0]


def test_one_task_and_dgr_runs(tmp_path, cached, mnist_slice):
    run = tmp_path / "jt"
    _train_tiny(run, "joint", "0,1", mnist_slice, iters=1)
    m = evaluation.evaluate_run(run, eval_samples=64)
    assert len(m.tasks) == 1 and m.tasks[0].tasks_seen == 2 and m.strategy.one_task
    assert Image.open(run / "forgetting.gif").n_frames == 1
    run = tmp_path / "dgr"
    _train_tiny(run, "dgr", "0,1", mnist_slice, iters=1)
    m = evaluation.evaluate_run(run, eval_samples=64)
    assert [t.tasks_seen for t in m.tasks] == [1, 2] and m.strategy.name == "dgr"
    assert m.config.batch_size == 64 and m.config.lr == 4e-4  # the quick preset's, recorded for the report


def _metrics(strategy, run, averages, rev, recall, fid, dataset="mnist", second=None):
    """A Metrics as the evaluation writes it, with the given averages (every class at the average)."""
    from helpers import task_meta
    from mergan.scores import EvaluatorInfo, Scores, TaskScores, Variety

    classes = [str(c) for c in range(len(averages))]
    meta = task_meta({"arch": "dcgan32", "z_dim": 128, "n_classes": 10, "dim": 16, "channels": 1},
                     task=len(classes) - 1, classes=classes, strategy=strategy, dataset=dataset, iters=500, lr=2e-4)
    tasks = []
    for t, a in enumerate(averages):
        scores = TaskScores(t, t + 1, f"task_{t:02d}.safetensors", Scores.of({c: a for c in classes[: t + 1]}))
        if second:
            scores.second = Scores.of(dict(zip(classes, second[t])))
            scores.both = Scores.of({c: min(a, scores.second.per_class[c]) for c in scores.main.per_class})
        tasks.append(scores)
    real = Scores.of({c: 0.99 for c in classes})
    pr = {c: {"precision": 0.9, "recall": recall, "density": 1.0, "coverage": 0.9} for c in classes}
    variety = Variety(Scores.of({c: rev for c in classes}), rev, real, 0.99, 1000, 15, pr,
                      {c: {"precision": 0.95, "recall": 0.94, "density": 1.0, "coverage": 0.95} for c in classes},
                      5, "test")
    return Metrics(run, meta.run_id, meta.strategy, meta.config, classes, 6400, 0,
                   EvaluatorInfo("clf.safetensors", "cnn32", 0.992, "test", real),
                   EvaluatorInfo("mlp.safetensors", "mlp32", 0.984, "test", real) if second else None,
                   tasks, variety, {"overall": fid, "per_class": {}}, {"skipped": "no weights"})


def _write(folder: Path, m: Metrics) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(m.to_dict()))
    return folder


def test_report_renders_table_1_layout(tmp_path, capsys):
    for strategy, averages in (("ra", [1.0, 0.99, 0.97, 0.96, 0.955]), ("sft", [1.0, 0.5, 0.33, 0.25, 0.2])):
        _write(tmp_path / strategy, _metrics(strategy, f"runs/{strategy}", averages, 0.9 if strategy == "ra" else 0.2,
                                             0.8 if strategy == "ra" else 0.1, 12.5))
    out = tmp_path / "report.md"
    assert report.main([str(tmp_path / "sft"), str(tmp_path / "ra"), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    lines = text.splitlines()
    assert "|  | SFT | MeRGAN-RA |" in lines                   # columns in the paper's order
    assert "| after 5 tasks | 20.00 (19.87) | 95.50 (98.19) |" in lines
    assert "| after 10 tasks | – (10.06) | – (97.01) |" in lines
    assert "| reverse accuracy (real: ceiling) | 20.0 (99.0) | 90.0 (99.0) |" in lines
    assert "| mean recall (real: ceiling) | 0.10 (0.94) | 0.80 (0.94) |" in lines
    assert "width 16 (paper: 32)" in text and "not the paper's setting" in text and "500 generator updates" in text
    assert "batch 64, learning rate 0.0002 (paper: 64, 0.0001)" in text
    assert report.main([str(tmp_path / "nothing")]) == 1


def test_report_gives_joint_training_its_one_task_of_all_updates(tmp_path, capsys):
    _write(tmp_path / "joint", _metrics("joint", "runs/joint", [0.98] * 5, 0.99, 0.85, 9.0))
    assert report.main([str(tmp_path / "joint")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| `runs/joint`"))
    assert "| 2500 in one task of all classes |" in row      # 500 updates per class, 5 classes


def test_report_shows_the_second_evaluator_and_the_lower_of_the_two(tmp_path, capsys):
    _write(tmp_path / "ra", _metrics("ra", "runs/ra", [1.0, 0.9], 0.9, 0.8, 10.0, second=[[0.98], [0.97, 0.7]]))
    assert report.main([str(tmp_path / "ra" / "metrics.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| after 2 tasks, second evaluator | 83.50 |" in lines
    assert "| after 2 tasks, lower of the two, per class | 80.00 |" in lines
    assert "| lowest class after the last task | 1 70.0 |" in lines


def test_report_lsun_follows_table_2(tmp_path, capsys):
    _write(tmp_path / "ra", _metrics("ra", "runs/lsun-ra", [0.9, 0.85, 0.8, 0.75], 0.7, 0.6, 80.0, dataset="lsun"))
    assert report.main([str(tmp_path / "ra")]) == 0
    text = capsys.readouterr().out
    assert "| after 4 tasks | 75.00 (81.03) |" in text.splitlines()
    assert "reverse accuracy: SFT 28.0, EWC 63.35, DGR 26.17, MeRGAN-JTR 70.0, MeRGAN-RA 83.62" in text


def test_an_old_or_broken_metrics_file_is_one_line(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps({"tasks": [], "strategy": "ra", "dataset": "mnist"}))
    assert report.main([str(tmp_path / "old")]) == 1
    assert "evaluate the run again" in capsys.readouterr().err
    m = _metrics("ra", "runs/ra", [1.0], 0.9, 0.8, 10.0).to_dict()
    m["tasks"][0]["main"]["per_class"]["0"] = "high"
    _write(tmp_path / "bad", _metrics("ra", "runs/ra", [1.0], 0.9, 0.8, 10.0))
    (tmp_path / "bad" / "metrics.json").write_text(json.dumps(m))
    assert report.main([str(tmp_path / "bad")]) == 1
    assert "per_class['0'] is 'high'" in capsys.readouterr().err


def test_folder_dataset_at_64_uses_vgg_and_a_held_out_split(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(12):
            img = torch.randint(0, 60, (64, 64, 3), generator=g, dtype=torch.uint8)
            img[:, :, channel] = 255
            Image.fromarray(img.numpy()).save(tmp_path / "data" / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    ev = train_classifier("folder", tmp_path / "data", image_size=64, channels=3, epochs=1)
    assert ev.meta["config"]["arch"] == "vgg64" and ev.meta["classes"] == ["blue", "red"]
    assert ev.meta["test_split"] == "held-out tenth of train" and ev.meta["test_images"] == 2
    data = evaluator_data("folder", tmp_path / "data", image_size=64, channels=3)
    assert ev.meta["train_images"] + ev.meta["validation_images"] == 22   # 24 less a tenth of each class
    assert ev.path == Path("classifiers") / cache_name(data, "vgg64")
    assert load_classifier(ev.path).run(torch.zeros(3, 3, 64, 64, dtype=torch.uint8))[1].shape == (3, 256)


def test_a_full_disk_during_test_names_what_test_takes(tmp_path, capsys, cached, mnist_slice, monkeypatch):
    import errno

    from mergan import checkpoints

    run = tmp_path / "ra"
    _train_tiny(run, "ra", "3,0", mnist_slice, iters=1)
    capsys.readouterr()
    real = checkpoints.os.replace

    def full(src, dst):
        if str(dst).endswith((".png", ".gif", "metrics.json")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", full)
    rc, err = _cli(capsys, "--out", str(run), "--eval-samples", "16")
    assert rc == 1 and len(err) == 1 and "the disk is full" in err[0]
    assert err[0].endswith("free some space, then run the same command again") and "--resume" not in err[0]
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_an_evaluator_is_retrained_when_the_folder_changes(tmp_path, caplog, monkeypatch):
    """The cached evaluator is the one that learned these very images: after one changes, the evaluation says
    why it trains another and scores with it, not with the old one."""
    for name, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(12):
            img = torch.full((32, 32, 3), 40 + i, dtype=torch.uint8)
            img[:, :, channel] = 255
            Image.fromarray(img.numpy()).save(tmp_path / "data" / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)   # the cache, classifiers/, is the working directory's
    assert train.main(["--dataset", "folder", "--data-dir", "data", "--classes", "red", "--strategy", "sft",
                       "--dim", "2", "--iters", "1", "--batch-size", "4", "--out", "run"]) == 0

    def evaluate():
        caplog.clear()
        with caplog.at_level("INFO", logger="mergan"):
            m = evaluation.evaluate_run("run", eval_samples=8, classifier_epochs=1, pictures=False, second=False)
        assert Metrics.from_dict(json.loads(Path("run/metrics.json").read_text())).main == m.main
        return m, caplog.text

    first, _ = evaluate()
    Image.new("RGB", (32, 32), (0, 255, 0)).save(tmp_path / "data" / "red" / "3.png")
    changed, said = evaluate()
    assert "evaluators there (folder-cnn32-" in said and "learned other images): training one" in said
    assert "are not those the run trained on (the images of class red differ" in said
    assert changed.main.path != first.main.path and Path(changed.main.path).is_file()
    data = evaluator_data("folder", "data")
    assert Path(changed.main.path).name == cache_name(data, "cnn32")
    assert load_classifier(changed.main.path).meta["data_fingerprint"] == data.source.fingerprint
