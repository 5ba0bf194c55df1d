"""Evaluation of a run: the paper's accuracy on generated images, reverse accuracy, FID, pictures of forgetting.

    python -m mergan.evaluation train-classifier --dataset mnist --mnist-source mnist5k   # prints test accuracy
    python train.py --test --out runs/mnist-ra          # writes metrics.json, forgetting_grid.png, forgetting.gif,
                                                        # accuracy.png into the run folder

The original scores a generator with a classifier pretrained on real data (``mergan.py:200-229``): 6,400
images of every class seen so far, the accuracy of each class, and their unweighted mean (Table 1, and Table
2's "Acc."). The evaluators are in ``mergan.classifier``, the metrics in ``mergan.metrics``, the pictures in
``mergan.pictures``; this module runs them over a run folder's tasks and writes ``metrics.json``.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import sys
import time
from pathlib import Path

import torch

from .checkpoints import CheckpointError, load_generator, read_metadata
from .classifier import load_classifier
from .classifier import (ARCHS, EPOCHS, MAX_PER_CLASS, EvaluationError, find_or_train_classifier, rate, stack,
                         train_classifier)
from .data import ASSETS, DataError, load_task_data
from .metrics import frechet_distance, generated_accuracy, inception_fid, mean, reverse_accuracy
from .pictures import SEED as PICTURE_SEED, write_pictures
from .runs import RunFolder
from .sampling import sample

log = logging.getLogger("mergan")


# ----------------------------------------------------------------------------------------------- runs

def run_checkpoints(run_dir: Path) -> list[tuple[Path, dict]]:
    """The run's task files in task order, with metadata; raises on anything unusable."""
    if not run_dir.is_dir():
        raise EvaluationError(f"run folder {run_dir} does not exist; pass the --out of a training run")
    files = [p for _, p in RunFolder(run_dir).task_files()]
    if not files:
        raise EvaluationError(f"{run_dir} holds no task_XX.safetensors; train it first with train.py --out {run_dir}")
    found = [(p, read_metadata(p)) for p in files]   # sizes refused before anything is built from them
    first = found[0][1]

    def arch(meta):  # what must be shared by a run's tasks ("seen" grows with DGR's tasks)
        return {k: v for k, v in meta["model"].items() if k != "seen"}

    for (number, _), (p, meta) in zip(RunFolder(run_dir).task_files(), found):
        task, classes = meta["task"], meta["classes"]
        if type(task) is not int or task != number or not isinstance(classes, list) or len(classes) != task + 1:
            raise EvaluationError(f"{p} holds task {str(task)[:20]} of classes {str(classes)[:60]}, not what its "
                                  f"name says (task {number}); restore the run's original file names")
        if meta["dataset"] != first["dataset"] or arch(meta) != arch(first):
            raise EvaluationError(f"{p} is from another run (dataset {meta['dataset']}, model {meta['model']}) "
                                  f"than {found[0][0].name}; keep one run per folder")
    return found


def _real_data(meta: dict, data_dir: Path, mnist_source: str | None, lsun_cap: int):
    """The real images of the run's dataset, as the run saw them where possible."""
    dataset, source = meta["dataset"], str(meta["data_source"])
    if mnist_source in (None, "auto"):   # follow the run: a run on the shipped digits is scored against them
        mnist_source = "mnist5k" if source.startswith("mnist5k") else "auto"
    if dataset in ("lsun", "folder") and not data_dir.is_dir():
        m = re.match(r"(?:folder: |lsun: lmdb in )(.*?)(?:, at most \d+ images per class)?$", source)
        if m and Path(m.group(1)).is_dir():
            log.info("data: %s (from the run's data source; %s does not exist)", m.group(1), data_dir)
            data_dir = Path(m.group(1))
    size = 32 if meta["model"]["arch"] == "dcgan32" else 64
    data = load_task_data(dataset, data_dir, ",".join(meta["classes"]), mnist_source=mnist_source,
                          lsun_cap=lsun_cap, image_size=size, channels=meta["model"]["channels"])
    if data.size != size or data.channels != meta["model"]["channels"]:
        raise EvaluationError(f"the run makes {meta['model']['channels']}x{size}x{size} images but the data are "
                              f"{data.channels}x{data.size}x{data.size}")
    kwargs = dict(data_dir=data_dir, mnist_source=mnist_source, lsun_cap=lsun_cap, image_size=size,
                  channels=meta["model"]["channels"])
    return data, kwargs


def _training_settings(run_dir: Path, meta: dict) -> dict:
    """Batch size and learning rate of the run (checkpoint metadata, else the run's config.json), so a table
    can say how its budget differs from the paper's."""
    try:
        saved = RunFolder(run_dir).read_config()
    except (OSError, ValueError):
        saved = {}
    return {k: meta.get(k, saved.get(k)) for k in ("batch_size", "lr")}


def evaluate_run(run_dir: str | Path, eval_samples: int = 6400, seed: int = 0, device: str = "cpu",
                 data_dir: str | Path = "data", mnist_source: str | None = None, lsun_cap: int = 100_000,
                 classifier: str | Path | None = None, classifier_epochs: int | None = None,
                 inception_weights: str | Path | None = None, pictures: bool = True, second: bool = True) -> dict:
    """Evaluate every task checkpoint of a run; write ``RUN/metrics.json`` and the pictures; return the metrics.

    ``mnist_source`` None or 'auto' follows the run (the shipped mnist5k digits if it was trained on them).
    ``classifier``: a classifier file; default the shipped one, else ``classifiers/`` here, else trained now.
    ``second``: also score the same images with the second evaluator (``mlp32``, found or trained the same way;
    32x32 images only): ``tasks[k]["second"]``, and ``tasks[k]["both"]``, each class's lower accuracy of the two.
    """
    start = time.time()
    run_dir = Path(run_dir)
    if not 2 <= eval_samples <= 100_000:
        raise EvaluationError(f"--eval-samples must be between 2 and 100,000 per class (paper 6,400), got "
                              f"{eval_samples}")
    if inception_weights and not Path(inception_weights).is_file():
        raise EvaluationError(f"no Inception weights at {inception_weights}; give a local file or leave it out")
    checkpoints = run_checkpoints(run_dir)
    final_meta = checkpoints[-1][1]
    dataset, classes = final_meta["dataset"], list(final_meta["classes"])
    data, train_kwargs = _real_data(final_meta, Path(data_dir), mnist_source, lsun_cap)
    size, channels = train_kwargs["image_size"], train_kwargs["channels"]
    if classifier is not None:
        ev = load_classifier(classifier, device)
    else:
        ev = find_or_train_classifier(dataset, data.source, size, channels, train_kwargs, classifier_epochs, device)
    cfg = ev.meta["config"]
    if ev.meta["dataset"] != dataset or (cfg["size"], cfg["channels"]) != (size, channels):
        raise EvaluationError(f"the classifier {ev.path} is for {ev.meta['dataset']} ({cfg['channels']}x"
                              f"{cfg['size']}x{cfg['size']}) but the run is {dataset} ({channels}x{size}x{size}); "
                              f"use a classifier trained on the run's dataset")
    missing = [c for c in classes if c not in ev.classes]
    if missing:
        raise EvaluationError(f"the classifier {ev.path} does not know classes {missing} of the run; train one on "
                              f"data that has them (python -m mergan.evaluation train-classifier)")
    # The second evaluator, of another family and trained on another split (32x32 images only).
    ev2 = None
    if size == 32 and second:
        ev2 = find_or_train_classifier(dataset, data.source, size, channels, train_kwargs, None, device, "mlp32")
        if [c for c in classes if c not in ev2.classes]:
            raise EvaluationError(f"the second classifier {ev2.path} does not know every class of the run; "
                                  f"delete it to retrain")

    # Table 1: every checkpoint, every class seen so far.
    tasks, pictures_per_task, final_kept = [], [], None
    for k, (path, meta) in enumerate(checkpoints):
        G, meta = load_generator(path, device)
        last = k == len(checkpoints) - 1
        acc, kept = generated_accuracy(G, meta["classes"], ev, eval_samples, seed, device, keep=last or ev2 is not None)
        tasks.append({"task": int(meta["task"]), "tasks_seen": len(meta["classes"]), "checkpoint": path.name,
                      "per_class": acc, "average": mean(acc.values())})
        line = f"after task {meta['task']}: average accuracy {100 * tasks[-1]['average']:.2f}% ({cfg['arch']})"
        if ev2 is not None:   # the same images, scored by the second evaluator; "both": the lower of the two
            acc2 = {c: rate(ev2.run(kept[c][0])[0] == ev2.index(c)) for c in meta["classes"]}
            low = {c: min(acc[c], acc2[c]) for c in acc}
            tasks[-1]["second"] = {"arch": ev2.meta["config"]["arch"], "per_class": acc2,
                                   "average": mean(acc2.values())}
            tasks[-1]["both"] = {"per_class": low, "average": mean(low.values())}
            line += f", {100 * tasks[-1]['second']['average']:.2f}% ({ev2.meta['config']['arch']})"
        log.info("%s over %d classes", line, len(acc))
        if pictures:
            pictures_per_task.append({c: sample(G, torch.full((8,), i), PICTURE_SEED, device)
                                      for i, c in enumerate(meta["classes"])})
        if last:
            final_kept = kept
        del G

    # Real images of the run's classes: the test split, else train.
    split = "test" if all(c in data.test for c in classes) else "train"
    real = {c: stack((data.test if split == "test" else data.train)[c], max(eval_samples, 10_000)) for c in classes}
    real_x = torch.cat([real[c] for c in classes])
    real_y = torch.cat([torch.full((len(real[c]),), k) for k, c in enumerate(classes)])
    real_preds, real_feats = ev.run(real_x)
    real_acc = {c: rate(real_preds[real_y == k] == ev.index(c)) for k, c in enumerate(classes)}
    second_info = None
    if ev2 is not None:
        preds2, _ = ev2.run(real_x)
        real2 = {c: rate(preds2[real_y == k] == ev2.index(c)) for k, c in enumerate(classes)}
        second_info = {"path": _shown(ev2.path), "arch": ev2.meta["config"]["arch"],
                       "test_accuracy": ev2.meta.get("test_accuracy"), "test_split": ev2.meta.get("test_split"),
                       "data_source": ev2.meta.get("data_source"), "train_split": ev2.meta.get("train_split"),
                       "real_accuracy": {"per_class": real2, "average": mean(real2.values()), "split": split}}

    # FID in the evaluator's feature space, final generator vs real.
    fid = {"per_class": {c: frechet_distance(real_feats[real_y == k], final_kept[c][1]) for k, c in enumerate(classes)},
           "overall": frechet_distance(real_feats, torch.cat([final_kept[c][1] for c in classes])),
           "features": f"evaluator penultimate layer ({ev.net.num_features}-d)",
           "implementation": "torchmetrics FrechetInceptionDistance with a custom feature module",
           "real_split": split, "real_images": len(real_x), "fake_images_per_class": eval_samples}

    # Reverse accuracy: train on generated images as many as the real training data had, test on real.
    n_rev = min(eval_samples, min(len(data.train[c]) for c in classes))
    epochs = int(ev.meta.get("epochs", EPOCHS))
    log.info("reverse accuracy: training a classifier on %d generated images per class, %d epochs", n_rev, epochs)
    rev = reverse_accuracy(cfg, {c: final_kept[c][0][:n_rev] for c in classes}, real_x, real_y, classes, epochs,
                           seed, device)
    rev["real_split"] = split

    if inception_weights:
        fake_all = torch.cat([final_kept[c][0] for c in classes])
        log.info("Inception FID on %d real and %d generated images", len(real_x), len(fake_all))
        inception = inception_fid(inception_weights, real_x, fake_all, device)
    else:
        inception = {"skipped": "no --inception-weights given (a local torchvision inception_v3 state dict or "
                                "torchmetrics' FID weights file); nothing is downloaded"}

    metrics = {
        "run": str(run_dir), "dataset": dataset, "strategy": final_meta["strategy"], "classes": classes,
        "iters": final_meta["iters"], "model": final_meta["model"], "data_source": final_meta["data_source"],
        "eval_samples": eval_samples, "seed": seed, **_training_settings(run_dir, final_meta),
        "classifier": {"path": _shown(ev.path), "arch": cfg["arch"],
                       "test_accuracy": ev.meta.get("test_accuracy"), "test_split": ev.meta.get("test_split"),
                       "data_source": ev.meta.get("data_source"),
                       "real_accuracy": {"per_class": real_acc, "average": mean(real_acc.values()),
                                         "split": split}},
        **({"second_classifier": second_info} if second_info else {}),
        "tasks": tasks,
        "final": {"task": tasks[-1]["task"], "tasks_seen": tasks[-1]["tasks_seen"], "average": tasks[-1]["average"]},
        "reverse_accuracy": rev, "fid": fid, "inception_fid": inception,
    }
    if pictures:
        metrics["files"] = write_pictures(run_dir, pictures_per_task, tasks, classes, size,
                                          f"{dataset} {final_meta['strategy']}", final_meta["strategy"] == "joint")
    metrics["seconds"] = round(time.time() - start, 1)
    RunFolder(run_dir).write_metrics(metrics)
    return metrics


def _shown(path: Path | None) -> str | None:
    """A path as a reader should see it: relative to the repository for shipped files."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(ASSETS.parent))
    except ValueError:
        return str(path)


def _pct(x) -> str:
    return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"


def _num(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_metrics(m: dict) -> str:
    """The readable table printed after an evaluation."""
    classes = m["classes"]
    w = max(5, max(len(c) for c in classes))
    lines = [f"{m['run']}: {m['dataset']} {m['strategy']}, {m['iters']} iterations per task, model "
             f"{m['model']['arch']} dim {m['model']['dim']}, {m['eval_samples']} samples per class",
             f"evaluator {m['classifier']['arch']} ({m['classifier']['path']}): "
             f"{_pct(m['classifier']['test_accuracy']).strip()}% on real {m['classifier']['test_split']} images",
             "accuracy (%) of the evaluator on generated images:",
             "after task | " + " ".join(f"{c:>{w}}" for c in classes) + " | average"]
    for t in m["tasks"]:
        cells = " ".join(f"{_pct(t['per_class'].get(c)):>{w}}" for c in classes)
        lines.append(f"{t['task']:>10} | {cells} | {_pct(t['average'])}")
    real = m["classifier"]["real_accuracy"]
    lines.append(f"{'real':>10} | " + " ".join(f"{_pct(real['per_class'].get(c)):>{w}}" for c in classes)
                 + f" | {_pct(real['average'])}")
    if m.get("second_classifier"):
        s2 = m["second_classifier"]
        lines.append(f"second evaluator {s2['arch']} ({s2['path']}): {_pct(s2['test_accuracy']).strip()}% on real "
                     f"{s2['test_split']} images; accuracy (%) on the same generated images:")
        for t in m["tasks"]:
            cells = " ".join(f"{_pct(t['second']['per_class'].get(c)):>{w}}" for c in classes)
            lines.append(f"{t['task']:>10} | {cells} | {_pct(t['second']['average'])}")
        real = s2["real_accuracy"]
        lines.append(f"{'real':>10} | " + " ".join(f"{_pct(real['per_class'].get(c)):>{w}}" for c in classes)
                     + f" | {_pct(real['average'])}")
    rev, fid = m["reverse_accuracy"], m["fid"]
    lines.append(f"reverse accuracy: {_pct(rev['accuracy']).strip()}% on {rev['test_images']} real "
                 f"{rev['real_split']} images (trained on {rev['train_images']} generated)")
    lines.append(f"FID, {fid['features']}: overall {_num(fid['overall'])}; per class "
                 + ", ".join(f"{c} {_num(v)}" for c, v in fid["per_class"].items()))
    inc = m["inception_fid"]
    lines.append(f"Inception FID: skipped: {inc['skipped']}" if "skipped" in inc else
                 f"Inception FID: {inc['overall']:.2f} ({inc['features']})")
    return "\n".join(lines)


def evaluate_run_cli(args) -> int:
    """``train.py --test``: evaluate ``args.out``, print the table; errors are one line on stderr, return 1."""
    if not args.out:
        print("error: --test needs --out RUN, the run folder to evaluate", file=sys.stderr)
        return 1
    device = "cuda" if torch.cuda.is_available() and not getattr(args, "cpu", False) else "cpu"
    try:
        m = evaluate_run(args.out, eval_samples=args.eval_samples, seed=args.seed, device=device,
                         data_dir=args.data_dir, mnist_source=args.mnist_source, lsun_cap=args.lsun_cap,
                         classifier=getattr(args, "classifier", None),
                         classifier_epochs=getattr(args, "classifier_epochs", None),
                         inception_weights=getattr(args, "inception_weights", None))
    except (EvaluationError, CheckpointError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_metrics(m))
    print(f"wrote {RunFolder(args.out).metrics_path} and the pictures in {m['seconds']:.0f} s")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergan.evaluation", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classifier", help="train the evaluator on a dataset's real images; print its accuracy")
    t.add_argument("--dataset", default="mnist", help="mnist, svhn, lsun or folder (default mnist)")
    t.add_argument("--data-dir", default="data")
    t.add_argument("--mnist-source", default="auto", choices=["auto", "full", "mnist5k"])
    t.add_argument("--lsun-cap", type=int, default=100_000)
    t.add_argument("--image-size", type=int, default=32, choices=[32, 64], help="folder datasets")
    t.add_argument("--channels", type=int, default=3, choices=[1, 3], help="folder datasets")
    t.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    t.add_argument("--max-per-class", type=int, default=MAX_PER_CLASS, help="real training images per class")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="default classifiers/<dataset>-<hash of data source>.safetensors")
    t.add_argument("--arch", default=None, choices=list(ARCHS),
                   help="default: the main evaluator of the image size (cnn32 or vgg64); mlp32: the second one")
    t.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    try:
        ev = train_classifier(args.dataset, args.data_dir, mnist_source=args.mnist_source, lsun_cap=args.lsun_cap,
                              image_size=args.image_size, channels=args.channels, epochs=args.epochs,
                              seed=args.seed, device=device, out=args.out, max_per_class=args.max_per_class,
                              arch=args.arch)
    except (EvaluationError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = ev.meta
    print(f"test accuracy: {100 * m['test_accuracy']:.2f}% on {m['test_images']} real {m['test_split']} images "
          f"({m['dataset']}, {m['train_images']} training images, {m['epochs']} epochs, {m['train_seconds']:.0f} s)")
    print(f"saved {ev.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
