"""Gradio demo of Memory Replay GANs: sequential fine-tuning forgets, MeRGAN remembers (issue #4).

    python demo_app.py                         # the runs shipped in assets/runs
    python demo_app.py --runs runs --port 7861 # your own runs (or MERGAN_RUNS=runs)

UI only: ``mergan.catalog`` loads every generator once at start through the package's one loader
(``mergan.load_generator``), and each is drawn with ``mergan.sample``. Runs (folders written by ``train.py``) that
share a dataset and a class order form one *experiment*, so SFT and MeRGAN are always compared on the same classes.
The views are plain functions of ``mergan.views`` (``side_by_side``, ``verdicts``, ``timeline``,
``lesson_frames``) and ``mergan.catalog.numbers`` that tests call directly; ``build_demo(runs_dir)`` wires them
into a page. Nothing is fetched from the network.
"""
from __future__ import annotations

import os

# Before gradio is imported: no version check, no telemetry, no Hub look-ups (Spaces and CI are offline-safe).
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_key, _value)

import argparse
import logging
import random
from pathlib import Path

import torch

from mergan.catalog import budget_note, curve_colors, discover, numbers
from mergan.views import (LIVE_UPDATES, MAX_SAMPLES, MAX_SEED, about_text, accuracy_frame, class_choices,
                          default_variant, examples_with_labels, lesson_frames, live_choices, live_pair,
                          side_by_side, task_choices, timeline, variant_choices, verdicts)

log = logging.getLogger("mergan.demo")

DEFAULT_RUNS = Path(__file__).resolve().parent / "assets" / "runs"  # the shipped runs, wherever the app starts

# Digits large enough to read; tables that scroll sideways on a phone instead of breaking numbers.
CSS = """
#sft-image img, #mergan-image img { image-rendering: pixelated; width: 100%; height: auto; }
#numbers-table table { display: block; overflow-x: auto; white-space: nowrap; }
/* One font with every glyph: the bundled semibold face lacks small letters' capitals (it drew "GᴀN"). */
.gradio-container, .gradio-container .prose, .gradio-container h1, .gradio-container h2, .gradio-container h3,
.gradio-container strong { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
sans-serif !important; }
"""


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
        variant0 = default_variant(exp)
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
                        # No toolbar: it would sit on the top row of digits (right-click saves the picture).
                        sft_img = gr.Image(sft0, show_label=False, type="pil", format="png", interactive=False,
                                           buttons=[], elem_id="sft-image")
                    with gr.Column(min_width=280):
                        mer_head = gr.Markdown(head0[1], elem_id="mergan-verdict")
                        mer_img = gr.Image(mer0, show_label=False, type="pil", format="png", interactive=False,
                                           buttons=[], elem_id="mergan-image")
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
                        dice = gr.Button("🎲 Random seed", elem_id="random-seed")
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                examples = examples_with_labels(exp)
                if examples:
                    gr.Examples([row for _, row in examples], [task_dd, class_dd, variant_dd], [sft_head, sft_img, mer_head, mer_img,
                                info_md], fn=lambda t, c, v: on_generate(exp.name, t, c, v, 16, 0),
                                run_on_click=True, cache_examples=False, label="Examples", elem_id="examples",
                                example_labels=[label for label, _ in examples])
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
                curve_plot = gr.LinePlot(curve, x="after task", y="accuracy (%)", color="strategy",
                                         color_map=curve_colors(exp), y_lim=[0, 100],
                                         title="Average accuracy over the classes seen", elem_id="numbers-plot",
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
                        with gr.Column(min_width=280):
                            gr.Markdown(f"### {exp.runs[live_pair(exp)[0]].info.short}")
                            live_sft = gr.Image(None, show_label=False, type="pil", format="png",
                                                interactive=False, buttons=[], elem_id="live-sft")
                        with gr.Column(min_width=280):
                            gr.Markdown(f"### {exp.runs[live_pair(exp)[1]].info.short}")
                            live_ra = gr.Image(None, show_label=False, type="pil", format="png",
                                               interactive=False, buttons=[], elem_id="live-ra")
                    live_md = gr.Markdown("", elem_id="live-status")
                    every = max(1, live_updates // 8)
                    lesson = live_go.click(lambda d: (yield from lesson_frames(exp, d, live_updates, every)), live_dd,
                                           [live_sft, live_ra, live_md],
                                           concurrency_limit=1, concurrency_id="live", api_name="teach")
                    live_stop.click(None, None, None, cancels=[lesson])
            with gr.Tab("About", id="about", elem_id="tab-about"):
                about_md = gr.Markdown(about_text(exp), elem_id="about")

        # The seed box is never an output of a redraw: Gradio holds an event's outputs static while it is pending,
        # which could drop what a visitor types there meanwhile. Only the dice button writes to it.
        def on_generate(name, task, class_name, variant, n, seed):
            try:
                seed = 0 if seed is None else seed
                e = catalog.get(name)
                a, b, info = side_by_side(e, task, class_name, variant, n, seed)
                ha, hb = verdicts(e, task, class_name, variant, seed)
                if a is None and b is None:
                    gr.Warning(info.replace("⚠️ ", "").replace("**", ""))
            except Exception as err:  # never a stack trace in the page; the server log has it
                log.exception("generation failed")
                a, b, info = None, None, f"⚠️ Generation failed ({type(err).__name__})."
                ha, hb = "", ""
            return ha, a, hb, b, info

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
            v = default_variant(e)
            return (gr.update(choices=task_choices(e), value=t),
                    gr.update(choices=class_choices(e, t), value=e.classes[0]),
                    gr.update(choices=vs, value=v), gr.update(choices=e.classes, value=e.classes[0]))

        side_inputs = [exp_dd, task_dd, class_dd, variant_dd, n_sl, seed_nb]
        side_outputs = [sft_head, sft_img, mer_head, mer_img, info_md]
        quiet = dict(api_visibility="private")
        go.click(on_generate, side_inputs, side_outputs, api_name="side_by_side")
        # Every control change draws again, so the pictures always answer what the controls say.
        task_dd.input(on_task, [exp_dd, task_dd, class_dd], class_dd, **quiet).then(
            on_generate, side_inputs, side_outputs, **quiet)
        dice.click(lambda: random.randint(0, MAX_SEED), None, seed_nb, api_name="random_seed").then(
            on_generate, side_inputs, side_outputs, **quiet)
        for control in (class_dd, variant_dd):
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
                   help="folder of train.py runs, or a Hub repository of them, owner/name[@revision], read from "
                        "huggingface_hub's cache (default assets/runs, or $MERGAN_RUNS)")
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
