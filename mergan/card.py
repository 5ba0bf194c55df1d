"""A model card per run, in the Hugging Face Hub's format (``huggingface_hub.ModelCard``: YAML metadata, then
Markdown), written to ``RUN/README.md`` (``RunFolder.card_path``) at the end of training, refreshed by ``--test``
and by ``mergan push``.

    mergan card runs/mnist-ra [--repo-id USER/mnist-ra]     # write it again (python -m mergan.card works too)

What it states comes from the run's own records and nothing else: the settings and the strategy from
``config.json`` (``RunFolder.read_record``), the data by content, and every number from ``metrics.json``
(``RunFolder.read_metrics``), as fractions there and as percentages here (``tables.percent``). A run not yet
evaluated, or evaluated before its last task, gets a card that says so and carries no results.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .checkpoints import CheckpointError, atomic_write_text
from .config import PRESETS, SETTINGS, RunConfig
from .records import RecordError, RunRecord
from .scores import Metrics
from .runs import RunFolder
from .tables import number, percent, render, run_rows

LICENSE = "mit"               # the project's licence (LICENSE), under which its runs are shared
LIBRARY = "mergan"            # what loads the files (the card's snippet)
# The Hub's copy of a dataset, named only where the run used the official files shipped with mergan.
HUB_DATASETS = {"mnist": "ylecun/mnist"}
DATASET_NAMES = {"mnist": "MNIST", "svhn": "SVHN", "lsun": "LSUN", "folder": "an image folder"}
PAPER = "Memory Replay GANs: Learning to Generate New Categories without Forgetting"
CITATION = """@inproceedings{wu2018memory,
  title     = {Memory Replay {GANs}: Learning to Generate New Categories without Forgetting},
  author    = {Wu, Chenshen and Herranz, Luis and Liu, Xialei and Wang, Yaxing and van de Weijer, Joost and
               Raducanu, Bogdan},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2018}
}"""


class CardError(Exception):
    """The run cannot be described (no readable ``config.json``); the message says what to do."""


# ----------------------------------------------------------------------------------------------- the facts
def evaluation(run: RunFolder, record: RunRecord) -> tuple[Metrics | None, str | None]:
    """The run's evaluation if it covers every task file the run has now, else (None, why not: "has not been
    evaluated ...", naming no path, for "the run ..." or "this run ...")."""
    if not run.has_metrics():
        return None, "has not been evaluated (no metrics.json)"
    try:
        m = run.read_metrics()
    except RecordError as e:
        return None, f"has an unusable metrics.json ({e})"
    if m.run_id != record.run_id:
        return None, f"has a metrics.json of another run (id {m.run_id}, this run's is {record.run_id})"
    have = [p.name for _, p in run.task_files()]
    scored = [t.checkpoint for t in m.tasks]
    if scored != have:
        return None, (f"was evaluated on {len(scored)} task file(s) but has {len(have)} now (evaluated: "
                      f"{', '.join(scored)[:80]})")
    return m, None


def official_data(cfg: RunConfig) -> bool:
    """The run trained on the official files shipped with mergan (their Hub dataset can be named)."""
    return cfg.data_source.location is None and cfg.dataset in HUB_DATASETS


def command(cfg: RunConfig, data_dir: str = "DATA") -> str:
    """A ``mergan train`` command that resolves to exactly ``cfg`` (every setting given, the preset named for the
    rest): the run's settings as a command, from ``config.json``. ``data_dir`` stands for the data where the run
    did not use the shipped files."""
    by_name = {"dim": cfg.model["dim"], "betas": f"{_num(cfg.beta1)},{_num(cfg.beta2)}"}
    args = ["mergan train", f"--dataset {cfg.dataset}", f"--strategy {cfg.strategy}",
            f"--classes {','.join(cfg.classes)}", f"--seed {cfg.seed}"]
    preset = next((p for p, v in PRESETS.items() if v["log_every"] == cfg.log_every), None)
    if preset:
        args.append(f"--preset {preset}")
    for s in SETTINGS:
        value = by_name[s.name] if s.name in by_name else getattr(cfg, s.name)
        if value is None or (s.name == "ewc_lambda" and cfg.strategy != "ewc"):
            continue   # None: the preset's (the resolution's); EWC's weight means nothing to the others
        args.append(f"{s.flag} {_num(value) if isinstance(value, float) else value}")
    if cfg.dataset == "folder":
        args += [f"--image-size {32 if cfg.model['arch'] == 'dcgan32' else 64}",
                 f"--channels {cfg.model['channels']}"]
    if cfg.dataset == "lsun":   # as many images per class as the largest class had: the same images
        args.append(f"--lsun-cap {max(c.images for c in cfg.data_source.classes.values())}")
    if cfg.data_source.location is not None:
        args.append(f"--data-dir {data_dir}")
    return " \\\n    ".join(args)


def _num(x: float) -> str:
    """A float as typed: short where that is exact, else every digit (the command must resolve to the run)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


# ----------------------------------------------------------------------------------------------- the card
def build_card(run: RunFolder, repo_id: str | None = None):
    """The run's ``huggingface_hub.ModelCard``. ``repo_id``: where it is (to be) published, named in the loading
    snippet (none: a placeholder). Raises ``CardError`` if the run has no readable ``config.json``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    try:
        record = run.read_record()
    except RecordError as e:
        raise CardError(str(e)) from None
    cfg, info = record.config, record.strategy
    metrics, missing = evaluation(run, record)
    tasks = run.task_files()
    name = f"{info.short} on {DATASET_NAMES[cfg.dataset]}, classes {', '.join(cfg.classes)}"
    dataset_id = HUB_DATASETS[cfg.dataset] if official_data(cfg) else cfg.dataset
    results = []
    if metrics is not None:
        final, n = metrics.final, metrics.final.tasks_seen

        def result(metric_type, value, metric_name):
            return EvalResult(task_type="image-generation", task_name="Class-incremental image generation",
                              dataset_type=dataset_id, dataset_name=f"{DATASET_NAMES[cfg.dataset]}, classes "
                              f"{', '.join(metrics.classes)}", dataset_split=metrics.variety.real_split,
                              metric_type=metric_type, metric_value=value, metric_name=metric_name)

        results = [result("accuracy", round(100 * final.main.average, 2),
                          f"Average accuracy after {n} tasks ({metrics.main.arch} evaluator, %)")]
        if final.second is not None:
            results.append(result("accuracy", round(100 * final.second.average, 2),
                                  f"Average accuracy after {n} tasks ({metrics.second.arch} evaluator, %)"))
        results.append(result("accuracy", round(100 * metrics.variety.reverse_accuracy, 2),
                              "Reverse accuracy (classifier trained on generated images, %)"))
        results.append(result("fid", round(metrics.fid["overall"], 2),
                              f"FID in the {metrics.main.arch} evaluator's features (not Inception)"))
    data = ModelCardData(
        library_name=LIBRARY, license=LICENSE,
        tags=["continual-learning", "gan", *(["class-conditional"] if info.conditional else []), "image-generation",
              "mergan", cfg.dataset, info.short.lower().replace(" ", "-")],
        datasets=[HUB_DATASETS[cfg.dataset]] if official_data(cfg) else None,
        metrics=["accuracy"] if metrics is not None else None,
        model_name=name if results else None, eval_results=results or None)
    body = [f"# {name}", "", _summary(cfg, info, tasks), "", "## Load it", "", _snippet(repo_id, len(cfg.classes)), "",
            *_results(run, metrics, missing), *_samples(run, tasks), *_training(cfg, info), *_data(cfg),
            "## Citation", "", f"The method is from *{PAPER}* (Wu et al., NeurIPS 2018, "
            "[arXiv 1809.02058](https://arxiv.org/abs/1809.02058)):", "", "```bibtex", CITATION, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def _summary(cfg: RunConfig, info, tasks) -> str:
    kind = ("Class-conditional GAN generators" if info.conditional else
            "GAN generators (unconditional, each with a classifier that labels what it draws)")
    if info.one_task:
        learned = (f"all {len(cfg.classes)} classes ({', '.join(cfg.classes)}) at once, in one task: the upper bound "
                   f"of continual learning, not an instance of it")
    else:
        learned = (f"{len(cfg.classes)} classes one task at a time, in this order: {', '.join(cfg.classes)}, never "
                   f"seeing an old class's data again")
    files = ", ".join(f"`{p.name}`" for _, p in tasks) or "none yet"
    return (f"{kind} trained on {DATASET_NAMES[cfg.dataset]} with **{info.title}**: {info.about}. The run learned "
            f"{learned}. Its generators, one per task it finished: {files}; label *i* draws class *i* of the order "
            f"above. Trained with mergan, a PyTorch re-implementation of Memory Replay GANs.")


def _snippet(repo_id: str | None, n_classes: int) -> str:
    # Without a repository the card names no path: the same run gives the same card wherever its folder is.
    load = (f'G, meta = load_generator("{repo_id}")   # the generator after the last task; task=t for another'
            if repo_id else 'G, meta = load_generator("RUN")   # RUN: this folder, or owner/name once pushed')
    return "\n".join(["```python", "from mergan import load_generator, sample", load,
                      f"images = sample(G, labels={list(range(min(n_classes, 3)))}, seed=0)  # uint8 (N, C, H, W); "
                      f"label i draws meta.classes[i]", "```"])


def _results(run: RunFolder, m: Metrics | None, missing: str | None) -> list[str]:
    if m is None:
        return ["## Results", "", f"None yet: this run {missing}. `mergan test --out RUN` (or `python train.py "
                "--test --out RUN`) evaluates it and writes this card again, with the numbers.", ""]
    final = m.final
    low_class, low = final.strict.lowest()
    evaluators = f"{m.main.arch} ({percent(m.main.test_accuracy)}% on real {m.main.test_split} images)"
    if m.second is not None:
        evaluators += f" and {m.second.arch} ({percent(m.second.test_accuracy)}%), of another family"
    second = f" and {percent(final.second.average)}% by {m.second.arch}" if final.second is not None else ""
    lines = ["## Results", "",
             f"After the last task ({final.tasks_seen} classes), {m.eval_samples} generated images per class are "
             f"recognised by real-data classifiers at {percent(final.main.average)}% on average by {m.main.arch}"
             f"{second} (the paper's Table 1 metric); the lowest class, {low_class}, at {percent(low)}%"
             f"{' (the lower of the two evaluators)' if final.both is not None else ''}. Reverse accuracy (a "
             f"classifier trained on the final generator's images, tested on real ones): "
             f"{percent(m.variety.reverse_accuracy)}% (real images instead: "
             f"{percent(m.variety.reverse_ceiling_accuracy)}%). FID in {m.main.arch}'s "
             f"features: {number(m.fid['overall'])}. Evaluators: {evaluators}. Every number here is from "
             f"`metrics.json`.", ""]
    for title, header, rows in run_rows(m):
        lines += [f"**{title[0].upper()}{title[1:]}**", "", render(header, rows, "markdown"), ""]
    if run.picture_path("forgetting_grid").is_file():
        lines += [f"![Every class after every task]({run.PICTURES['forgetting_grid']})", ""]
    return lines


def _samples(run: RunFolder, tasks) -> list[str]:
    if not tasks:
        return []
    t = tasks[-1][0]
    if not run.sample_path(t).is_file():
        return []
    rel = run.sample_path(t).relative_to(run.path).as_posix()
    return ["## Samples", "", f"Every class after the last task (task {t}), a row per class, from fixed noise:", "",
            f"![Samples after task {t}]({rel})", ""]


def _training(cfg: RunConfig, info) -> list[str]:
    settings = {k: v for k, v in cfg.__dict__.items() if k not in ("data_source", "classes")}
    rows = [[k, f"`{json.dumps(v, sort_keys=True)}`"] for k, v in settings.items()]   # as config.json has them
    where = "" if cfg.data_source.location is None else (" (`DATA`: a folder holding the same images, by the "
                                                         "fingerprints under Data)")
    return ["## Training", "", f"Strategy `{cfg.strategy}`, {info.title}: {info.about}.", "",
            f"The run's settings as a command{where}; `python train.py` takes the same options:", "",
            "```bash", command(cfg), "```", "", "Every resolved setting (`config.json`):", "",
            render(["setting", "value"], rows, "markdown"), ""]


def _data(cfg: RunConfig) -> list[str]:
    src = cfg.data_source
    if official_data(cfg):
        where = f"the official files shipped with mergan (on the Hub as [{HUB_DATASETS[cfg.dataset]}]" \
                f"(https://huggingface.co/datasets/{HUB_DATASETS[cfg.dataset]}))"
    else:
        where = "the trainer's own files (not published with the run; identified by content below)"
    rows = [[c, f"{src.classes[c].images:,}" if c in src.classes else "–",
             f"`{src.classes[c].fingerprint}`" if c in src.classes else "–"] for c in cfg.classes]
    return ["## Data", "", f"{DATASET_NAMES[cfg.dataset]}, {where}. The training images of each class, in task "
            f"order, with the fingerprint of their content (a run is continued only on the same images):", "",
            render(["class", "training images", "content fingerprint"], rows, "markdown"), ""]


def write_card(run: RunFolder | str | Path, repo_id: str | None = None) -> Path:
    """Write the run's card to ``RUN/README.md``, atomically; returns its path. Raises ``CardError`` (no readable
    ``config.json``) or ``CheckpointError`` (the write failed; the previous card is unchanged)."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    card = build_card(run, repo_id)
    atomic_write_text(run.card_path, str(card))
    return run.card_path


def write_card_cli(run_dir: str | Path, repo_id: str | None = None) -> int:
    """Write the card and say where; one line on stderr and 1 if it cannot be written."""
    try:
        path = write_card(run_dir, repo_id)
    except (CardError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote the model card {path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mergan card", description="Write a run's model card (RUN/README.md) from "
                                "its config.json and metrics.json.")
    p.add_argument("run", help="a run folder written by train.py")
    p.add_argument("--repo-id", default=None, help="the Hub repository named in the loading snippet")
    args = p.parse_args(argv)
    return write_card_cli(args.run, args.repo_id)


if __name__ == "__main__":
    sys.exit(main())
