"""What the demo shows, as plain functions of an experiment (``mergan.catalog``) that return pictures and
text: the side-by-side comparison with each panel's verdict, the timeline of one class across tasks, the
examples, the About text and the live lesson. ``demo_app.py`` wires them into a Gradio page; tests call them
directly.
"""
from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageFont

from .catalog import TRAIN_HINT, Experiment, Run, accuracy_curves, budget_note, lowest_class, verdict
from .sampling import grid, sample

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


def _task_label(exp: Experiment, t: int) -> str:
    return f"after task {t} (learned {exp.classes[t]})"


def task_choices(exp: Experiment) -> list[tuple[str, int]]:
    return [(_task_label(exp, t), t) for t in range(exp.n_tasks)]


def class_choices(exp: Experiment, task: int) -> list[tuple[str, str]]:
    """Class names; those a continual learner has not met by ``task`` are marked."""
    return [(c if i <= task else f"{c} (not learned yet after task {task})", c) for i, c in enumerate(exp.classes)]


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


def verdicts(exp: Experiment | None, task, class_name, variant=None, seed=0) -> tuple[str, str]:
    """A heading for each panel: the strategy, and what its generator draws when asked for the class, scored by
    the evaluator on 64 samples of this seed (the first ones are those shown)."""
    checked, error = _check(exp, task, class_name, 1, seed)
    learned = not error and checked[1] <= checked[0]
    heads = []
    for s in (exp.first("lower bound") if exp else None, variant or (default_variant(exp) if exp else None)):
        v = verdict(exp, s, checked[0], class_name, checked[3]) if learned and s else None
        heads.append(f"### {_short_name(exp, s)}" + (f"\n**{v}**" if v is not None else ""))
    return heads[0], heads[1]


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
    lower = exp.first("lower bound")
    if label > task:
        return None, None, (f"⚠️ Class {class_name} is learned in task {label}; after task {task} the generators "
                            f"have seen only {', '.join(exp.classes[: task + 1])}. Pick task {label} or later, or "
                            f"a learned class.")
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
    if task > label and not notes:
        keeps = "replays it with its previous generator" if run and run.info.replays else "tries to keep it"
        info += (f" Class {class_name} was learned {task - label} task(s) ago: {_short_name(exp, lower)} has since "
                 f"been trained only on newer classes, {_short_name(exp, variant)} {keeps}.")
    if run and run.info.role != "mergan":
        info += f" {run.info.short} is a {run.info.about}."
    return out[0], out[1], " ".join([info] + notes)


def accuracy_frame(exp: Experiment | None):
    """The Numbers tab's plot data (a pandas DataFrame), or None when no run has metrics."""
    import pandas as pd

    rows = accuracy_curves(exp)
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    width = len(str(exp.n_tasks - 1))   # tasks as labels, not a continuous axis with ticks at 0.1
    frame["after task"] = frame["after task"].map(lambda t: str(t).zfill(width))
    return frame


def about_text(exp: Experiment) -> str:
    """What the visitor is looking at: the paper, each strategy in one line, how these generators were made."""
    lines = [f"**The paper**: Chenshen Wu et al., *Memory Replay GANs: learning to generate images from new categories "
             f"without forgetting*, NeurIPS 2018 ([arXiv]({PAPER})). A conditional GAN learns one class per task and "
             f"never sees an old class's images again.", "", "**The strategies shown**:", ""]
    lines += [f"- **{exp.runs[s].info.short}**: {exp.runs[s].info.about}" for s in exp.strategies()]
    lines += ["", budget_note(exp).strip("*"), "",
              "**The numbers**: a digit classifier trained on real digits (98% on real test digits) scores "
              "generated images; *accuracy* is the share it recognises as the class that was asked for, averaged "
              "over the classes learned so far (the paper's Table 1 metric). The verdict above each picture "
              "scores 64 images of the chosen seed, of which the pictures show the first."]
    return "\n".join(lines)


def examples_with_labels(exp: Experiment) -> list[tuple[str, list]]:
    """One click away: forgetting (the first class after the last task), the class MeRGAN keeps worst, and a
    baseline asked for the newest class."""
    last, rows = exp.n_tasks - 1, []
    mergan, baseline = exp.first("mergan"), next(iter(s for s, _ in variant_choices(exp)
                                                       if exp.runs[s].info.role == "baseline"), None)
    if exp.first("lower bound") is None or mergan is None or last < 1:
        return rows
    rows.append((f"Forgetting: class {exp.classes[0]} after task {last}", [last, exp.classes[0], mergan]))
    hard = lowest_class(exp, mergan)
    if hard is not None and hard != exp.classes[0]:
        rows.append((f"{exp.runs[mergan].info.short}'s hardest class: {hard}", [last, hard, mergan]))
    if baseline is not None:
        rows.append((f"{exp.runs[baseline].info.short} asked for {exp.classes[last]}", [last, exp.classes[last],
                                                                                        baseline]))
    return rows


LIVE_UPDATES, LIVE_EVERY = 200, 25   # about half a minute for both on 2 free cores


def live_pair(exp: Experiment | None) -> tuple[str, str] | None:
    """The strategies the live lesson sets side by side (the one that forgets, and MeRGAN), if both runs can
    keep learning (their ``live.safetensors``)."""
    if exp is None:
        return None
    ready = [s for s in exp.strategies("lower bound", "mergan") if exp.runs[s].folder.live_path.is_file()]
    lower = next((s for s in ready if exp.runs[s].info.role == "lower bound"), None)
    mergan = next((s for s in ready if exp.runs[s].info.role == "mergan"), None)
    return (lower, mergan) if lower and mergan else None


def live_choices(exp: Experiment | None) -> list[str]:
    """Digits the experiment has not learned, if its runs can keep learning (``live_pair``)."""
    if exp is None or exp.dataset != "mnist" or live_pair(exp) is None:
        return []
    return [d for d in map(str, range(10)) if d not in exp.classes]


def lesson_frames(exp: Experiment, digit: str, updates: int = LIVE_UPDATES, every: int = LIVE_EVERY):
    """The live tab: SFT and MeRGAN-RA learn ``digit`` side by side; yields (SFT grid, RA grid, status) after
    every ``every`` updates of each. Closing the iterator (Stop, or the visitor leaving) stops both."""
    from .live import teach

    if digit not in live_choices(exp):
        yield None, None, f"⚠️ Pick a digit the runs have not learned: {', '.join(live_choices(exp))}."
        return
    import time

    lessons = [teach(exp.runs[s].path, digit, updates=updates, every=every) for s in live_pair(exp)]
    start = time.perf_counter()
    try:
        for sft, ra in zip(*lessons):
            pics = [to_pil(step.grid[None], 1, target=420, max_scale=3) for step in (sft, ra)]
            done = sft.updates == updates
            yield pics[0], pics[1], (
                f"{'Done' if done else 'Learning'}: **{sft.updates}** of {updates} updates on digit **{digit}** "
                f"({time.perf_counter() - start:.0f} s). Rows: digits {', '.join(exp.classes)}, then {digit}.")
    finally:
        for lesson in lessons:
            lesson.close()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


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
    draw, font, small = ImageDraw.Draw(canvas), _font(14), _font(11)
    for t in range(exp.n_tasks):
        x = left + pad + t * (cell_w + pad)
        draw.text((x, 6), f"after task {t}", fill="black", font=font)
        draw.text((x, 24), f"learned {exp.classes[t]}", fill=(90, 90, 90), font=small)
    for r, s in enumerate(rows):
        y = top + pad + r * (cell_h + pad)
        draw.text((6, y + cell_h // 2 - 8), exp.runs[s].info.short, fill="black", font=font)
        for t in range(exp.n_tasks):
            x = left + pad + t * (cell_w + pad)
            if (s, t) in cells:
                canvas.paste(cells[s, t].convert("RGB"), (x, y))
                continue
            draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=(235, 235, 235))
            one_task = exp.runs[s].info.one_task
            why = ("not learned\nyet" if label > t and not one_task else
                   "trained only\nafter the\nlast task" if one_task else "no\ncheckpoint")
            draw.multiline_text((x + 8, y + 8), why, fill=(110, 110, 110), font=small)
    info = (f"Class **{class_name}** (learned in task {label}), seed **{seed}**, {n} sample(s) per cell. Rows: "
            f"{', '.join(exp.runs[s].info.short for s in rows)}; columns: the generator after each task.")
    return canvas, info
