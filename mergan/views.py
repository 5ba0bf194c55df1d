"""What the demo shows, as plain functions of an experiment (``mergan.catalog``) that return pictures, their
alternative text and text: the side-by-side comparison with each panel's verdict, the timeline of one class
across tasks, the examples, the numbers and the About text (the live lesson is ``mergan.lesson``).
``demo_app.py`` wires them into a Gradio page; tests call them directly.
"""
from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageDraw, ImageFont

from .catalog import (TRAIN_HINT, Experiment, Pictures, Run, accuracy_curves, budget_note, curve_colors, lowest_class,
                      metrics_of, metrics_problem, pictures_of, rel, verdict)
from .sampling import grid, sample
from .tables import comparison_rows, per_class_rows

MAX_SAMPLES = 64            # one forward call per class (mergan.sampling.CHUNK)
MAX_SEED = 2**31 - 1
PAPER = "https://arxiv.org/abs/1809.02058"


# ------------------------------------------------------------------------------------------------ pictures
def to_pil(images: torch.Tensor, nrow: int, target: int = 480, max_scale: int = 8) -> Image.Image:
    """Tile uint8 (N, C, H, W) images and upscale with nearest neighbour so 32x32 digits stay crisp."""
    g = grid(images, nrow=nrow).permute(1, 2, 0).numpy()   # make_grid repeats one channel into three
    pil = Image.fromarray(g[:, :, 0] if images.shape[1] == 1 else g)
    scale = max(1, min(max_scale, math.ceil(target / max(pil.size))))
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def noun(exp: Experiment | None) -> str:
    """What one class is called on the page: digits for the digit datasets, classes otherwise."""
    return "digit" if exp is not None and exp.dataset in ("mnist", "svhn") else "class"


# ------------------------------------------------------------------------------------------------ controls
def _task_label(exp: Experiment, t: int) -> str:
    return f"after learning {exp.classes[t]}"


def task_choices(exp: Experiment) -> list[tuple[str, int]]:
    """The generators of each task, named by the class that task learned (short enough for a phone)."""
    return [(exp.classes[t], t) for t in range(exp.n_tasks)]


def class_choices(exp: Experiment, task: int) -> list[tuple[str, str]]:
    """Class names; those a continual learner has not met by ``task`` are marked."""
    return [(c if i <= task else f"{c} (not learned yet)", c) for i, c in enumerate(exp.classes)]


def variant_choices(exp: Experiment) -> list[tuple[str, str]]:
    """What the strategy that forgets is compared with: MeRGAN's variants first, then the other continual
    strategies marked as the baselines they are (a strategy of one task has no per-task generators)."""
    found = [s for s in exp.strategies("mergan", "baseline") if not exp.runs[s].info.one_task]
    return [(exp.runs[s].info.title if exp.runs[s].info.role == "mergan" else f"{exp.runs[s].info.short} (baseline)", s)
            for s in found]


def default_variant(exp: Experiment) -> str | None:
    found = variant_choices(exp)
    return found[0][1] if found else None


def _short_name(exp: Experiment | None, strategy: str | None) -> str:
    run = exp.runs.get(strategy) if exp is not None and strategy else None
    return run.info.short if run else str(strategy)


# ------------------------------------------------------------------------------------------------ side by side
def reference(exp: Experiment | None) -> str | None:
    """The left panel's strategy: the forgetting one (SFT) where the experiment has it, else the upper bound or a
    baseline (an experiment of MeRGAN and joint training runs only, such as the shipped 10-task runs)."""
    if exp is None:
        return None
    return exp.first("lower bound") or exp.first("upper bound", "baseline")


def compare_label(exp: Experiment | None) -> str:
    """The label of the right panel's strategy picker: "Compare SFT with", or the left panel's strategy where the
    experiment has no SFT run ("Compare Joint with")."""
    left = reference(exp)
    return f"Compare {_short_name(exp, left) if left else 'SFT'} with"


def verdicts(exp: Experiment | None, task, class_name, variant=None, seed=0) -> tuple[str, str]:
    """A heading for each panel: the strategy, and what its generator draws when asked for the class, scored by
    the evaluator on 64 samples of this seed (the first ones are those shown)."""
    checked, error = _check(exp, task, class_name, 1, seed)
    learned = not error and checked[1] <= checked[0]
    heads = []
    for s in (reference(exp), variant or (default_variant(exp) if exp else None)):
        v = verdict(exp, s, checked[0], class_name, checked[3]) if learned and s else None
        heads.append(f"### {_short_name(exp, s)}" + (f"\n**{v}**" if v is not None else ""))
    return heads[0], heads[1]


def verdict_help(exp: Experiment | None) -> str:
    """The one line that says what "recognised" means where the verdicts appear ("" without an evaluator)."""
    ev = exp.evaluator if exp is not None else None
    if ev is None:
        return ""
    acc = ev.meta.get("test_accuracy")
    right = f", right on {100 * acc:.1f}% of real test {noun(exp)}s" if isinstance(acc, float) else ""
    return (f"*Recognised*: the share of 64 samples that a {noun(exp)} classifier (trained on real "
            f"{noun(exp)}s{right}) names as the {noun(exp)} asked for.")


def _check(exp: Experiment | None, task, class_name, n, seed, max_n: int = MAX_SAMPLES):
    """Validated (task, label, n, seed), or a message saying what is wrong."""
    if exp is None:
        return None, f"No runs loaded. {TRAIN_HINT}"
    try:
        task, n, seed = int(task), int(n), int(seed)
    except (TypeError, ValueError):
        return None, "Task, number of samples and seed must be whole numbers."
    if not 0 <= task < exp.n_tasks:
        return None, f"Task {task} is out of range: this experiment has tasks 0 to {exp.n_tasks - 1}."
    if class_name not in exp.classes:
        return None, (f"Class {class_name!r} is not in this experiment; its classes are "
                      f"{', '.join(exp.classes)}.")
    if not 1 <= n <= max_n:
        return None, f"Number of samples must be between 1 and {max_n}, got {n}."
    if not 0 <= seed <= MAX_SEED:
        return None, f"Seed must be between 0 and {MAX_SEED}, got {seed}."
    return (task, exp.classes.index(class_name), n, seed), None


def _draw(run: Run | None, task: int, label: int, n: int, seed: int):
    """uint8 samples of ``label`` from ``run`` after ``task``, or (None, why not)."""
    if run is None:
        return None, "no run of this strategy in the experiment"
    if task not in run.generators:
        if run.info.one_task:
            return None, f"{run.info.short} learns all classes at once: it exists only after the last task"
        return None, f"`{run.name}` has no loadable checkpoint for task {task}"
    return sample(run.generators[task], [label] * n, seed=seed), None


def side_by_side(exp: Experiment | None, task, class_name, variant=None, n=16, seed=0):
    """The forgetting strategy's (SFT's) and MeRGAN's samples of one class after one task, from the same noise.

    Returns ``(sft_image, mergan_image, info)``: PIL images (None where there is nothing to show) and a
    Markdown line that explains the result or what was wrong with the request.
    """
    checked, error = _check(exp, task, class_name, n, seed)
    if error:
        return None, None, f"⚠️ {error}"
    task, label, n, seed = checked
    variant = str(variant or default_variant(exp)).lower()
    lower = reference(exp)
    if label > task:
        return None, None, (f"⚠️ Class {class_name} is learned in task {label}; {_task_label(exp, task)} the "
                            f"generators have seen only {', '.join(exp.classes[: task + 1])}. Pick "
                            f"{exp.classes[label]} or later as the generators, or a learned class.")
    nrow = min(n, 8)
    out, notes = [], []
    for strategy in (lower, variant):
        images, why = _draw(exp.runs.get(strategy), task, label, n, seed)
        out.append(None if images is None else to_pil(images, nrow))
        if why:
            notes.append(f"⚠️ {_short_name(exp, strategy)}: {why}.")
    info = (f"Seed **{seed}**: {n} sample(s) of class **{class_name}** {_task_label(exp, task)}, the same noise for "
            f"{_short_name(exp, lower)} and {_short_name(exp, variant)}.")
    run = exp.runs.get(variant)
    if task > label and not notes and lower == exp.first("lower bound"):
        keeps = "replays it with its previous generator" if run and run.info.replays else "tries to keep it"
        info += (f" Class {class_name} was learned {task - label} task(s) ago: {_short_name(exp, lower)} has since "
                 f"been trained only on newer classes, {_short_name(exp, variant)} {keeps}.")
    if run and run.info.role != "mergan":
        info += f" {run.info.short} is a {run.info.about}."
    return out[0], out[1], " ".join([info] + notes)


@dataclass
class Comparison:
    """Everything the side-by-side shows for one request: each panel's heading, picture and alternative text."""
    heads: tuple[str, str]
    images: tuple[Image.Image | None, Image.Image | None]
    alts: tuple[str, str]
    info: str


def compare(exp: Experiment | None, task, class_name, variant=None, n=16, seed=0) -> Comparison:
    """``side_by_side`` and ``verdicts`` of one request, with text saying what each picture shows."""
    a, b, info = side_by_side(exp, task, class_name, variant, n, seed)
    heads = verdicts(exp, task, class_name, variant, seed)
    alts = []
    for image, strategy, head in ((a, reference(exp), heads[0]),
                                  (b, variant or (default_variant(exp) if exp else None), heads[1])):
        if image is None:
            alts.append("")
            continue
        said = head.split("\n**", 1)[1].rstrip("*") if "\n**" in head else ""
        alts.append(f"{n} samples drawn by {_short_name(exp, strategy)} {_task_label(exp, int(task))}, asked for "
                    f"{noun(exp)} {class_name} (seed {seed})" + (f": {said}." if said else "."))
    return Comparison(heads, (a, b), (alts[0], alts[1]), info)


# ------------------------------------------------------------------------------------------------ examples
def examples(exp: Experiment) -> list[tuple[str, tuple[int, str, str]]]:
    """One click away, each with the controls it sets (generators, class, comparison), drawn with the seed and
    number of samples in the boxes: forgetting (the first class after the last task), the class MeRGAN keeps
    worst, and a baseline asked for the newest class."""
    last, rows = exp.n_tasks - 1, []
    mergan, baseline = exp.first("mergan"), next(iter(s for _, s in variant_choices(exp)
                                                       if exp.runs[s].info.role == "baseline"), None)
    if exp.first("lower bound") is None or mergan is None or last < 1:
        return rows
    rows.append((f"Forgetting: {exp.classes[0]} {_task_label(exp, last)}", (last, exp.classes[0], mergan)))
    hard = lowest_class(exp, mergan)
    if hard is not None and hard != exp.classes[0]:
        rows.append((f"{exp.runs[mergan].info.short}'s hardest {noun(exp)}: {hard}", (last, hard, mergan)))
    if baseline is not None:
        rows.append((f"{exp.runs[baseline].info.short} asked for {exp.classes[last]}", (last, exp.classes[last],
                                                                                        baseline)))
    return rows


# ------------------------------------------------------------------------------------------------ timeline
def timeline(exp: Experiment | None, class_name, n=4, seed=0):
    """One class across every task: a row per strategy, a column per task. Returns ``(image, info)``."""
    checked, error = _check(exp, exp.n_tasks - 1 if exp else 0, class_name, n, seed, max_n=16)
    if error:
        return None, f"⚠️ {error}"
    _, label, n, seed = checked
    rows = exp.strategies()
    nrow = math.ceil(math.sqrt(n))
    cells = {}
    for s in rows:
        for t in range(exp.n_tasks):
            if label <= t or exp.runs[s].info.one_task:
                images, _ = _draw(exp.runs[s], t, label, n, seed)
                if images is not None:
                    cells[s, t] = to_pil(images, nrow, target=140, max_scale=4)
    cell_w = max((c.width for c in cells.values()), default=140)
    cell_h = max((c.height for c in cells.values()), default=140)
    pad, left, top = 6, 120, 44
    canvas = Image.new("RGB", (left + exp.n_tasks * (cell_w + pad) + pad, top + len(rows) * (cell_h + pad) + pad),
                       "white")
    draw, big, small = ImageDraw.Draw(canvas), font(14), font(11)
    for t in range(exp.n_tasks):
        x = left + pad + t * (cell_w + pad)
        draw.text((x, 6), "after learning", fill=(70, 70, 70), font=small)
        draw.text((x, 22), exp.classes[t], fill="black", font=big)
    for r, s in enumerate(rows):
        y = top + pad + r * (cell_h + pad)
        draw.text((6, y + cell_h // 2 - 8), exp.runs[s].info.short, fill="black", font=big)
        for t in range(exp.n_tasks):
            x = left + pad + t * (cell_w + pad)
            if (s, t) in cells:
                canvas.paste(cells[s, t].convert("RGB"), (x, y))
                continue
            draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=(235, 235, 235))
            one_task = exp.runs[s].info.one_task
            why = ("not learned\nyet" if label > t and not one_task else
                   "trained only\nafter the\nlast task" if one_task else "no\ncheckpoint")
            draw.multiline_text((x + 8, y + 8), why, fill=(80, 80, 80), font=small)
    info = (f"Class **{class_name}** (learned in task {label}), seed **{seed}**, {n} sample(s) per cell. Rows: "
            f"{', '.join(exp.runs[s].info.short for s in rows)}; columns: the generator after each task.")
    return canvas, info


def timeline_alt(exp: Experiment | None, class_name, n=4, seed=0) -> str:
    if exp is None:
        return ""
    return (f"{n} samples of {noun(exp)} {class_name} (seed {seed}) from each strategy's generator after learning "
            f"each of {', '.join(exp.classes)}: a row per strategy ({', '.join(exp.runs[s].info.short for s in exp.strategies())}), "
            f"a column per task, grey where the {noun(exp)} was not learned yet.")


# ------------------------------------------------------------------------------------------------ numbers
@dataclass
class NumbersView:
    """The numbers tab: tables as HTML (each metric explained in one line), the accuracy chart (PIL or None)
    with its alternative text, and each strategy's pictures of forgetting by its short name."""
    html: str
    chart: Image.Image | None = None
    chart_alt: str = ""
    pictures: dict[str, Pictures] = field(default_factory=dict)


def _table(header: list[str], rows: list[list[str]], caption: str, long_rows: bool = False) -> str:
    """An HTML table that fits a phone's width (``serving.CSS``: fixed layout, cells that wrap); ``long_rows``:
    the row names are phrases and get a third of the width."""
    e = html.escape
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in header)
    body = "".join("<tr>" + f'<th scope="row">{e(r[0])}</th>' + "".join(f"<td>{e(c)}</td>" for c in r[1:]) + "</tr>"
                   for r in rows)
    return (f'<table class="fit{" long-rows" if long_rows else ""}"><caption>{caption}</caption><thead><tr>{head}'
            f"</tr></thead><tbody>{body}</tbody></table>")


def metric_lines(exp: Experiment, runs: list) -> str:
    """One line per metric the tables show, as HTML."""
    first = runs[0]
    what = noun(exp)
    acc = f", {100 * first.main.test_accuracy:.1f}% right on real test {what}s" if first.main else ""
    second = next((m.second for m in runs if m.second is not None), None)
    lines = [f"<b>accuracy</b>: the share of generated images that the evaluator (a {what} classifier{acc}) "
             f"recognises as the {what} asked for, averaged over the {what}s learned so far (the paper's Table 1)",
             "<b>lowest class</b>: the " + what + " the last generator draws worst, by the lower of the two evaluators",
             "<b>reverse accuracy</b>: a classifier trained only on the last generator's images, tested on real "
             "test images: low when the images lack variety (in brackets: the same classifier trained on real "
             "images)",
             "<b>recall</b>: how much of the real images' variety the generated images cover, in the evaluator's "
             "features (Naeem et al. 2020; in brackets: real against real)",
             "<b>FID</b>: the Fréchet distance between the generated and the real images' features in the "
             "evaluator: lower is closer to real"]
    if second is not None:
        lines.insert(1, f"<b>second evaluator</b>: the same accuracy by another classifier ({html.escape(second.arch)}"
                        f", {100 * second.test_accuracy:.1f}%); <b>lower of the two</b>: each {what}'s lower score")
    return '<ul class="metric-help">' + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


def accuracy_chart(exp: Experiment | None) -> tuple[Image.Image | None, str]:
    """Every strategy's average accuracy after each task in one chart, the legend below it so that it fits a
    phone's width; and the same numbers as text. (None, "") when no run has metrics."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = accuracy_curves(exp)
    if not rows:
        return None, ""
    colors = curve_colors(exp)
    lines: dict[str, list] = {}
    for r in rows:
        lines.setdefault(r["strategy"], []).append((r["after task"], r["accuracy (%)"]))
    fig = Figure(figsize=(4.6, 3.7), dpi=160)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, points in lines.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.6, label=name, color=colors.get(name),
                linestyle="--" if name.endswith("(ceiling)") else "-")
    ax.set_xticks(range(exp.n_tasks), exp.classes)
    ax.set_xlabel(f"after learning {noun(exp)}", fontsize=9)
    ax.set_ylabel("accuracy (%)", fontsize=9)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    alt = (f"Average accuracy (%) over the {noun(exp)}s learned so far, after learning each of "
           f"{', '.join(exp.classes)}: " + "; ".join(
               f"{name} " + ", ".join(f"{y:.0f}" for _, y in sorted(points)) for name, points in lines.items()) + ".")
    return Image.open(buf).convert("RGB"), alt


def numbers(exp: Experiment | None, out_dir=None) -> NumbersView:
    """The experiment's evaluated runs side by side (``tables.comparison_rows``) and per class, the chart, and
    each run's pictures of forgetting (GIFs copied to ``out_dir`` when given)."""
    if exp is None:
        return NumbersView(f"<p>No runs loaded. {html.escape(TRAIN_HINT)}</p>")
    strategies = exp.strategies()
    metrics = {s: m for s in strategies if (m := metrics_of(exp.runs[s])) is not None}
    pictures = {}
    for s in strategies:
        found = pictures_of(exp.runs[s], out_dir)
        if found.grid is not None or found.gif is not None:
            pictures[exp.runs[s].info.short] = found
    notes = [metrics_problem(exp.runs[s]) for s in strategies if metrics_problem(exp.runs[s])]
    missing = [s for s in strategies if s not in metrics and not metrics_problem(exp.runs[s])]
    if missing:
        cmds = "; ".join(f"<code>python train.py --test --out {html.escape(rel(exp.runs[s].path))}</code>"
                         for s in missing)
        notes.append(f"No metrics.json yet for {', '.join(exp.runs[s].info.short for s in missing)}. Produce it "
                     f"with {cmds}.")
    parts = []
    if metrics:
        runs = list(metrics.values())
        header, rows = comparison_rows(runs)
        pc_header, pc_rows = per_class_rows(runs, exp.classes)
        pc_header = [h.split(": ")[0] for h in pc_header]   # "SFT: accuracy / recall": the caption says the rest
        parts += [metric_lines(exp, runs),
                  _table(pc_header, pc_rows, "Each class after the last task: accuracy (%, the lower of the two "
                                             "evaluators) / recall"),
                  "<details><summary>Every number: accuracy after each task by each evaluator, the lowest class, "
                  "variety and FID</summary>"
                  + _table(header, rows, "Average accuracy (%) of generated images over the classes seen so far, and "
                                         "the variety of the last generators", long_rows=True) + "</details>"]
    parts += [f'<p class="note">{n if n.startswith("No metrics") else html.escape(n)}</p>' for n in notes]
    chart, alt = accuracy_chart(exp)
    return NumbersView('<div class="numbers">' + "\n".join(parts) + "</div>", chart, alt, pictures)


# ------------------------------------------------------------------------------------------------ about
def about_text(exp: Experiment) -> str:
    """What the visitor is looking at: the paper, each strategy in one line, how these generators were made."""
    lines = [f"**The paper**: Chenshen Wu et al., *Memory Replay GANs: learning to generate images from new categories "
             f"without forgetting*, NeurIPS 2018 ([arXiv]({PAPER})). A conditional GAN learns one class per task and "
             f"never sees an old class's images again.", "", "**The strategies shown**:", ""]
    lines += [f"- **{exp.runs[s].info.short}**: {exp.runs[s].info.about}" for s in exp.strategies()]
    lines += ["", budget_note(exp).strip("*"), "",
              f"**The numbers**: a {noun(exp)} classifier trained on real {noun(exp)}s scores generated images; "
              f"*accuracy* is the share it recognises as the class that was asked for, averaged over the classes "
              f"learned so far (the paper's Table 1 metric). The verdict above each picture scores 64 images of the "
              f"chosen seed, of which the pictures show the first."]
    return "\n".join(lines)
