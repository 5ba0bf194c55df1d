"""Gradio demo of Memory Replay GANs: sequential fine-tuning forgets, MeRGAN remembers.

    python demo_app.py                         # the runs shipped in assets/runs
    python demo_app.py --runs runs --port 7861 # your own runs (or MERGAN_RUNS=runs)

UI only: ``mergan.catalog`` loads every generator once at start through the package's one loader, and the views
are plain functions that tests call directly: ``mergan.views`` (``compare``, ``timeline``, ``examples``,
``numbers``) and ``mergan.lesson`` (``lesson_frames``, the live lesson, which trains only through
``mergan.live.teach``). ``build_demo(runs_dir)`` wires them into a page and ``serve`` launches it with the
server's limits (``mergan.serving``). Runs that share a dataset and a class order form one *experiment*, so SFT
and MeRGAN are always compared on the same classes. Nothing is fetched from the network.
"""

import os

# Before gradio is imported: no version check, no telemetry, no Hub look-ups (Spaces and CI are offline-safe).
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_key, _value)

import argparse
import dataclasses
import logging
import random
from pathlib import Path

import torch

from mergan.catalog import budget_note, discover
from mergan.lesson import LIVE_EVERY, LIVE_UPDATES, Turns, lesson_choices, lesson_frames, lesson_plan, stopped_frame
from mergan.serving import CSS, NewestOnly, launch_kwargs, serving_folder
from mergan.views import (MAX_SAMPLES, MAX_SEED, Comparison, about_text, class_choices, compare, compare_label,
                          default_variant, examples, noun, numbers, reference, side_by_side, task_choices, timeline,
                          timeline_alt, variant_choices, verdict_help, verdicts)

__all__ = ["build_demo", "serve", "main", "DEFAULT_RUNS", "CSS", "discover", "side_by_side", "verdicts", "timeline",
           "numbers", "compare", "respond", "budget_note", "task_choices", "class_choices", "variant_choices", "examples", "lesson_frames",
           "lesson_choices", "compare_label"]

log = logging.getLogger("mergan.demo")

DEFAULT_RUNS = Path(__file__).resolve().parent / "assets" / "runs"  # the shipped runs, wherever the app starts


def _intro(exp) -> str:
    """The page's first lines: what the left panel's strategy does (SFT forgets; where the experiment has no SFT
    run, joint training learned every class at once) against MeRGAN's replay."""
    things = "digit" if exp is None or noun(exp) == "digit" else "class"
    left = reference(exp)
    if left is None or exp.runs[left].info.role == "lower bound":
        return (f"Each generator learned the {things}s one at a time and never saw an old {things}'s images again. "
                f"**SFT** (plain fine-tuning) forgets them; **MeRGAN** (Wu et al., NeurIPS 2018) replays what it drew "
                f"before" + (", and remembers." if things == "digit" else "."))
    info = exp.runs[left].info
    how = "all at once (the upper bound)" if info.one_task else "one at a time"
    return (f"**{info.short}** learned the {things}s {how}; **MeRGAN** (Wu et al., NeurIPS 2018) learned them one at "
            f"a time, never saw an old {things}'s images again, and replays what it drew before.")


def _live_intro(exp, updates: int) -> str:
    plan = lesson_plan(exp)
    if plan is None:
        return "These runs cannot learn live (the lesson needs an MNIST MeRGAN run with its `live.safetensors`)."
    (_, lower), (_, mer) = plan.learners
    learned = ", ".join(exp.classes)
    return (f"Both learners start from the same generator, {mer.short}'s after learning {learned}: it still draws "
            f"every one of them. Each then learns one new {noun(exp)} for {updates} updates on this machine's CPU: "
            f"**{lower.short}** by plain fine-tuning, **{mer.short}** with replay. Watch the old rows: the number "
            f"beside each is the share of 64 samples the evaluator recognises as that row's {noun(exp)}.")


# ---------------------------------------------------------------------------------------------------- page
def build_demo(runs_dir: str | Path = DEFAULT_RUNS, live_updates: int = LIVE_UPDATES, live_every: int | None = None,
               work_dir: str | Path | None = None, turns: Turns | None = None):
    """The Gradio page over the runs in ``runs_dir``; generators are loaded here, once. ``live_updates`` and
    ``live_every``: each lesson's updates and the updates between its pictures (default: nine pictures, as
    ``LIVE_EVERY`` gives for ``LIVE_UPDATES``); ``work_dir``: where the page keeps copies of the runs' GIFs (none
    shown without it); ``turns``: the lessons' waiting line."""
    import gradio as gr

    live_every = live_every or max(1, live_updates * LIVE_EVERY // LIVE_UPDATES)
    # These generators are small: one thread is fastest, and on a busy CPU more threads only spin-wait
    # (measured on 2 shared cores: 40 ms per click with one thread, up to 1 s with two).
    torch.set_num_threads(1)
    turns = turns or Turns()
    catalog = discover(runs_dir)
    for m in catalog.messages:
        log.warning(m)
    status_text = "\n".join(f"- {m}" for m in catalog.messages)
    gif_dir = Path(work_dir) if work_dir is not None else None

    with gr.Blocks(title="MeRGAN: Memory Replay GANs", delete_cache=(3600, 3600)) as demo:
        exp = catalog.experiments[0] if catalog.experiments else None
        intro_md = gr.Markdown(f"# Memory Replay GANs\n{_intro(exp)}", elem_id="intro")
        if exp is None:   # still a page, saying why and how to get generators
            gr.Markdown(f"### No generators to show\n{status_text}", elem_id="status")
            return demo
        gr.Markdown(status_text, elem_id="status", visible=bool(status_text))
        any_lesson = any(lesson_plan(e) is not None for e in catalog.experiments)
        invite = gr.Button("▶ Watch forgetting happen, live", elem_id="invite-live",
                           variant="secondary", size="sm", visible=any_lesson)

        last = exp.n_tasks - 1
        first = compare(exp, last, exp.classes[0], default_variant(exp), 16, 0)
        tl0, tl_info0 = timeline(exp, exp.classes[0], 4, 0)
        num0 = numbers(exp, gif_dir)
        strategies0 = list(num0.pictures)

        exp_dd = gr.Dropdown([e.name for e in catalog.experiments], value=exp.name, label="Experiment (runs on the "
                             "same classes)", elem_id="experiment", visible=len(catalog.experiments) > 1)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Compare", id="side", elem_id="tab-side"):
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=280):
                        sft_head = gr.Markdown(first.heads[0], elem_id="sft-verdict")
                        sft_img = gr.Image(first.images[0], alt_text=first.alts[0], show_label=False, type="pil",
                                           format="png", interactive=False, buttons=["download"], elem_id="sft-image")
                    with gr.Column(min_width=280):
                        mer_head = gr.Markdown(first.heads[1], elem_id="mergan-verdict")
                        mer_img = gr.Image(first.images[1], alt_text=first.alts[1], show_label=False, type="pil",
                                           format="png", interactive=False, buttons=["download"],
                                           elem_id="mergan-image")
                help_md = gr.Markdown(verdict_help(exp), elem_id="verdict-help", visible=bool(verdict_help(exp)))
                info_md = gr.Markdown(first.info, elem_id="info")
                with gr.Row():
                    task_dd = gr.Dropdown(task_choices(exp), value=last, label="Generators after learning",
                                          elem_id="task", min_width=150)
                    class_dd = gr.Dropdown(class_choices(exp, last), value=exp.classes[0],
                                           label=f"{noun(exp).capitalize()} to draw", elem_id="class", min_width=150)
                variant_dd = gr.Dropdown(variant_choices(exp), value=default_variant(exp), label=compare_label(exp),
                                         elem_id="variant")
                with gr.Accordion("Samples and seed", open=False, elem_id="advanced"):
                    with gr.Row():
                        n_sl = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples per picture", elem_id="n")
                        # No minimum/maximum here: the app's own check answers a bad seed in one line.
                        seed_nb = gr.Number(0, precision=0, label="Seed (the same seed draws the same samples)",
                                            elem_id="seed")
                    with gr.Row():
                        dice = gr.Button("🎲 Random seed", elem_id="random-seed")
                        go = gr.Button("Draw", variant="primary", elem_id="generate")
                ex0 = examples(exp)
                ex_ds = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[label] for label, _ in ex0],
                                   sample_labels=[label for label, _ in ex0], type="index", label="Examples",
                                   elem_id="examples", visible=bool(ex0), layout="table")
                budget_md = gr.Markdown(budget_note(exp), elem_id="budget")
            if any_lesson:
                with gr.Tab("Teach", id="live", elem_id="tab-live"):
                    live_intro = gr.Markdown(_live_intro(exp, live_updates), elem_id="live-intro")
                    with gr.Row(equal_height=True):
                        live_dd = gr.Dropdown(lesson_choices(exp), value=(lesson_choices(exp) or [None])[0],
                                              label=f"New {noun(exp)} to teach", elem_id="live-class", min_width=120,
                                              scale=2)
                        live_go = gr.Button("Teach", variant="primary", elem_id="live-go", min_width=80, scale=1)
                        live_stop = gr.Button("Stop", elem_id="live-stop", min_width=80, scale=1)
                    live_md = gr.HTML("", elem_id="live-status")
                    with gr.Row():
                        live_sft = gr.Image(None, show_label=False, type="pil", format="png", interactive=False,
                                            buttons=["download"], elem_id="live-sft", min_width=280)
                        live_mer = gr.Image(None, show_label=False, type="pil", format="png", interactive=False,
                                            buttons=["download"], elem_id="live-ra", min_width=280)
                    live_table = gr.HTML("", elem_id="live-scores")
                    lesson_state = gr.State(None)
            with gr.Tab("Timeline", id="timeline", elem_id="tab-timeline"):
                with gr.Row():
                    tl_class = gr.Dropdown(exp.classes, value=exp.classes[0], label=f"{noun(exp).capitalize()} to follow",
                                           elem_id="timeline-class")
                    tl_n = gr.Slider(1, 16, value=4, step=1, label="Samples per cell", elem_id="timeline-n")
                    tl_seed = gr.Number(0, precision=0, label="Seed", elem_id="timeline-seed")
                tl_go = gr.Button("Show timeline", variant="primary", elem_id="timeline-generate")
                tl_img = gr.Image(tl0, alt_text=timeline_alt(exp, exp.classes[0]), show_label=False, type="pil",
                                  format="png", interactive=False, buttons=["download", "fullscreen"],
                                  elem_id="timeline-image")
                tl_md = gr.Markdown(tl_info0, elem_id="timeline-info")
            with gr.Tab("Numbers", id="numbers", elem_id="tab-numbers"):
                gr.Markdown("### Average accuracy after each task", elem_id="numbers-title")
                chart = gr.Image(num0.chart, alt_text=num0.chart_alt, show_label=False, type="pil", format="png",
                                 interactive=False, buttons=["download"], elem_id="numbers-chart",
                                 visible=num0.chart is not None)
                num_html = gr.HTML(num0.html, elem_id="numbers-table")
                pics = gr.Radio(strategies0, value=(strategies0 or [None])[0], label="Forgetting, class by class, of",
                                elem_id="numbers-strategy", visible=bool(strategies0))
                grid_img, gif_img = (gr.Image(p, alt_text=a, show_label=False, interactive=False, elem_id=i,
                                              buttons=["download", "fullscreen"], visible=p is not None, type=t)
                                     for p, a, i, t in _picture_values(num0, (strategies0 or [None])[0]))
            with gr.Tab("About", id="about", elem_id="tab-about"):
                about_md = gr.Markdown(about_text(exp), elem_id="about")

        # ---- the side-by-side: one listener for every control; a change made while a drawing is pending is drawn
        # next ("always_last"), and of two requests that overlap anyway only the newer answers (NewestOnly): the
        # pictures always answer the last value of every control. Only the control a trigger concerns is written back.
        # (by elem_id: the event's target is the session's copy of the component, not this object)
        triggers = {"experiment": "experiment", "examples": "example", "task": "task", "random-seed": "dice"}

        newest_draw, newest_timeline = NewestOnly(), NewestOnly()   # an older overlapping request changes nothing

        def on_draw(name, task, class_name, variant, n, seed, example, evt: gr.EventData, request: gr.Request):
            trigger = triggers.get(getattr(getattr(evt, "target", None), "elem_id", None), "draw")
            client = getattr(request, "session_hash", None)
            ticket = newest_draw.start(client)
            d = respond(catalog, trigger, name, task, class_name, variant, n, seed, example)
            if not newest_draw.is_newest(client, ticket):
                return (gr.skip(),) * 10
            keep = gr.update()
            task_u = keep if d.task is None else gr.update(choices=d.task_choices, value=d.task)
            class_u = (keep if d.class_choices is None else gr.update(choices=d.class_choices) if d.class_name is None
                       else gr.update(choices=d.class_choices, value=d.class_name))
            variant_u = keep if d.variant is None else gr.update(choices=d.variant_choices, value=d.variant,
                                                                 label=compare_label(catalog.get(name)))
            ex_u = keep if d.examples is None else gr.Dataset(samples=[[label] for label, _ in d.examples],
                                                              sample_labels=[label for label, _ in d.examples],
                                                              visible=bool(d.examples))
            c = d.comparison
            if c.images == (None, None):
                gr.Warning(c.info.replace("⚠️ ", "").replace("**", ""))
            images = [gr.Image(value=img, alt_text=alt) for img, alt in zip(c.images, c.alts)]
            return (task_u, class_u, variant_u, keep if d.seed is None else d.seed, ex_u, c.heads[0], images[0],
                    c.heads[1], images[1], c.info)

        draw_triggers = [go.click, dice.click, task_dd.input, class_dd.input, variant_dd.input, n_sl.input,
                         n_sl.release, seed_nb.input, seed_nb.submit, ex_ds.click, exp_dd.input]
        gr.on(draw_triggers, on_draw, [exp_dd, task_dd, class_dd, variant_dd, n_sl, seed_nb, ex_ds],
              [task_dd, class_dd, variant_dd, seed_nb, ex_ds, sft_head, sft_img, mer_head, mer_img, info_md],
              trigger_mode="always_last", show_progress="minimal", api_visibility="private", concurrency_id="draw",
              concurrency_limit=2)
        # The API: the side by side as a plain function of its inputs, and a random seed.
        def api_side_by_side(name, task, class_name, variant, n, seed):
            c = compare(catalog.get(name), task, class_name, variant, n, 0 if seed is None else seed)
            return c.heads[0], c.images[0], c.heads[1], c.images[1], c.info

        # (on a button never shown: API calls of these draw for the caller only)
        api_btn = gr.Button(visible=False, elem_id="api-only")
        api_btn.click(api_side_by_side, [exp_dd, task_dd, class_dd, variant_dd, n_sl, seed_nb],
                      [sft_head, sft_img, mer_head, mer_img, info_md], api_name="side_by_side", concurrency_id="draw",
                      concurrency_limit=2)
        api_btn.click(lambda: random.randint(0, MAX_SEED), None, seed_nb, api_name="random_seed")

        def on_timeline(name, class_name, n, seed, evt: gr.EventData, request: gr.Request):
            client = getattr(request, "session_hash", None)
            ticket = newest_timeline.start(client)
            e = catalog.get(name)
            class_u = gr.update()
            if e is not None and getattr(getattr(evt, "target", None), "elem_id", None) == "experiment":
                class_name = e.classes[0]
                class_u = gr.update(choices=e.classes, value=class_name)
            try:
                seed = 0 if seed is None else seed
                img, info = timeline(e, class_name, n, seed)
                alt = timeline_alt(e, class_name, n, seed) if img is not None else ""
            except Exception as err:
                log.exception("timeline failed")
                img, alt, info = None, "", f"⚠️ Timeline failed ({type(err).__name__})."
            if not newest_timeline.is_newest(client, ticket):
                return gr.skip(), gr.skip(), gr.skip()
            return class_u, gr.Image(value=img, alt_text=alt), info

        gr.on([tl_go.click, tl_class.input, tl_n.input, tl_n.release, tl_seed.input, tl_seed.submit, exp_dd.input],
              on_timeline, [exp_dd, tl_class, tl_n, tl_seed], [tl_class, tl_img, tl_md], trigger_mode="always_last",
              show_progress="minimal", api_visibility="private", concurrency_id="draw", concurrency_limit=2)

        def on_pictures(name, strategy):
            e = catalog.get(name)
            view = numbers(e, gif_dir) if e is not None else None
            return [gr.Image(value=v, alt_text=a, visible=v is not None)
                    for v, a, _, _ in _picture_values(view, strategy)]

        pics.input(on_pictures, [exp_dd, pics], [grid_img, gif_img], trigger_mode="always_last",
                   api_visibility="private")

        def on_experiment(name):
            e = catalog.get(name)
            view = numbers(e, gif_dir)
            strategies = list(view.pictures)
            first_pics = [gr.Image(value=v, alt_text=a, visible=v is not None)
                          for v, a, _, _ in _picture_values(view, (strategies or [None])[0])]
            out = [gr.Image(value=view.chart, alt_text=view.chart_alt, visible=view.chart is not None), view.html,
                   gr.Radio(choices=strategies, value=(strategies or [None])[0], visible=bool(strategies)),
                   *first_pics, budget_note(e), about_text(e), verdict_help(e), f"# Memory Replay GANs\n{_intro(e)}"]
            if any_lesson:
                choices = lesson_choices(e)
                out += [gr.Dropdown(choices=choices, value=(choices or [None])[0]), _live_intro(e, live_updates)]
            return out

        other_outputs = [chart, num_html, pics, grid_img, gif_img, budget_md, about_md, help_md, intro_md]
        exp_dd.input(on_experiment, exp_dd, other_outputs + ([live_dd, live_intro] if any_lesson else []),
                     api_visibility="private")

        if any_lesson:
            invite.click(None, None, None, js="() => document.querySelector('#tab-live-button').click()")

            def on_teach(name, digit, request: gr.Request):
                e = catalog.get(name)
                client = getattr(request, "session_hash", None)
                fresh = True
                for frame in lesson_frames(e, digit, live_updates, live_every, turns=turns, client=client):
                    if frame.pictures[0] is not None or fresh:
                        images = [gr.Image(value=p, alt_text=a) for p, a in zip(frame.pictures, frame.alts)]
                        fresh = False
                    else:   # waiting, or an error after some pictures: they stay
                        images = [gr.update(), gr.update()]
                    summary = dataclasses.replace(frame, pictures=[None, None], alts=["", ""])   # small: per session
                    yield frame.status, images[0], images[1], frame.table, summary

            lesson = live_go.click(on_teach, [exp_dd, live_dd], [live_md, live_sft, live_mer, live_table, lesson_state],
                                   concurrency_limit=turns.max_waiting + 2, concurrency_id="lesson", api_name="teach",
                                   show_progress="hidden")
            live_stop.click(lambda last: stopped_frame(last).status, lesson_state, live_md, cancels=[lesson],
                            api_visibility="private")
    return demo


@dataclasses.dataclass
class Drawn:
    """The side-by-side's answer to one trigger: the comparison, and the controls the trigger sets (None: the
    control keeps the visitor's value; ``class_choices`` alone relabels the classes for the generators picked)."""
    comparison: Comparison
    task: int | None = None
    class_name: str | None = None
    variant: str | None = None
    seed: int | None = None
    task_choices: list | None = None
    class_choices: list | None = None
    variant_choices: list | None = None
    examples: list | None = None


def respond(catalog, trigger: str, name, task, class_name, variant, n, seed, example=None) -> Drawn:
    """What the side-by-side draws for a trigger ("experiment", "example", "task", "dice", or "draw": any other
    control), from the values the controls hold. An example belongs to the experiment shown now: it sets its
    generators, class and comparison, and is drawn with the number of samples and the seed in the boxes."""
    e = catalog.get(name)
    if e is None:
        return Drawn(compare(None, task, class_name, variant, n, seed))
    d = Drawn(None)
    if trigger == "experiment":
        task, class_name, variant = e.n_tasks - 1, e.classes[0], default_variant(e)
        d.task_choices, d.variant_choices, d.examples = task_choices(e), variant_choices(e), examples(e)
        d.task, d.class_name, d.variant = task, class_name, variant
    elif trigger == "example":
        rows = examples(e)
        if isinstance(example, int) and 0 <= example < len(rows):
            task, class_name, variant = rows[example][1]
            d.task_choices, d.variant_choices = task_choices(e), variant_choices(e)
            d.task, d.class_name, d.variant = task, class_name, variant
    elif trigger == "dice":
        d.seed = seed = random.randint(0, MAX_SEED)
    if trigger in ("experiment", "example", "task") and task is not None:
        d.class_choices = class_choices(e, int(task))
    seed = 0 if seed is None else seed
    try:
        d.comparison = compare(e, task, class_name, variant, n, seed)
    except Exception as err:  # never a stack trace in the page; the server log has it
        log.exception("generation failed")
        d.comparison = Comparison(("", ""), (None, None), ("", ""), f"⚠️ Generation failed ({type(err).__name__}).")
    return d


def _picture_values(view, strategy):
    """(value, alt text, elem_id, type) of the numbers tab's forgetting grid and GIF for ``strategy``."""
    found = view.pictures.get(strategy) if view is not None and strategy else None
    grid = found.grid if found else None
    gif = str(found.gif) if found and found.gif else None
    return [(grid, f"{strategy}'s samples of every class (rows) after every task (columns)" if grid else "",
             "numbers-grid", "pil"),
            (gif, f"Animation: {strategy}'s samples of every class, one frame per task" if gif else "",
             "numbers-gif", "filepath")]


def serve(demo, **launch):
    """Launch ``demo`` with the server's limits (queue, per-client jobs, uploads, styles): what ``main`` runs and
    what the tests start."""
    from mergan.serving import QUEUE_SIZE

    demo.queue(max_size=QUEUE_SIZE)
    return demo.launch(**{**launch_kwargs(demo), **launch})


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
    # Every file the app writes lives in one folder of its own, removed on every kind of stop (a killed server's,
    # at the next start).
    with serving_folder() as work:
        demo = build_demo(args.runs, work_dir=work)
        serve(demo, server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
