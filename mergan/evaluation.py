"""Evaluation of a run: the paper's accuracy on generated images, their variety, FID, pictures of forgetting.

    python -m mergan.evaluation train-classifier --dataset mnist            # prints test accuracy, saves it
    python train.py --test --out runs/mnist-ra          # writes metrics.json, forgetting_grid.png, forgetting.gif,
                                                        # accuracy.png into the run folder

The original scores a generator with a classifier pretrained on real data (``mergan.py:200-229``): 6,400
images of every class seen so far, the accuracy of each class, and their unweighted mean (Table 1, and Table
2's "Acc."). Accuracy says a class is recognisable, not that it is drawn in many ways, so the final generator's
variety is measured too, per class, beside real-against-real ceilings (``scores.Variety``). The evaluators are
in ``mergan.classifier``, the metrics in ``mergan.metrics``, the pictures in ``mergan.pictures``, the tables
in ``mergan.tables``; this module runs them over a run folder's tasks and writes ``metrics.json``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from .checkpoints import CheckpointError, WriteError, load_generator
from .classifier import (ARCHS, MAX_PER_CLASS, REVERSE_PER_CLASS, EvaluationError, Evaluator, default_arch,
                         evaluator_data, find_or_train_classifier, load_classifier, rate, stack, train_classifier)
from .data import ASSETS, DataError
from .metrics import PRDC_K, frechet_distance, generated_accuracy, inception_fid, prdc, reverse_accuracy
from .pictures import SEED as PICTURE_SEED, write_pictures
from .records import RecordError, RunRecord, TaskMeta
from .scores import EvaluatorInfo, Metrics, Scores, TaskScores, Variety
from .runs import FolderBusy, RunFolder
from .sampling import sample
from .tables import metrics_text

log = logging.getLogger("mergan")


# ----------------------------------------------------------------------------------------------- the run
def run_checkpoints(run_dir: Path) -> tuple[RunRecord, list[tuple[Path, TaskMeta]]]:
    """The run's record and its task files in task order, each checked to be this run's; raises on anything
    unusable (one line, saying what to do)."""
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise EvaluationError(f"run folder {run_dir} does not exist; pass the --out of a training run")
    files = run.task_files()
    if not files:
        raise EvaluationError(f"{run_dir} holds no task_XX.safetensors; train it first with train.py --out {run_dir}")
    if not run.has_config():
        raise EvaluationError(f"{run_dir} has task files but no config.json; it is not a train.py run folder")
    record = run.read_record()
    return record, [(p, run.read_task(t, record)) for t, p in files]


def _evaluator_info(ev: Evaluator, real: Scores) -> EvaluatorInfo:
    return EvaluatorInfo(_shown(ev.path), ev.meta["config"]["arch"], ev.meta["test_accuracy"], ev.meta["test_split"],
                         real, ev.meta.get("validation_accuracy"), ev.meta.get("epochs"))


def _evaluators(data, classes, classifier, epochs, device, second: bool, train_kwargs):
    """The main evaluator (a given file, else shipped, cached or trained) and the second one, of another family
    (32x32 images only), both checked to know the run's classes."""
    arch = default_arch(data.size)
    ev = load_classifier(classifier, device) if classifier else find_or_train_classifier(data, arch, train_kwargs,
                                                                                         epochs, device)
    cfg = ev.meta["config"]
    if ev.meta["dataset"] != data.name or (cfg["size"], cfg["channels"]) != (data.size, data.channels):
        raise EvaluationError(f"the classifier {ev.path} is for {ev.meta['dataset']} ({cfg['channels']}x"
                              f"{cfg['size']}x{cfg['size']}) but the run is {data.name} ({data.channels}x{data.size}x"
                              f"{data.size}); use a classifier trained on the run's dataset")
    evaluators = [ev]
    if data.size == 32 and second:
        evaluators.append(find_or_train_classifier(data, "mlp32", train_kwargs, None, device))
    for e in evaluators:
        missing = [c for c in classes if c not in e.classes]
        if missing:
            raise EvaluationError(f"the classifier {e.path} does not know classes {missing} of the run; train one "
                                  f"on data that has them (python -m mergan.evaluation train-classifier)")
    return evaluators[0], (evaluators[1] if len(evaluators) > 1 else None)


def _score(G, meta: TaskMeta, path: Path, ev, ev2, n: int, seed: int, device):
    """One task file: every class seen so far, ``n`` images each, scored by both evaluators (the same images).
    Returns (TaskScores, {class: (images, main features)})."""
    acc, kept = generated_accuracy(G, meta.classes, ev, n, seed, device, keep=True)
    scores = TaskScores(meta.task, len(meta.classes), path.name, Scores.of(acc))
    line = f"after task {meta.task}: average accuracy {100 * scores.main.average:.2f}% ({ev.meta['config']['arch']})"
    if ev2 is not None:   # the same images, scored by the second evaluator; "both": the lower of the two
        acc2 = {c: rate(ev2.run(kept[c][0])[0] == ev2.index(c)) for c in meta.classes}
        scores.second = Scores.of(acc2)
        scores.both = Scores.of({c: min(acc[c], acc2[c]) for c in acc})
        line += f", {100 * scores.second.average:.2f}% ({ev2.meta['config']['arch']})"
    log.info("%s over %d classes", line, len(acc))
    return scores, kept


def _prdc(kept: dict, seen: list[str], classes: list[str], real_feats, real_y) -> dict[str, dict]:
    """Each class seen so far: precision, recall, density and coverage (k = 5) of its generated images' features
    (as many as its real images) against its real images'; a class with too few images on either side is left
    out. Measured after every task (its recall kept per task); the last task's is the final generator's variety."""
    out = {}
    for c in seen:
        real_c = real_feats[real_y == classes.index(c)]
        measured = prdc(real_c, kept[c][1][:len(real_c)])
        if measured is not None:
            out[c] = measured
    return out


def _real(data, classes: list[str], n: int):
    """Real images of the run's classes, the test split where every class has one (else train): (images,
    labels = index in ``classes``, split name)."""
    split = "test" if all(c in data.test for c in classes) else "train"
    sets = data.test if split == "test" else data.train
    real = {c: stack(sets[c], max(n, 10_000)) for c in classes}
    x = torch.cat([real[c] for c in classes])
    y = torch.cat([torch.full((len(real[c]),), k) for k, c in enumerate(classes)])
    return x, y, split


def _variety(ev: Evaluator, kept: dict, data, classes: list[str], real_x, real_y, real_feats, split: str,
             n: int, seed: int, device, table: dict | None = None) -> Variety:
    """Reverse accuracy and precision/recall/density/coverage of the final generator, per class, with ceilings
    (``table``: its ``_prdc``, when the caller has measured it already)."""
    cfg = ev.meta["config"]
    epochs = int(ev.meta.get("epochs", 15))
    n_rev = min(n, REVERSE_PER_CLASS, min(len(data.train[c]) for c in classes))
    log.info("reverse accuracy: a classifier trained on %d generated images per class, %d epochs", n_rev, epochs)
    reverse, reverse_all, taken_for = reverse_accuracy(cfg, {c: kept[c][0][:n_rev] for c in classes}, real_x, real_y,
                                                       classes, epochs, seed, device)
    ceiling = ev.meta.get("reverse_ceiling")
    if ceiling and ceiling.get("images_per_class") == n_rev and ceiling.get("epochs") == epochs \
            and sorted(ceiling["per_class"]) == sorted(classes):   # stored with the evaluator: every class
        ceil_pc, ceil_all = ceiling["per_class"], ceiling["accuracy"]
    else:   # a subset of the classes is an easier task: its ceiling is its own
        log.info("reverse accuracy's ceiling: the same recipe on %d real training images per class", n_rev)
        real_train = {c: stack(data.train[c], n_rev) for c in classes}
        ceil_pc, ceil_all, _ = reverse_accuracy(cfg, real_train, real_x, real_y, classes, epochs, seed, device)
    table = _prdc(kept, classes, classes, real_feats, real_y) if table is None else table
    ceiling_table = {}
    for k, c in enumerate(classes):
        real_c = real_feats[real_y == k]
        m = len(real_c)
        train_c = stack(data.train[c], m)
        reference = prdc(real_c, ev.run(train_c)[1]) if len(train_c) >= m else None
        if reference is not None:
            ceiling_table[c] = reference
    return Variety(Scores.of(reverse), reverse_all, Scores.of(ceil_pc), ceil_all, n_rev, epochs, table,
                   ceiling_table, PRDC_K, split, taken_for)


def _fid(real_feats, real_y, kept, classes, split, n) -> dict:
    return {"per_class": {c: frechet_distance(real_feats[real_y == k], kept[c][1]) for k, c in enumerate(classes)},
            "overall": frechet_distance(real_feats, torch.cat([kept[c][1] for c in classes])),
            "features": "main evaluator's penultimate layer",
            "implementation": "torchmetrics FrechetInceptionDistance with a custom feature module",
            "real_split": split, "real_images": len(real_feats), "fake_images_per_class": n}


def _prepare(run_dir: Path, eval_samples: int, data_dir, lsun_cap: int, classifier, classifier_epochs, device,
             second: bool):
    """The run's record, its task files, the evaluators' real data and both evaluators; raises
    EvaluationError (one line) on a bad sample count, run folder or evaluator."""
    if not 2 <= eval_samples <= 100_000:
        raise EvaluationError(f"--eval-samples must be between 2 and 100,000 per class (paper 6,400), got "
                              f"{eval_samples}")
    record, checkpoints = run_checkpoints(run_dir)
    final = checkpoints[-1][1]
    cfg, classes = final.config, list(final.classes)
    size, channels = (32, cfg.model["channels"]) if cfg.model["arch"] == "dcgan32" else (64, cfg.model["channels"])
    where = data_dir if data_dir is not None else (cfg.data_source.location or "data")
    train_kwargs = dict(data_dir=where, lsun_cap=lsun_cap, image_size=size, channels=channels)
    data = evaluator_data(cfg.dataset, **train_kwargs)
    changed = cfg.data_source.differs(data.source)
    if changed:
        log.warning("the real images in %s are not those the run trained on (%s); scoring against them anyway",
                    where, changed)
    ev, ev2 = _evaluators(data, classes, classifier, classifier_epochs, device, second, train_kwargs)
    return record, checkpoints, data, ev, ev2


def score_final_task(run_dir: str | Path, eval_samples: int = 6400, seed: int = 0,
                     device: str = "cpu") -> tuple[TaskScores, str, str | None]:
    """Accuracy only: the run's last task file, ``eval_samples`` images per class seen, scored by the main
    evaluator and the second one (the paper's measure, ``mergan.py:200-229``). No variety, FID, pictures or
    metrics.json: for a budget sweep (``bench --time-to-quality``) that needs only whether a class is recognised.

    Returns (the TaskScores, the main evaluator's arch, the second's or None). Raises EvaluationError, as
    ``evaluate_run``.
    """
    _, checkpoints, _, ev, ev2 = _prepare(Path(run_dir), eval_samples, None, 100_000, None, None, device, True)
    path, _ = checkpoints[-1]
    G, meta = load_generator(path, device)
    scores, _ = _score(G, meta, path, ev, ev2, eval_samples, seed, device)
    return scores, ev.meta["config"]["arch"], (ev2.meta["config"]["arch"] if ev2 is not None else None)


def evaluate_run(run_dir: str | Path, eval_samples: int = 6400, seed: int = 0, device: str = "cpu",
                 data_dir: str | Path | None = None, lsun_cap: int = 100_000, classifier: str | Path | None = None,
                 classifier_epochs=None, inception_weights: str | Path | None = None, pictures: bool = True,
                 second: bool = True) -> Metrics:
    """Evaluate every task file of a run; write ``RUN/metrics.json`` and the pictures; return the ``Metrics``.

    ``data_dir`` None: the data the run was trained on (its recorded folder; MNIST's shipped files).
    ``classifier``: an evaluator file; default the shipped one of these images, else ``classifiers/`` here, else
    trained now. ``second``: also score the same images with the second evaluator (``mlp32``, 32x32 images only).
    """
    start = time.time()
    run_dir = Path(run_dir)
    if inception_weights and not Path(inception_weights).is_file():
        raise EvaluationError(f"no Inception weights at {inception_weights}; give a local file or leave it out")
    record, checkpoints, data, ev, ev2 = _prepare(run_dir, eval_samples, data_dir, lsun_cap, classifier,
                                                  classifier_epochs, device, second)
    final = checkpoints[-1][1]
    cfg, classes, size = final.config, list(final.classes), data.size

    real_x, real_y, split = _real(data, classes, eval_samples)
    real_preds, real_feats = ev.run(real_x)
    tasks, samples, kept, table = [], [], None, {}
    for path, meta in checkpoints:
        G, meta = load_generator(path, device)
        scores, kept = _score(G, meta, path, ev, ev2, eval_samples, seed, device)
        table = _prdc(kept, meta.classes, classes, real_feats, real_y)
        scores.recall = Scores.of({c: row["recall"] for c, row in table.items()}) if table else None
        tasks.append(scores)
        if pictures:
            samples.append({c: sample(G, torch.full((8,), i), PICTURE_SEED, device) for i, c in enumerate(meta.classes)})
        del G

    real = Scores.of({c: rate(real_preds[real_y == k] == ev.index(c)) for k, c in enumerate(classes)})
    second_info = None
    if ev2 is not None:
        preds2, _ = ev2.run(real_x)
        second_info = _evaluator_info(ev2, Scores.of({c: rate(preds2[real_y == k] == ev2.index(c))
                                                      for k, c in enumerate(classes)}))
    variety = _variety(ev, kept, data, classes, real_x, real_y, real_feats, split, eval_samples, seed, device,
                       table)
    if inception_weights:
        fake_all = torch.cat([kept[c][0] for c in classes])
        log.info("Inception FID on %d real and %d generated images", len(real_x), len(fake_all))
        inception = inception_fid(inception_weights, real_x, fake_all, device)
    else:
        inception = {"skipped": "no --inception-weights given (a local torchvision inception_v3 state dict or "
                                "torchmetrics' FID weights file); nothing is downloaded"}
    metrics = Metrics(str(run_dir), record.run_id, record.strategy, cfg, classes, eval_samples, seed,
                      _evaluator_info(ev, real), second_info, tasks, variety,
                      _fid(real_feats, real_y, kept, classes, split, eval_samples), inception)
    if pictures:
        metrics.files = write_pictures(RunFolder(run_dir), samples, tasks, classes, size,
                                       f"{cfg.dataset} {record.strategy.short}", record.strategy.one_task)
    metrics.seconds = round(time.time() - start, 1)
    RunFolder(run_dir).write_metrics(metrics)
    return metrics


def _shown(path: Path | None) -> str:
    """A path as a reader should see it: relative to the repository for shipped files."""
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(ASSETS.parent))
    except ValueError:
        return str(path)


def evaluate_run_cli(args) -> int:
    """``train.py --test``: evaluate ``args.out``, print the table; errors are one line on stderr, return 1."""
    if not args.out:
        print("error: --test needs --out RUN, the run folder to evaluate", file=sys.stderr)
        return 1
    device = "cuda" if torch.cuda.is_available() and not getattr(args, "cpu", False) else "cpu"
    run = RunFolder(args.out)
    try:
        with run.writing():   # one writer: not while it trains
            m = evaluate_run(args.out, eval_samples=args.eval_samples, seed=args.seed, device=device,
                             data_dir=args.data_dir, lsun_cap=args.lsun_cap,
                             classifier=getattr(args, "classifier", None),
                             classifier_epochs=getattr(args, "classifier_epochs", None),
                             inception_weights=getattr(args, "inception_weights", None))
    except WriteError as e:
        print(f"error: {e.retry('run the same command again')}", file=sys.stderr)
        return 1
    except (EvaluationError, CheckpointError, DataError, RecordError, FolderBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot use {e.filename or run.path}: {e.strerror or e}; make the run folder writable, or copy "
              f"it somewhere writable and evaluate the copy", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; {run.metrics_path.name} was not written: run the same command again",
              file=sys.stderr)
        return 130
    print(metrics_text(m))
    print(f"wrote {RunFolder(args.out).metrics_path} and the pictures in {m.seconds:.0f} s")
    return 0


def _epochs(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(e) for e in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--epochs takes comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--epochs must each be at least 1, got {text!r}")
    return values


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergan.evaluation", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classifier", help="train an evaluator on a dataset's real images; print its accuracy")
    t.add_argument("--dataset", default="mnist", help="mnist, svhn, lsun or folder (default mnist)")
    t.add_argument("--data-dir", default="data", help="where the dataset lives (MNIST: default the shipped files)")
    t.add_argument("--lsun-cap", type=int, default=100_000)
    t.add_argument("--image-size", type=int, default=32, choices=[32, 64], help="folder datasets")
    t.add_argument("--channels", type=int, default=3, choices=[1, 3], help="folder datasets")
    t.add_argument("--epochs", type=_epochs, default=None,
                   help="epochs to try, the best on the validation images kept, e.g. 5,10,15,20 (default: "
                        "cnn32 5,10,15,20; mlp32 15,30,60; vgg64 15)")
    t.add_argument("--max-per-class", type=int, default=MAX_PER_CLASS, help="real training images per class")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="default classifiers/<dataset>-<arch>-<hash of the images>.safetensors")
    t.add_argument("--arch", default=None, choices=list(ARCHS),
                   help="default: the main evaluator of the image size (cnn32 or vgg64); mlp32: the second one")
    t.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    try:
        ev = train_classifier(args.dataset, args.data_dir, lsun_cap=args.lsun_cap, image_size=args.image_size,
                              channels=args.channels, epochs=args.epochs, seed=args.seed, device=device,
                              out=args.out, max_per_class=args.max_per_class, arch=args.arch)
    except (EvaluationError, DataError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no evaluator was saved: run the same command again", file=sys.stderr)
        return 130
    m = ev.meta
    print(f"test accuracy: {100 * m['test_accuracy']:.2f}% on {m['test_images']} real {m['test_split']} images "
          f"({m['dataset']}, {m['train_images']} training images; {m['epochs']} epochs chosen on "
          f"{m['validation_images']} validation images: {100 * m['validation_accuracy']:.2f}%; "
          f"{m['train_seconds']:.0f} s)")
    if "reverse_ceiling" in m:
        rc = m["reverse_ceiling"]
        print(f"reverse accuracy's ceiling: {100 * rc['accuracy']:.2f}% ({rc['images_per_class']} real images per "
              f"class, {rc['epochs']} epochs)")
    print(f"saved {ev.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
