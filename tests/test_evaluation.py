"""Evaluation: metrics on cases with known answers, the Fréchet distance's closed form, the report, the CLI's
errors, and one real run evaluated end to end (mnist5k, tiny budgets)."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import train
from mergan import classifier, evaluation, report
from mergan.classifier import load_classifier, save_classifier
from mergan.classifier import cache_name, per_class_accuracy, train_classifier
from mergan.batches import to_float
from mergan.data import load_mnist, load_task_data
from mergan.metrics import frechet_distance, generated_accuracy


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    """A classifier trained for one epoch on the shipped digits: quick, well above chance."""
    path = tmp_path_factory.mktemp("clf") / "mnist.safetensors"
    train_classifier("mnist", mnist_source="mnist5k", epochs=1, out=path)
    return load_classifier(path)


@pytest.fixture(scope="module")
def digits():
    return load_task_data("mnist", "data", mnist_source="mnist5k")


class RealImages(torch.nn.Module):
    """A fake generator whose label-i images are the real test images of ``classes[source(i)]``, in order."""

    def __init__(self, digits, classes, source=lambda label: label):
        super().__init__()
        self.images = {i: to_float(digits.test[classes[source(i)]].images) for i in range(len(classes))}
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


def test_classifier_file_round_trip_and_metadata(evaluator, digits):
    m = evaluator.meta
    assert m["dataset"] == "mnist" and m["classes"] == [str(i) for i in range(10)]
    assert m["test_split"] == "test" and m["test_images"] == 1000 and m["config"]["arch"] == "cnn32"
    assert 0.5 < m["test_accuracy"] <= 1
    x = torch.cat([digits.test[c].images for c in digits.classes])
    y = torch.cat([torch.full((len(digits.test[c]),), k) for k, c in enumerate(digits.classes)])
    preds, feats = evaluator.run(x)
    assert feats.shape == (1000, 128)
    assert abs(float((preds == y).float().mean()) - m["test_accuracy"]) < 1e-6   # reloaded weights, same answers


def test_real_images_as_generator_score_the_classifiers_own_accuracy(evaluator, digits):
    classes = ["7", "2", "5"]   # a task order unlike the classifier's: labels map through names
    G = RealImages(digits, classes)
    acc, _ = generated_accuracy(G, classes, evaluator, n=100, seed=0)
    x = torch.cat([digits.test[c].images for c in classes])
    y = torch.cat([torch.full((100,), evaluator.index(c)) for c in classes])
    own = per_class_accuracy(evaluator, x, y, evaluator.classes)
    assert acc == {c: pytest.approx(own[c], abs=1e-6) for c in classes}


def test_a_generator_of_one_class_scores_about_one_over_k(evaluator, digits):
    classes = ["0", "1", "2", "3", "4"]
    G = RealImages(digits, classes, source=lambda label: 3)   # always draws real 3s
    acc, _ = generated_accuracy(G, classes, evaluator, n=100, seed=0)
    assert acc["3"] > 0.7 and all(acc[c] < 0.1 for c in ("0", "1", "2", "4"))
    assert abs(sum(acc.values()) / 5 - 1 / 5) < 0.07


def test_frechet_distance_zero_for_the_same_set_and_mean_shift_in_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-4)
    shift = torch.tensor([1.0, -2.0] + [0.0] * 6)
    assert frechet_distance(a, a + shift) == pytest.approx(5.0, rel=1e-3)   # same covariance: |shift|^2
    assert frechet_distance(a, 2 * a) > 1
    assert frechet_distance(a[:1], a) is None


def test_classifier_lookup_prefers_shipped_then_cache(tmp_path, monkeypatch, evaluator):
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    monkeypatch.setattr(classifier, "SHIPPED", shipped)
    monkeypatch.setattr(classifier, "CACHE", cache)
    trained, new = [], SimpleNamespace(meta={"test_split": "test", "test_accuracy": 1.0}, path="new")
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: trained.append(k) or new)
    name = cache_name("mnist", "src", 32, 1)
    assert classifier.find_or_train_classifier("mnist", "src", 32, 1, {}, epochs=1) is new
    assert trained[0]["out"] == cache / name and trained[0]["epochs"] == 1
    save_classifier(cache / name, evaluator.net, {**evaluator.meta, "seed": 11})
    assert classifier.find_or_train_classifier("mnist", "src", 32, 1, {}).meta["seed"] == 11
    save_classifier(shipped / name, evaluator.net, {**evaluator.meta, "seed": 22})
    assert classifier.find_or_train_classifier("mnist", "src", 32, 1, {}).meta["seed"] == 22


def test_shipped_mnist5k_classifier():
    _, source = load_mnist(Path("data"), "mnist5k")
    path = classifier.SHIPPED / cache_name("mnist", source, 32, 1)
    assert path.is_file() and path.stat().st_size < 2_000_000
    ev = load_classifier(path)
    assert ev.meta["data_source"] == source and ev.meta["test_accuracy"] > 0.97


def _cli(capsys, *argv):
    rc = train.main(["--test", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_cli_errors_are_one_line(tmp_path, capsys, evaluator):
    rc, err = _cli(capsys, "--out", str(tmp_path / "missing"))
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]
    (tmp_path / "empty").mkdir()
    rc, err = _cli(capsys, "--out", str(tmp_path / "empty"))
    assert rc == 1 and len(err) == 1 and "no task_XX.safetensors" in err[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "task_00.safetensors").write_bytes(b"\x00garbage")
    rc, err = _cli(capsys, "--out", str(bad))
    assert rc == 1 and len(err) == 1 and "task_00.safetensors" in err[0]


def _train_tiny(out, strategy, classes, iters=3):
    argv = ["--strategy", strategy, "--preset", "quick", "--classes", classes, "--iters", str(iters), "--dim", "8",
            "--mnist-source", "mnist5k", "--out", str(out), "--cpu"]
    assert train.main(argv) == 0


def test_end_to_end_on_a_tiny_run(tmp_path, capsys, evaluator):
    run = tmp_path / "ra"
    _train_tiny(run, "ra", "3,0")
    capsys.readouterr()
    assert train.main(["--test", "--out", str(run), "--eval-samples", "64", "--mnist-source", "mnist5k",
                       "--classifier", str(evaluator.path)]) == 0
    printed = capsys.readouterr().out
    assert "after task" in printed and sum(line.startswith("Inception FID: skipped") for line in
                                           printed.splitlines()) == 1
    m = json.loads((run / "metrics.json").read_text())
    assert [t["task"] for t in m["tasks"]] == [0, 1] and m["classes"] == ["3", "0"] and m["eval_samples"] == 64
    assert list(m["tasks"][0]["per_class"]) == ["3"] and list(m["tasks"][1]["per_class"]) == ["3", "0"]
    for t in m["tasks"]:
        assert all(0 <= a <= 1 for a in t["per_class"].values())
        assert t["average"] == pytest.approx(sum(t["per_class"].values()) / len(t["per_class"]), abs=1e-5)
    assert m["classifier"]["test_accuracy"] == evaluator.meta["test_accuracy"]
    # The same images scored by the second evaluator (the shipped MLP), and the lower of the two per class.
    assert m["second_classifier"]["arch"] == "mlp32" and m["second_classifier"]["test_accuracy"] >= 0.97
    for t in m["tasks"]:
        assert t["second"]["arch"] == "mlp32" and set(t["second"]["per_class"]) == set(t["per_class"])
        assert t["both"]["per_class"] == {c: min(a, t["second"]["per_class"][c]) for c, a in t["per_class"].items()}
    assert "second evaluator mlp32" in printed
    assert 0 <= m["reverse_accuracy"]["accuracy"] <= 1 and m["reverse_accuracy"]["train_images"] == 128
    assert m["reverse_accuracy"]["test_images"] == 200 and m["fid"]["real_split"] == "test"
    assert m["fid"]["overall"] > 0 and set(m["fid"]["per_class"]) == {"3", "0"}
    assert "skipped" in m["inception_fid"]
    grid = Image.open(run / "forgetting_grid.png").convert("RGB")
    assert grid.width > grid.height and (160, 160, 160) in {c for _, c in grid.getcolors(1 << 16)}  # 0 unseen at t0
    gif = Image.open(run / "forgetting.gif")
    assert gif.n_frames == 2
    assert Image.open(run / "accuracy.png").size == (700, 400)
    # The same run scored by a classifier of another dataset is refused.
    other = tmp_path / "svhn.safetensors"
    cfg = classifier.classifier_config(32, 3, 10)
    save_classifier(other, classifier.build_classifier(cfg), {**evaluator.meta, "dataset": "svhn", "config": cfg})
    rc, err = _cli(capsys, "--out", str(run), "--eval-samples", "64", "--classifier", str(other))
    assert rc == 1 and len(err) == 1 and "svhn" in err[0]


def test_second_evaluator_is_another_family_on_another_split(digits):
    """The shipped MLP (the paper's MNIST classifier's shape) scores real test digits as its metadata says,
    was trained on nine tenths of the training digits, and is not the CNN."""
    mlp = load_classifier(classifier.SHIPPED / cache_name("mnist", digits.source, 32, 1, "mlp32"))
    cnn = load_classifier(classifier.SHIPPED / cache_name("mnist", digits.source, 32, 1))
    assert mlp.meta["config"]["arch"] == "mlp32" and cnn.meta["config"]["arch"] == "cnn32"
    assert not any(isinstance(m, torch.nn.Conv2d) for m in mlp.net.modules())
    assert [m.out_features for m in mlp.net.modules() if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 128, 10]
    assert mlp.meta["train_images"] == 3600 and mlp.meta["seed"] != cnn.meta["seed"]
    x = torch.cat([digits.test[c].images for c in digits.classes])
    y = torch.cat([torch.full((len(digits.test[c]),), k) for k, c in enumerate(digits.classes)])
    preds, _ = mlp.run(x)
    assert float((preds == y).float().mean()) == pytest.approx(mlp.meta["test_accuracy"], abs=1e-6)
    assert mlp.meta["test_accuracy"] >= 0.97


def test_joint_run_has_one_checkpoint(tmp_path, evaluator):
    run = tmp_path / "jt"
    _train_tiny(run, "joint", "0,1", iters=1)
    m = evaluation.evaluate_run(run, eval_samples=64, classifier=evaluator.path, mnist_source="mnist5k")
    assert len(m["tasks"]) == 1 and m["tasks"][0]["tasks_seen"] == 2 and m["strategy"] == "joint"
    assert Image.open(run / "forgetting.gif").n_frames == 1


def test_dgr_run_is_evaluated_task_by_task(tmp_path, evaluator):
    run = tmp_path / "dgr"
    _train_tiny(run, "dgr", "0,1", iters=1)
    m = evaluation.evaluate_run(run, eval_samples=64, classifier=evaluator.path, mnist_source="mnist5k")
    assert [t["tasks_seen"] for t in m["tasks"]] == [1, 2] and m["strategy"] == "dgr"
    assert m["batch_size"] == 64 and m["lr"] == 4e-4  # the quick preset's, recorded for the report


def _metrics(strategy, run, averages, rev, fid):
    tasks = [{"task": t, "tasks_seen": t + 1, "checkpoint": f"task_{t:02d}.safetensors",
              "per_class": {str(c): a for c in range(t + 1)}, "average": a} for t, a in enumerate(averages)]
    return {"run": run, "dataset": "mnist", "strategy": strategy, "classes": [str(c) for c in range(len(averages))],
            "iters": 500, "model": {"arch": "dcgan32", "dim": 16, "channels": 1}, "data_source": "mnist5k: test",
            "eval_samples": 6400, "batch_size": 64, "lr": 2e-4,
            "classifier": {"path": "clf.safetensors", "arch": "cnn32", "test_accuracy": 0.982,
                           "test_split": "test"},
            "tasks": tasks, "reverse_accuracy": {"accuracy": rev}, "fid": {"overall": fid},
            "inception_fid": {"skipped": "no weights"}}


def test_report_renders_table_1_layout(tmp_path, capsys):
    for strategy, averages in (("ra", [1.0, 0.99, 0.97, 0.96, 0.955]), ("sft", [1.0, 0.5, 0.33, 0.25, 0.2])):
        (tmp_path / strategy).mkdir()
        (tmp_path / strategy / "metrics.json").write_text(json.dumps(
            _metrics(strategy, f"runs/{strategy}", averages, 0.9 if strategy == "ra" else 0.2, 12.5)))
    out = tmp_path / "report.md"
    assert report.main([str(tmp_path / "sft"), str(tmp_path / "ra"), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| | JT"))
    assert header == "| | JT | SFT | EWC | DGR | MeRGAN-JTR | MeRGAN-RA |"
    row5 = next(line for line in text.splitlines() if line.startswith("| after 5 tasks"))
    assert row5 == ("| after 5 tasks | — (97.66) | 20.00 (19.87) | — (70.62) | — (90.39) | — (97.93) | "
                    "95.50 (98.19) |")
    assert "| after 10 tasks | — (96.92) |" in text
    assert "| reverse accuracy (%), after 5 tasks |  | 20.00 |  |  |  | 90.00 |" in text
    assert "width 16 (paper: 32)" in text and "not the paper's setting" in text and "| 500 |" in text
    assert "batch 64, learning rate 0.0002 (paper: 64, 0.0001)" in text
    assert report.main([str(tmp_path / "nothing")]) == 1


def test_report_shows_the_second_evaluator_and_the_lower_of_the_two(tmp_path, capsys):
    m = _metrics("ra", "runs/ra", [1.0, 0.9], 0.9, 10.0)
    for t, second in zip(m["tasks"], ([0.98], [0.97, 0.7])):
        t["second"] = {"arch": "mlp32", "per_class": dict(zip(t["per_class"], second)),
                       "average": sum(second) / len(second)}
        low = {c: min(a, t["second"]["per_class"][c]) for c, a in t["per_class"].items()}
        t["both"] = {"per_class": low, "average": sum(low.values()) / len(low)}
    m["second_classifier"] = {"arch": "mlp32", "path": "mlp.safetensors", "test_accuracy": 0.974, "test_split": "test"}
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    assert report.main([str(tmp_path / "metrics.json")]) == 0
    text = capsys.readouterr().out
    assert "| after 2 tasks, second evaluator |  |  |  |  |  | 83.50 |" in text
    assert "| after 2 tasks, lower of the two per class |  |  |  |  |  | 80.00 |" in text
    assert "Second evaluator: mlp32 `mlp.safetensors`, 97.40% on real test images" in text


def test_report_lsun_rows_follow_table_2(tmp_path, capsys):
    m = _metrics("ra", "runs/lsun-ra", [0.9, 0.85, 0.8, 0.75], 0.7, 80.0)
    m.update(dataset="lsun", classes=["bedroom", "kitchen", "church_outdoor", "tower"],
             inception_fid={"overall": 55.5}, model={"arch": "resnet64", "dim": 16, "channels": 3})
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    assert report.main([str(tmp_path / "metrics.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| after 4 tasks |  | — (15.02) | — (14.28) | — (15.40) | — (79.19) | 75.00 (81.03) |" in lines
    assert "| FID, Inception, after 4 tasks |  | — (110.12) | — (178.05) | — (93.70) | — (49.69) | 55.50 (37.73) |" \
        in lines


def test_folder_dataset_at_64_uses_vgg_and_a_held_out_split(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            img = torch.randint(0, 60, (64, 64, 3), generator=g, dtype=torch.uint8)
            img[:, :, channel] = 255
            Image.fromarray(img.numpy()).save(tmp_path / "data" / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    ev = train_classifier("folder", tmp_path / "data", image_size=64, channels=3, epochs=1)
    assert ev.meta["config"]["arch"] == "vgg64" and ev.meta["classes"] == ["blue", "red"]
    assert ev.meta["test_split"] == "held-out tenth of train" and ev.meta["test_images"] == 2
    assert ev.meta["train_images"] == 18 and ev.path == Path("classifiers") / cache_name(
        "folder", ev.meta["data_source"], 64, 3)
    assert load_classifier(ev.path).run(torch.zeros(3, 3, 64, 64, dtype=torch.uint8))[1].shape == (3, 256)
