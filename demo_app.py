"""Gradio demo of Memory Replay GANs: sequential fine-tuning forgets, MeRGAN remembers (issue #4).

    python demo_app.py                         # the runs shipped in assets/runs
    python demo_app.py --runs runs --port 7861 # your own runs (or MERGAN_RUNS=runs)

UI only: ``mergan.catalog`` loads every generator once at start through the package's one loader
(``mergan.load_generator``), and each is drawn with ``mergan.sample``. Runs (folders written by ``train.py``) that
share a dataset and a class order form one *experiment*, so SFT and MeRGAN are always compared on the same classes.
The views are plain functions (``side_by_side``, ``timeline``, ``numbers``) that tests call directly;
``build_demo(runs_dir)`` wires them into a page. Nothing is fetched from the network.
"""
from __future__ import annotations

import os

# Before gradio is imported: no version check, no telemetry, no Hub look-ups (Spaces and CI are offline-safe).
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_key, _value)

import argparse
import logging
import math
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from mergan import sample
from mergan.catalog import (TRAIN_HINT, Experiment, Run, accuracy_curves, budget_note, discover, numbers,
                            verdict)
from mergan.naming import MERGAN, TIMELINE_ORDER, about, ordered, short, title
from mergan.sampling import grid

log = logging.getLogger("mergan.demo")

DEFAULT_RUNS = Path(__file__).resolve().parent / "assets" / "runs"  # the shipped runs, wherever the app starts

MAX_SAMPLES = 64            # one forward call per class (mergan.sampling.CHUNK)
MAX_SEED = 2**31 - 1
PAPER = "https://arxiv.org/abs/1809.02058"
# Forgetting in red, MeRGAN in blues and greens, the baselines in greys, the ceiling dashed-looking grey.
CURVE_COLORS = {"SFT": "#d62728", "MeRGAN-RA": "#1f77b4", "MeRGAN-JTR": "#2ca02c", "EWC": "#9467bd",
                "DGR": "#8c564b", "Joint (ceiling)": "#7f7f7f"}
# Digits large enough to read; tables that scroll sideways on a phone instead of breaking numbers.
CSS = """
#sft-image img, #mergan-image img { image-rendering: pixelated; width: 100%; height: auto; }
#numbers-table table { display: block; overflow-x: auto; white-space: nowrap; }
/* One font with every glyph: the bundled semibold face lacks small letters' capitals (it drew "GᴀN"). */
.gradio-container, .gradio-container .prose, .gradio-container h1, .gradio-container h2, .gradio-container h3,
.gradio-container strong { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
sans-serif !important; }
"""


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
    """What SFT is compared with: MeRGAN's variants first, then the other continual strategies marked as the
    baselines they are (joint has no per-task generators)."""
    found = [s for s in ordered(exp.runs, TIMELINE_ORDER) if s not in ("sft", "joint")]
    return ([(title(s), s) for s in found if s in MERGAN]
            + [(f"{short(s)} (baseline)", s) for s in found if s not in MERGAN])


def verdicts(exp: Experiment | None, task, class_name, variant="ra", seed=0) -> tuple[str, str]:
    """A heading for each panel: the strategy, and what its generator draws when asked for the class, scored by
    the evaluator on 64 samples of this seed (the first ones are those shown)."""
    heads = []
    for s in ("sft", str(variant).lower()):
        head = f"### {short(s)}"
        checked, error = _check(exp, task, class_name, 1, seed)
        if not error and checked[1] <= checked[0]:
            v = verdict(exp, s, checked[0], class_name, checked[3])
            if v is not None:
                head += f"\n**{v}**"
        heads.append(head)
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
        if run.strategy == "joint":
            return None, "joint training learns all classes at once: it exists only after the last task"
        return None, f"`{run.name}` has no loadable checkpoint for task {task}"
    return sample(run.generators[task], [label] * n, seed=seed), None


def side_by_side(exp: Experiment | None, task, class_name, variant="ra", n=16, seed=0):
    """SFT's and MeRGAN's samples of one class after one task, from the same noise.

    Returns ``(sft_image, mergan_image, info)``: PIL images (None where there is nothing to show) and a
    Markdown line that explains the result or what was wrong with the request.
    """
    checked, error = _check(exp, task, class_name, n, seed)
    if error:
        return None, None, f"⚠️ {error}"
    task, label, n, seed = checked
    variant = str(variant).lower()
    if label > task:
        return None, None, (f"⚠️ Class {class_name} is learned in task {label}; after task {task} the generators "
                            f"have seen only {', '.join(exp.classes[: task + 1])}. Pick task {label} or later, or "
                            f"a learned class.")
    nrow = min(n, 8)
    out, notes = [], []
    for strategy in ("sft", variant):
        images, why = _draw(exp.runs.get(strategy), task, label, n, seed)
        out.append(None if images is None else to_pil(images, nrow))
        if why:
            notes.append(f"⚠️ {short(strategy)}: {why}.")
    info = (f"Seed **{seed}**: {n} sample(s) of class **{class_name}** {_task_label(exp, task)}, the same noise for "
            f"{short('sft')} and {short(variant)}.")
    if task > label and not notes:
        keeps = "replays it with its previous generator" if variant in MERGAN else "tries to keep it"
        info += (f" Class {class_name} was learned {task - label} task(s) ago: SFT has since been trained only on "
                 f"newer classes, {short(variant)} {keeps}.")
    if variant not in MERGAN and about(variant):
        info += f" {short(variant)} is a {about(variant)}."
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
    lines += [f"- **{short(s)}**: {about(s)}" for s in ordered(exp.runs, TIMELINE_ORDER)]
    lines += ["", budget_note(exp).strip("*"), "",
              "**The numbers**: a digit classifier trained on real digits (98% on real test digits) scores "
              "generated images; *accuracy* is the share it recognises as the class that was asked for, averaged "
              "over the classes learned so far (the paper's Table 1 metric). The verdict above each picture "
              "scores 64 images of the chosen seed, of which the pictures show the first."]
    return "\n".join(lines)


def examples_with_labels(exp: Experiment) -> list[tuple[str, list]]:
    """One click away: forgetting (the first class after the last task), the class MeRGAN keeps worst, and a
    baseline asked for the newest class."""
    from mergan.catalog import lowest_class

    last, rows = exp.n_tasks - 1, []
    if not ({"sft", "ra"} <= set(exp.runs)) or last < 1:
        return rows
    rows.append((f"Forgetting: class {exp.classes[0]} after task {last}", [last, exp.classes[0], "ra"]))
    hard = lowest_class(exp, "ra")
    if hard is not None and hard != exp.classes[0]:
        rows.append((f"MeRGAN-RA's hardest class: {hard}", [last, hard, "ra"]))
    if "ewc" in exp.runs:
        rows.append((f"EWC asked for {exp.classes[last]}", [last, exp.classes[last], "ewc"]))
    return rows


def example_rows(exp: Experiment) -> list[list]:
    return [row for _, row in examples_with_labels(exp)]


LIVE_UPDATES, LIVE_EVERY = 200, 25   # about half a minute for both on 2 free cores


def live_choices(exp: Experiment | None) -> list[str]:
    """Digits the experiment has not learned, if both its SFT and RA runs can keep learning (``mergan.live``)."""
    from mergan.live import LIVE_FILE

    if exp is None or exp.dataset != "mnist" or not all(
            s in exp.runs and (exp.runs[s].path / LIVE_FILE).is_file() for s in ("sft", "ra")):
        return []
    return [d for d in map(str, range(10)) if d not in exp.classes]


def lesson_frames(exp: Experiment, digit: str, updates: int = LIVE_UPDATES, every: int = LIVE_EVERY):
    """The live tab: SFT and MeRGAN-RA learn ``digit`` side by side; yields (SFT grid, RA grid, status) after
    every ``every`` updates of each. Closing the iterator (Stop, or the visitor leaving) stops both."""
    from mergan.live import teach

    if digit not in live_choices(exp):
        yield None, None, f"⚠️ Pick a digit the runs have not learned: {', '.join(live_choices(exp))}."
        return
    import time

    lessons = [teach(exp.runs[s].path, digit, updates=updates, every=every) for s in ("sft", "ra")]
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
    rows = ordered(exp.runs, TIMELINE_ORDER)
    nrow = math.ceil(math.sqrt(n))
    cells = {}
    for s in rows:
        for t in range(exp.n_tasks):
            if label <= t or s == "joint":
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
        draw.text((6, y + cell_h // 2 - 8), short(s), fill="black", font=font)
        for t in range(exp.n_tasks):
            x = left + pad + t * (cell_w + pad)
            if (s, t) in cells:
                canvas.paste(cells[s, t].convert("RGB"), (x, y))
                continue
            draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=(235, 235, 235))
            why = ("not learned\nyet" if label > t and s != "joint" else
                   "trained only\nafter the\nlast task" if s == "joint" else "no\ncheckpoint")
            draw.multiline_text((x + 8, y + 8), why, fill=(110, 110, 110), font=small)
    info = (f"Class **{class_name}** (learned in task {label}), seed **{seed}**, {n} sample(s) per cell. Rows: "
            f"{', '.join(short(s) for s in rows)}; columns: the generator after each task.")
    return canvas, info


# ---------------------------------------------------------------------------------------------------- page
def build_demo(runs_dir: str | Path = DEFAULT_RUNS, live_updates: int = LIVE_UPDATES):
    """The Gradio page over the runs in ``runs_dir``; generators are loaded here, once. ``live_updates``: the
    updates of each lesson in the live tab."""
    import gradio as gr

    # These generators are small: one thread is fastest, and on a busy CPU more threads only spin-wait
    # (measured on 2 shared cores: 40 ms per click with one thread, up to 1 s with two).
    torch.set_num_threads(1)
    catalog = discover(runs_dir)
    for m in catalog.messages:
        log.warning(m)
    status_text = "\n".join(f"- {m}" for m in catalog.messages)

    # Files the app writes (generated images) are deleted hourly once an hour old, and all at shutdown.
    with gr.Blocks(title="MeRGAN: Memory Replay GANs", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Memory Replay GANs: learning new digits without forgetting old ones\n"
                    "Each generator below learned the digits one at a time, never seeing an old digit's data "
                    "again. Left (top on a phone): plain fine-tuning (**SFT**), which forgets; right (below): "
                    "**MeRGAN** (Wu et al., NeurIPS 2018), which replays what it drew before, and remembers.",
                    elem_id="intro")
        if not catalog.experiments:   # still a page, saying why and how to get generators
            gr.Markdown(f"### No generators to show\n{status_text}", elem_id="status")
            return demo
        gr.Markdown(status_text, elem_id="status", visible=bool(status_text))

        exp = catalog.experiments[0]
        last = exp.n_tasks - 1
        variants = variant_choices(exp)
        variant0 = "ra" if "ra" in exp.runs else (variants[0][1] if variants else "ra")
        sft0, mer0, info0 = side_by_side(exp, last, exp.classes[0], variant0, 16, 0)
        head0 = verdicts(exp, last, exp.classes[0], variant0, 0)
        tl0, tl_info0 = timeline(exp, exp.classes[0], 4, 0)
        num0, plots0 = numbers(exp)

        exp_dd = gr.Dropdown([e.name for e in catalog.experiments], value=exp.name, label="Experiment",
                             elem_id="experiment", visible=len(catalog.experiments) > 1)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Side by side", id="side", elem_id="tab-side"):
                with gr.Row():
                    with gr.Column(min_width=280):
                        sft_head = gr.Markdown(head0[0], elem_id="sft-verdict")
                        sft_img = gr.Image(sft0, show_label=False, type="pil", format="png", interactive=False,
                                           buttons=["download", "fullscreen"], elem_id="sft-image")
                    with gr.Column(min_width=280):
                        mer_head = gr.Markdown(head0[1], elem_id="mergan-verdict")
                        mer_img = gr.Image(mer0, show_label=False, type="pil", format="png", interactive=False,
                                           buttons=["download", "fullscreen"], elem_id="mergan-image")
                info_md = gr.Markdown(info0, elem_id="info")
                with gr.Row():
                    task_dd = gr.Dropdown(task_choices(exp), value=last, label="Generator", elem_id="task")
                    class_dd = gr.Dropdown(class_choices(exp, last), value=exp.classes[0], label="Asked for class",
                                           elem_id="class")
                    variant_dd = gr.Dropdown(variants, value=variant0 if variants else None, label="Compare SFT with",
                                             elem_id="variant")
                with gr.Accordion("Samples and seed", open=False, elem_id="advanced"):
                    with gr.Row():
                        n_sl = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples", elem_id="n")
                        # No minimum/maximum here: the app's own check answers a bad seed in one line.
                        seed_nb = gr.Number(0, precision=0, label="Seed", elem_id="seed")
                        rand_cb = gr.Checkbox(False, label="Randomize seed", elem_id="randomize")
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                examples = example_rows(exp)
                if examples:
                    gr.Examples(examples, [task_dd, class_dd, variant_dd], [sft_head, sft_img, mer_head, mer_img,
                                info_md], fn=lambda t, c, v: on_generate(exp.name, t, c, v, 16, 0, False)[:5],
                                run_on_click=True, cache_examples=False, label="Examples", elem_id="examples",
                                example_labels=[label for label, _ in examples_with_labels(exp)])
                budget_md = gr.Markdown(budget_note(exp), elem_id="budget")
            with gr.Tab("Timeline", id="timeline", elem_id="tab-timeline"):
                with gr.Row():
                    tl_class = gr.Dropdown(exp.classes, value=exp.classes[0], label="Class",
                                           elem_id="timeline-class")
                    tl_n = gr.Slider(1, 16, value=4, step=1, label="Samples per cell", elem_id="timeline-n")
                    tl_seed = gr.Number(0, precision=0, label="Seed", elem_id="timeline-seed")
                    tl_go = gr.Button("Show timeline", variant="primary", elem_id="timeline-generate")
                tl_img = gr.Image(tl0, label="One class across tasks", type="pil", format="png",
                                  interactive=False, buttons=["download", "fullscreen"], elem_id="timeline-image")
                tl_md = gr.Markdown(tl_info0, elem_id="timeline-info")
            with gr.Tab("Numbers", id="numbers", elem_id="tab-numbers"):
                curve = accuracy_frame(exp)
                curve_plot = gr.LinePlot(curve, x="after task", y="accuracy (%)", color="strategy", color_map=CURVE_COLORS,
                            y_lim=[0, 100], title="Average accuracy over the classes seen", elem_id="numbers-plot",
                            visible=curve is not None, x_axis_labels_visible=True, height=320)
                num_md = gr.Markdown(num0, elem_id="numbers-table")
                plots = gr.Gallery(plots0, label="Forgetting, class by class (rows: classes, columns: tasks)",
                                   elem_id="numbers-plots", visible=bool(plots0), columns=3, height="auto",
                                   object_fit="contain", format="png", interactive=False, preview=False,
                                   buttons=["download", "fullscreen"])
            if live_choices(exp):
                with gr.Tab("Teach it a new digit", id="live", elem_id="tab-live"):
                    gr.Markdown(f"Both generators after the last task learn one more digit, live, on this machine's "
                                f"CPU: {live_updates} updates each with their own strategy. Watch the old digits: "
                                f"SFT overwrites them, MeRGAN-RA keeps them. One lesson at a time; others queue.",
                                elem_id="live-intro")
                    with gr.Row():
                        live_dd = gr.Dropdown(live_choices(exp), value=live_choices(exp)[0], label="New digit",
                                              elem_id="live-class")
                        live_go = gr.Button("Teach", variant="primary", elem_id="live-go")
                        live_stop = gr.Button("Stop", elem_id="live-stop")
                    with gr.Row():
                        live_sft = gr.Image(None, label="SFT", type="pil", format="png", interactive=False,
                                            buttons=["download"], elem_id="live-sft")
                        live_ra = gr.Image(None, label="MeRGAN-RA", type="pil", format="png", interactive=False,
                                           buttons=["download"], elem_id="live-ra")
                    live_md = gr.Markdown("", elem_id="live-status")
                    every = max(1, live_updates // 8)
                    lesson = live_go.click(lambda d: (yield from lesson_frames(exp, d, live_updates, every)), live_dd,
                                           [live_sft, live_ra, live_md],
                                           concurrency_limit=1, concurrency_id="live", api_name="teach")
                    live_stop.click(None, None, None, cancels=[lesson])
            with gr.Tab("About", id="about", elem_id="tab-about"):
                about_md = gr.Markdown(about_text(exp), elem_id="about")

        def on_generate(name, task, class_name, variant, n, seed, randomize):
            try:
                if randomize or seed is None:
                    seed = random.randint(0, MAX_SEED) if randomize else 0
                e = catalog.get(name)
                a, b, info = side_by_side(e, task, class_name, variant, n, seed)
                ha, hb = verdicts(e, task, class_name, variant, seed)
                if a is None and b is None:
                    gr.Warning(info.replace("⚠️ ", "").replace("**", ""))
            except Exception as err:  # never a stack trace in the page; the server log has it
                log.exception("generation failed")
                a, b, info = None, None, f"⚠️ Generation failed ({type(err).__name__})."
                ha, hb = "", ""
            # The seed box changes only to show a randomized seed: never over what the visitor is typing.
            return ha, a, hb, b, info, seed if randomize else gr.skip()

        def on_timeline(name, class_name, n, seed):
            try:
                img, info = timeline(catalog.get(name), class_name, n, 0 if seed is None else seed)
            except Exception as err:
                log.exception("timeline failed")
                img, info = None, f"⚠️ Timeline failed ({type(err).__name__})."
            return img, info

        def on_numbers(name):
            e = catalog.get(name)
            md, p = numbers(e)
            frame = accuracy_frame(e)
            return (gr.update(value=frame, visible=frame is not None), md, gr.update(value=p, visible=bool(p)),
                    budget_note(e) if e else "", about_text(e) if e else "")

        def on_task(name, task, class_name):
            e = catalog.get(name)
            if e is None or task is None:
                return gr.update()
            return gr.update(choices=class_choices(e, int(task)), value=class_name)

        def on_experiment(name):
            e = catalog.get(name)
            t = e.n_tasks - 1
            vs = variant_choices(e)
            v = "ra" if "ra" in e.runs else (vs[0][1] if vs else "ra")
            return (gr.update(choices=task_choices(e), value=t),
                    gr.update(choices=class_choices(e, t), value=e.classes[0]),
                    gr.update(choices=vs, value=v), gr.update(choices=e.classes, value=e.classes[0]))

        side_inputs = [exp_dd, task_dd, class_dd, variant_dd, n_sl, seed_nb, rand_cb]
        side_outputs = [sft_head, sft_img, mer_head, mer_img, info_md, seed_nb]
        quiet = dict(api_visibility="private")
        go.click(on_generate, side_inputs, side_outputs, api_name="side_by_side")
        # Every control change draws again, so the pictures always answer what the controls say.
        task_dd.input(on_task, [exp_dd, task_dd, class_dd], class_dd, **quiet).then(
            on_generate, side_inputs, side_outputs, **quiet)
        for control in (class_dd, variant_dd, rand_cb):
            control.input(on_generate, side_inputs, side_outputs, **quiet)
        n_sl.release(on_generate, side_inputs, side_outputs, **quiet)
        seed_nb.submit(on_generate, side_inputs, side_outputs, **quiet)
        tl_go.click(on_timeline, [exp_dd, tl_class, tl_n, tl_seed], [tl_img, tl_md], api_name="timeline")
        tl_class.input(on_timeline, [exp_dd, tl_class, tl_n, tl_seed], [tl_img, tl_md], **quiet)
        tl_n.release(on_timeline, [exp_dd, tl_class, tl_n, tl_seed], [tl_img, tl_md], **quiet)
        tl_seed.submit(on_timeline, [exp_dd, tl_class, tl_n, tl_seed], [tl_img, tl_md], **quiet)
        exp_dd.input(on_experiment, exp_dd, [task_dd, class_dd, variant_dd, tl_class], **quiet).then(
            on_generate, side_inputs, side_outputs, **quiet).then(
            on_timeline, [exp_dd, tl_class, tl_n, tl_seed], [tl_img, tl_md], **quiet).then(
            on_numbers, exp_dd, [curve_plot, num_md, plots, budget_md, about_md], **quiet)
    return demo


MAX_UPLOAD = "1mb"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=os.environ.get("MERGAN_RUNS", str(DEFAULT_RUNS)),
                   help="folder of train.py runs (default assets/runs, or $MERGAN_RUNS)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0 to serve others; Spaces set GRADIO_SERVER_NAME)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # gradio's own start-up probes
    # The app takes no uploads; the limit caps what the upload route accepts from anyone.
    build_demo(args.runs).launch(server_name=args.host, server_port=args.port, ssr_mode=False, share=False,
                                 max_file_size=MAX_UPLOAD, css=CSS)


if __name__ == "__main__":
    main()
