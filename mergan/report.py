"""Our evaluated runs beside the paper's Table 1 and Table 2, as Markdown.

    python -m mergan.report runs/mnist-sft runs/mnist-jtr runs/mnist-ra --out results.md

Reads each run's ``metrics.json`` (written by ``python train.py --test --out RUN``). One table per dataset and
budget (data source, model, samples per class): strategies as columns in the paper's order, a row per number
of tasks, each cell "ours (paper)". Every table says what budget our runs had, so a CPU run is never mistaken
for the paper's setting.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .checkpoints import CheckpointError, atomic_write_text
from .config import DEFAULTS, PAPER_ITERS
from .naming import PAPER_COLUMNS, percent
from .runs import RunFolder

COLUMNS = PAPER_COLUMNS   # column order and names of the paper's Table 1; config names on the left

# Table 1, p. 6: average accuracy (%) after 5 and 10 tasks (reference doc section 5.1).
PAPER_ACCURACY = {
    "mnist": {5: {"joint": 97.66, "sft": 19.87, "ewc": 70.62, "dgr": 90.39, "jtr": 97.93, "ra": 98.19},
              10: {"joint": 96.92, "sft": 10.06, "ewc": 77.03, "dgr": 85.40, "jtr": 97.00, "ra": 97.01}},
    "svhn": {5: {"joint": 85.30, "sft": 19.35, "ewc": 39.84, "dgr": 61.29, "jtr": 80.90, "ra": 76.05},
             10: {"joint": 84.82, "sft": 10.10, "ewc": 33.02, "dgr": 47.28, "jtr": 66.50, "ra": 66.78}},
    # Table 2, p. 7: after the 4th task; there is no JT column for LSUN.
    "lsun": {4: {"sft": 15.02, "ewc": 14.28, "dgr": 15.40, "jtr": 79.19, "ra": 81.03}},
}
PAPER_REVERSE = {"lsun": {4: {"sft": 28.0, "ewc": 63.35, "dgr": 26.17, "jtr": 70.00, "ra": 83.62}}}
PAPER_INCEPTION_FID = {"lsun": {4: {"sft": 110.12, "ewc": 178.05, "dgr": 93.70, "jtr": 49.69, "ra": 37.73}}}
PAPER_DIM = {"dcgan32": 32, "resnet64": 64}
PAPER_CLASSIFIER = {"mnist": "an MLP", "svhn": "a small VGG", "lsun": "a VGG16 over 10 LSUN categories"}


class ReportError(Exception):
    pass


def load_metrics(path: str | Path) -> dict:
    """A run folder's metrics.json (or the file itself)."""
    path = Path(path)
    file = path if path.is_file() else RunFolder(path).metrics_path
    if not file.is_file():
        raise ReportError(f"{path} has no metrics.json; evaluate it first: python train.py --test --out {path}")
    try:
        m = json.loads(file.read_text())
        m["tasks"], m["strategy"], m["dataset"]  # noqa: B018 - the keys the report needs
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ReportError(f"{file} is not a metrics.json written by the evaluation ({e}); evaluate the run "
                          f"again") from e
    return m


def _pct(x) -> str:
    return "—" if x is None else f"{percent(x):.2f}"


def _fid(entry: dict) -> str | None:
    return f"{entry['overall']:.2f}" if entry.get("overall") is not None else None


def _cell(ours: str | None, paper: float | None, paper_fmt: str = "{:.2f}") -> str:
    if ours is None and paper is None:
        return ""
    return f"{ours or '—'}" + (f" ({paper_fmt.format(paper)})" if paper is not None else "")


def _columns(runs: list[dict]) -> list[tuple[str, str, dict | None]]:
    """(strategy, title, run or None): the paper's six, a run's duplicates and other strategies after them."""
    cols = []
    known = [s for s, _ in COLUMNS]
    for strategy, title in COLUMNS + [(s, s) for s in sorted({r["strategy"] for r in runs} - set(known))]:
        mine = [r for r in runs if r["strategy"] == strategy]
        if not mine:
            cols.append((strategy, title, None))
        for k, r in enumerate(mine):
            cols.append((strategy, title if k == 0 else f"{title} ({Path(r['run']).name})", r))
    return cols


def _budget_key(m: dict) -> tuple:
    # the network's size, not what a strategy adds to it (DGR's solver and its seen classes)
    model = {k: v for k, v in (m.get("model") or {}).items() if k not in ("replay", "seen")}
    return (m["dataset"], m.get("data_source"), json.dumps(model, sort_keys=True), m.get("eval_samples"),
            m.get("batch_size"), m.get("lr"))


def _training(first: dict) -> str:
    """Batch and learning rate beside the paper's, where the metrics record them."""
    batch, lr = first.get("batch_size"), first.get("lr")
    if batch is None and lr is None:
        return ""
    return (f"; batch {batch}, learning rate {lr:g} (paper: {DEFAULTS['batch_size']}, {DEFAULTS['lr']:g})"
            if lr is not None else f"; batch {batch} (paper: {DEFAULTS['batch_size']})")


def render_table(runs: list[dict]) -> str:
    """One dataset-and-budget group as Markdown."""
    first = runs[0]
    dataset, model = first["dataset"], first.get("model", {})
    cols = _columns(runs)
    paper_acc = PAPER_ACCURACY.get(dataset, {})
    paper_dim = PAPER_DIM.get(model.get("arch"))
    finals = {r["tasks"][-1]["tasks_seen"] for r in runs}
    counts = sorted(set(paper_acc) | {t["tasks_seen"] for r in runs for t in r["tasks"]
                                      if t["tasks_seen"] in paper_acc or t["tasks_seen"] in finals})
    out = [f"## {dataset}: average accuracy of a real-data classifier on generated images (%)", ""]
    if dataset in PAPER_ACCURACY:
        paper = (f"(paper: {paper_dim}); {first.get('eval_samples')} generated images per class (paper: 6400); "
                 f"iterations per task below (paper: {PAPER_ITERS[dataset]}"
                 + (", about 8000 for its 10-task numbers per the original's issue #4" if dataset == "mnist" else "")
                 + "). **These are not the paper's setting**; the numbers in parentheses are the paper's.")
    else:
        paper = (f"; {first.get('eval_samples')} generated images per class; iterations per task below. The paper "
                 f"has no numbers for this dataset.")
    out.append(f"Our budget: data `{first.get('data_source')}`; model {model.get('arch')} width {model.get('dim')} "
               + paper.replace("; ", _training(first) + "; ", 1))
    out.append("")
    out.append("| run | strategy | tasks | iterations per task | evaluator | its accuracy on real images |")
    out.append("|---|---|---|---|---|---|")
    for s, title, r in cols:
        if r is not None:
            c = r.get("classifier", {})
            iters = f"{r.get('iters')}" + (" (one task of all classes)" if s == "joint" else "")
            out.append(f"| `{r['run']}` | {title} | {r['tasks'][-1]['tasks_seen']} ({', '.join(r['classes'])}) | "
                       f"{iters} | {c.get('arch')} `{c.get('path')}` | {_pct(c.get('test_accuracy'))} "
                       f"({c.get('test_split')}) |")
    out.append("")
    out.append("| | " + " | ".join(title for _, title, _ in cols) + " |")
    out.append("|---" * (len(cols) + 1) + "|")

    def ours_after(r, n):
        return next((t for t in r["tasks"] if t["tasks_seen"] == n), None) if r else None

    for n in counts:
        cells = []
        for s, _, r in cols:
            t = ours_after(r, n)
            cells.append(_cell(_pct(t["average"]) if t else None, paper_acc.get(n, {}).get(s)))
        out.append(f"| after {n} tasks | " + " | ".join(cells) + " |")
        # The same images scored by the second evaluator, and each class by the lower of the two.
        for key, label in (("second", "second evaluator"), ("both", "lower of the two per class")):
            cells = [_pct(t[key]["average"]) if (t := ours_after(r, n)) and key in t else "" for _, _, r in cols]
            if any(cells):
                out.append(f"| after {n} tasks, {label} | " + " | ".join(cells) + " |")
    for n in sorted(finals | set(PAPER_REVERSE.get(dataset, {}))):
        final = [(s, r if r and r["tasks"][-1]["tasks_seen"] == n else None) for s, _, r in cols]
        paper_rev = PAPER_REVERSE.get(dataset, {}).get(n, {})
        paper_fid = PAPER_INCEPTION_FID.get(dataset, {}).get(n, {})
        rows = {"reverse accuracy (%)": [_cell(_pct(r["reverse_accuracy"]["accuracy"]) if r else None,
                                               paper_rev.get(s)) for s, r in final],
                "FID, evaluator features": [_cell(_fid(r["fid"]) if r else None, None) for s, r in final],
                "FID, Inception": [_cell((_fid(r["inception_fid"]) or ("skipped" if paper_fid else None))
                                         if r else None, paper_fid.get(s)) for s, r in final]}
        for label, cells in rows.items():
            if any(cells):
                out.append(f"| {label}, after {n} tasks | " + " | ".join(cells) + " |")
    out.append("")
    second = next((r["second_classifier"] for r in runs if r.get("second_classifier")), None)
    out.append(f"Accuracy: {first.get('eval_samples')} generated images per class seen so far, scored by our "
               f"evaluator (the paper used {PAPER_CLASSIFIER.get(dataset, 'its own classifier')}), unweighted mean "
               f"over classes."
               + (f" Second evaluator: {second['arch']} `{second['path']}`, {_pct(second['test_accuracy'])}% on "
                  f"real {second['test_split']} images, scoring the same generated images." if second else "")
               + f" Reverse accuracy: a classifier trained on the final generator's images, tested on "
               f"real ones. FID with evaluator features is ours only and not comparable with the paper's Inception "
               f"FID.")
    return "\n".join(out)


def render(metrics: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for m in metrics:
        groups.setdefault(_budget_key(m), []).append(m)
    parts = ["# MeRGAN: our runs beside the paper (Wu et al., NeurIPS 2018, Tables 1 and 2)", "",
             "Each cell: our run (the paper's number). Empty: neither has it; — : we have no run for it."]
    for runs in groups.values():
        parts += ["", render_table(runs)]
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mergan.report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="evaluated run folders (or their metrics.json)")
    p.add_argument("--out", default=None, help="also write the Markdown to this file")
    args = p.parse_args(argv)
    try:
        runs = [load_metrics(r) for r in args.runs]
        for run, m in zip(args.runs, runs):   # a field of the wrong type: say which file, not a traceback
            try:
                render([m])
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
                raise ReportError(f"{run}: its metrics.json has a missing or malformed field ({type(e).__name__}: "
                                  f"{str(e)[:60]}); evaluate the run again: python train.py --test --out RUN") from e
        text = render(runs)
        if args.out:
            atomic_write_text(args.out, text)
    except (ReportError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
