"""The live lesson as the demo shows it: forgetting, happening. Two learners start from the same generator that
still remembers every class (a MeRGAN run's last one) and learn one new digit side by side, one by plain
fine-tuning (the experiment's lower bound, SFT), the other with the run's own replay; every few updates each
row of their grids is labelled with its class and the evaluator's recognition of that row.

``lesson_frames`` is a plain iterator of ``Frame``s (tests call it directly); it trains only through
``mergan.live.teach``, and learns which strategies to use from the runs' records, never from the training code.
``Turns`` is the waiting line: one lesson at a time, in the order asked, each waiting visitor told how long.
"""
from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageDraw

from .catalog import MAX_LIVE_BYTES, Experiment, Run, plain_file, rel
from .records import StrategyInfo
from .views import font, noun

log = logging.getLogger("mergan.demo")

LIVE_UPDATES, LIVE_EVERY = 200, 25   # generator updates per lesson, and between two pictures
PER_ROW = 8                          # samples shown per class; each row's score counts 64 (sampling.CHUNK)
SCALE = 2                            # 32x32 digits drawn at 64x64


@dataclass
class LessonPlan:
    """Where a lesson starts (the run whose last generator and ``live.safetensors`` both learners start from)
    and its learners: (strategy name given to ``teach``, the strategy's identity from the runs' records)."""
    start: Run
    learners: list[tuple[str, StrategyInfo]]


def lesson_plan(exp: Experiment | None) -> LessonPlan | None:
    """The experiment's lesson, if it has one: a MeRGAN run that can keep learning (its last generator loaded,
    a plain ``live.safetensors`` of bounded size) and a run of the lower bound to name the learner that forgets.
    Decided once, when the page is built: a run folder that goes missing later is said so when a lesson starts."""
    if exp is None or exp.dataset != "mnist":
        return None
    if "lesson" not in exp.views:
        exp.views["lesson"] = _plan(exp)
    return exp.views["lesson"]


def _plan(exp: Experiment) -> LessonPlan | None:
    lower = exp.first("lower bound")
    if lower is None or exp.runs[lower].info.one_task or not exp.runs[lower].info.conditional:
        return None
    for s in exp.strategies("mergan"):
        run = exp.runs[s]
        if (run.info.one_task or not run.info.conditional or exp.n_tasks - 1 not in run.generators
                or plain_file(run.folder.live_path, MAX_LIVE_BYTES)):
            continue
        return LessonPlan(run, [(exp.runs[lower].info.name, exp.runs[lower].info), (run.info.name, run.info)])
    return None


def new_digits(exp: Experiment | None) -> list[str]:
    """The digits an MNIST experiment has not learned (what a lesson can teach)."""
    if exp is None or exp.dataset != "mnist":
        return []
    return [d for d in map(str, range(10)) if d not in exp.classes]


def lesson_choices(exp: Experiment | None) -> list[str]:
    """What the Teach tab offers: the digits not learned, if the experiment has a lesson (``lesson_plan``)."""
    return new_digits(exp) if lesson_plan(exp) is not None else []


# ------------------------------------------------------------------------------------------------ waiting line
class LessonsFull(Exception):
    """The waiting line is full; the message says when to come back."""


class Turns:
    """Lessons one at a time, in the order asked. At most ``max_waiting`` wait behind the running one; each is
    told its place and how long, from the running lesson's progress and the last lesson's duration. A visitor has
    one lesson in the line: asking again supersedes the earlier one, which ends at its next picture (Stop, then
    Teach, is two lessons of one visitor, the first still finishing its last updates)."""

    def __init__(self, max_waiting: int = 3, expected_s: float = 60.0):
        self.max_waiting, self.expected_s = max_waiting, expected_s
        self._cond = threading.Condition()
        self._line: list[object] = []        # tickets in order; the first one's lesson may run
        self._clients: dict[object, str] = {}
        self._superseded: set[object] = set()
        self._running: tuple[object, float, float] | None = None   # (ticket, start time, fraction done)

    def join(self, client: str | None = None) -> object:
        with self._cond:
            mine = [t for t, c in self._clients.items() if client is not None and c == client]
            self._superseded.update(mine)
            if len(self._line) - len(mine) > self.max_waiting:
                raise LessonsFull(f"{len(self._line) - 1} visitors are waiting for a lesson already. Try again in "
                                  f"about {self._wait_s(len(self._line)):.0f} s.")
            ticket = object()
            self._line.append(ticket)
            if client is not None:
                self._clients[ticket] = client
            return ticket

    def superseded(self, ticket: object) -> bool:
        """True once the same visitor has asked for another lesson: this one ends."""
        with self._cond:
            return ticket in self._superseded

    def wait(self, ticket: object, timeout: float) -> bool:
        """True once it is ``ticket``'s turn; False after ``timeout`` seconds of waiting."""
        with self._cond:
            return self._cond.wait_for(lambda: self._line[0] is ticket, timeout)

    def ahead(self, ticket: object) -> int:
        with self._cond:
            return self._line.index(ticket)

    def wait_s(self, ticket: object) -> float:
        """About how long until ``ticket``'s turn, in seconds."""
        with self._cond:
            return self._wait_s(self._line.index(ticket))

    def _wait_s(self, ahead: int) -> float:
        if ahead == 0:
            return 0.0
        left = self.expected_s
        if self._running is not None and self._running[0] is self._line[0]:
            _, start, done = self._running
            elapsed = time.monotonic() - start
            left = elapsed * (1 - done) / done if done > 0 else max(self.expected_s - elapsed, 0.0)
        return left + (ahead - 1) * self.expected_s

    def begin(self, ticket: object) -> None:
        with self._cond:
            self._running = (ticket, time.monotonic(), 0.0)

    def progress(self, ticket: object, done: float) -> None:
        with self._cond:
            if self._running is not None and self._running[0] is ticket:
                self._running = (ticket, self._running[1], done)

    def leave(self, ticket: object, finished: bool = False) -> None:
        """The lesson ended (``finished``: ran to the end, so its duration is the next estimate) or was left."""
        with self._cond:
            if self._running is not None and self._running[0] is ticket:
                if finished:
                    self.expected_s = time.monotonic() - self._running[1]
                self._running = None
            if ticket in self._line:
                self._line.remove(ticket)
            self._clients.pop(ticket, None)
            self._superseded.discard(ticket)
            self._cond.notify_all()


# ------------------------------------------------------------------------------------------------ frames
@dataclass
class Frame:
    """What the Teach tab shows at one moment. ``state``: "waiting", "learning", "done", "stopped" or "error";
    ``pictures``/``alts``: each learner's labelled grid (PIL, or None) and what it shows in words; ``scores``:
    each learner's share recognised per class (fractions; empty without an evaluator), ``start`` the same at
    update 0 (both learners start there); ``status`` and ``table``: HTML."""
    state: str
    digit: str
    updates: int = 0
    total: int = 0
    seconds: float = 0.0
    learners: list[str] = field(default_factory=list)
    pictures: list[Image.Image | None] = field(default_factory=lambda: [None, None])
    alts: list[str] = field(default_factory=lambda: ["", ""])
    scores: list[dict[str, float]] = field(default_factory=lambda: [{}, {}])
    start: dict[str, float] = field(default_factory=dict)
    status: str = ""
    table: str = ""


def row_scores(evaluator, samples: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """Each row's share of samples that ``evaluator`` recognises as that row's class; ``samples`` uint8
    (K, S, C, H, W), row k of class ``classes[k]``. Classes the evaluator does not know are left out."""
    if evaluator is None:
        return {}
    K, S = samples.shape[:2]
    pred = evaluator.run(samples.flatten(0, 1))[0].view(K, S)
    return {c: (pred[k] == evaluator.index(c)).float().mean().item()
            for k, c in enumerate(classes) if c in evaluator.classes}


INK, GOOD, BAD, BAND = (20, 20, 20), (10, 107, 42), (176, 0, 32), (236, 236, 240)   # each AA on white or BAND


def lesson_picture(grid: torch.Tensor, classes: list[str], new: str, scores: dict[str, float], title: str,
                   per_row: int = PER_ROW) -> Image.Image:
    """A learner's grid (uint8 (C, H, W), a row of ``per_row`` samples per class) with a title band, each row's
    class on the left (the new one marked) and its score on the right (green when most are recognised)."""
    g = grid.permute(1, 2, 0).numpy()
    pil = Image.fromarray(g[:, :, 0] if grid.shape[0] == 1 else g).convert("RGB")
    pil = pil.resize((pil.width * SCALE, pil.height * SCALE), Image.NEAREST)
    row_h = pil.height / len(classes)
    band, left, right = 52, 96, 128
    canvas = Image.new("RGB", (left + pil.width + right, band + pil.height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, canvas.width, band - 1], fill=BAND)
    draw.text((12, band // 2), title, fill=INK, font=font(30), anchor="lm")
    canvas.paste(pil, (left, band))
    big, small = font(36), font(20)
    for k, c in enumerate(classes):
        y = band + k * row_h + row_h / 2
        draw.text((left - 12, y), c, fill=INK, font=big, anchor="rm" if c != new else "rb")
        if c == new:
            draw.text((left - 12, y + 2), "new", fill=INK, font=small, anchor="rt")
        if c in scores:
            draw.text((left + pil.width + 10, y), f"{100 * scores[c]:.0f}%", fill=GOOD if scores[c] >= 0.5 else BAD,
                      font=big, anchor="lm")
    return canvas


def _old(scores: dict[str, float], classes: list[str]) -> float | None:
    found = [scores[c] for c in classes if c in scores]
    return sum(found) / len(found) if found else None


def _status(frame: Frame, line: str, old: list[str]) -> str:
    """The progress bar and the line beside the Teach button, and the summary of the old rows."""
    e = html.escape
    value = f' value="{frame.updates}"' if frame.state in ("learning", "done", "stopped") else ""
    bar = "" if frame.state == "error" else (f'<progress max="{max(frame.total, 1)}"{value} '
                                            f'aria-label="lesson progress"></progress>')
    summary = ""
    starts = _old(frame.start, old)
    if frame.state in ("learning", "done", "stopped") and starts is not None and any(frame.scores):
        parts = [f"<b>{e(name)} {100 * v:.0f}%</b>" for name, s in zip(frame.learners, frame.scores)
                 if (v := _old(s, old)) is not None]
        summary = (f"<p>Old {e(noun_of(old))} {e(', '.join(old))} recognised on average: {', '.join(parts)} "
                   f"(both {100 * starts:.0f}% at the start).</p>")
    return (f'<div class="lesson-status" data-state="{frame.state}" data-updates="{frame.updates}" '
            f'data-total="{frame.total}">{bar}<p class="lesson-line">{line}</p>{summary}</div>')


def noun_of(classes: list[str]) -> str:
    return "digits" if all(c.isdigit() for c in classes) else "classes"


def _table(frame: Frame, classes: list[str]) -> str:
    """Every row's score as a table: the words behind the pictures' numbers (and what a test can read)."""
    if not frame.start:
        return ""
    e = html.escape
    head = "".join(f'<th scope="col">{e(n)}</th>' for n in ["", "start", *frame.learners])
    rows = []
    for c in classes:
        cells = "".join(f'<td data-learner="{i}">{100 * s[c]:.0f}</td>' if c in s else "<td>–</td>"
                        for i, s in enumerate(frame.scores))
        start = f"{100 * frame.start[c]:.0f}" if c in frame.start else "–"
        label = f"{c} (new)" if c == frame.digit else c
        rows.append(f'<tr data-class="{e(c)}"><th scope="row">{e(label)}</th><td>{start}</td>{cells}</tr>')
    return (f'<table class="fit lesson-scores"><caption>Recognised by the evaluator after {frame.updates} '
            f'updates (% of 64 samples per row)</caption><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table>")


def error_frame(digit: str, message: str) -> Frame:
    frame = Frame("error", digit)
    frame.status = _status(frame, f"⚠️ {html.escape(message)}", [])
    return frame


def stopped_frame(last: Frame | None) -> Frame:
    """What the Stop button leaves: the last pictures, and a status that says the lesson ended there."""
    if last is None or last.state in ("done", "error"):
        return last or error_frame("", "No lesson is running. Pick a digit and press Teach.")
    frame = Frame(**{**last.__dict__, "state": "stopped"})
    line = ("Stopped while waiting for your turn. Press Teach to queue again." if last.state == "waiting" else
            f"Stopped at update {last.updates} of {last.total} on {html.escape(last.digit)}: the pictures show that "
            f"update. Press Teach to start again.")
    frame.status = _status(frame, line, [c for c in last.start if c != last.digit])
    return frame


def lesson_frames(exp: Experiment, digit: str, updates: int = LIVE_UPDATES, every: int = LIVE_EVERY,
                  turns: Turns | None = None, client: str | None = None):
    """The Teach tab: yields ``Frame``s while waiting for a turn (``turns``), then before the first update and
    after every ``every`` updates of both learners (each trained in its own thread), then once at the end.
    Closing the iterator (Stop, or the visitor leaving) stops both learners and frees the turn."""
    from concurrent.futures import ThreadPoolExecutor

    from .live import teach

    digits, plan = new_digits(exp), lesson_plan(exp)
    what = noun(exp)
    if plan is None:
        yield error_frame(digit, "These runs cannot learn live: the lesson needs an MNIST MeRGAN run with its "
                                 "live.safetensors (python -m mergan.live export RUN) and an SFT run beside it.")
        return
    if digit not in digits:
        yield error_frame(digit, f"Pick a {what} the runs have not learned: {', '.join(digits)}.")
        return
    folder = plan.start.folder
    missing = next((f"{p.name} is {why}" for p in (folder.config_path, folder.live_path)
                    if (why := plain_file(p, MAX_LIVE_BYTES))), None)
    if missing:
        yield error_frame(digit, f"`{rel(plan.start.path)}` can no longer learn: its {missing} (moved or deleted "
                                 f"since the demo started). Restore the run folder (python -m mergan.live export "
                                 f"RUN writes live.safetensors), then press Teach again.")
        return
    classes, old = [*exp.classes, digit], list(exp.classes)
    names = [info.short for _, info in plan.learners]
    try:
        ticket = turns.join(client) if turns is not None else None
    except LessonsFull as full:
        yield error_frame(digit, str(full))
        return
    lessons, finished = [], False
    try:
        while turns is not None and not turns.wait(ticket, 1.0):
            if turns.superseded(ticket):
                return
            frame = Frame("waiting", digit, total=updates, learners=names)
            ahead, wait = turns.ahead(ticket), turns.wait_s(ticket)
            frame.status = _status(frame, f"Waiting for your turn: {ahead} lesson{'s' if ahead > 1 else ''} ahead of "
                                          f"you, about {wait:.0f} s. Yours starts by itself; Stop leaves the line.", old)
            yield frame
        if turns is not None:
            turns.begin(ticket)
        frame = Frame("learning", digit, total=updates, learners=names)
        frame.status = _status(frame, f"Preparing: loading the {what}s and both learners…", old)
        yield frame
        lessons = [teach(plan.start.path, digit, updates=updates, every=every, strategy=name, per_class=PER_ROW)
                   for name, _ in plan.learners]
        start = time.perf_counter()
        with ThreadPoolExecutor(len(lessons), thread_name_prefix="lesson") as pool:
            while True:
                steps = list(pool.map(lambda lesson: next(lesson, None), lessons))
                if any(s is None for s in steps) or (turns is not None and turns.superseded(ticket)):
                    break
                frame = _frame(exp, plan, digit, steps, updates, time.perf_counter() - start, frame)
                if turns is not None:
                    turns.progress(ticket, steps[0].updates / updates)
                finished = steps[0].updates == updates
                yield frame
    except Exception as e:   # one line in the page, never a bare "Error"; the log has the rest
        from .checkpoints import CheckpointError
        from .records import RecordError

        known = isinstance(e, (CheckpointError, RecordError, ValueError, OSError))
        if not known:
            log.exception("the live lesson failed")
        yield error_frame(digit, f"The lesson stopped: {e}" if known else
                          f"The lesson stopped ({type(e).__name__}); the server log has the details. Press Teach "
                          f"to try again.")
    finally:
        for lesson in lessons:
            lesson.close()
        if turns is not None and ticket is not None:
            turns.leave(ticket, finished)


def _frame(exp: Experiment, plan: LessonPlan, digit: str, steps, updates: int, seconds: float, previous: Frame) -> Frame:
    classes, old = [*exp.classes, digit], list(exp.classes)
    u = steps[0].updates
    frame = Frame("done" if u == updates else "learning", digit, u, updates, seconds,
                  [info.short for _, info in plan.learners])
    frame.scores = [row_scores(exp.evaluator, s.samples, classes) for s in steps]
    frame.start = frame.scores[0] if u == 0 else previous.start
    for i, (step, (_, info)) in enumerate(zip(steps, plan.learners)):
        title = f"{info.short} · update {u} of {updates}"
        frame.pictures[i] = lesson_picture(step.grid, classes, digit, frame.scores[i], title)
        said = ", ".join(f"{c} {100 * frame.scores[i][c]:.0f}%" for c in classes if c in frame.scores[i])
        frame.alts[i] = (f"{info.short} after {u} of {updates} updates on the new {noun(exp)} {digit}: a row of "
                         f"{PER_ROW} samples per {noun(exp)}, {', '.join(classes)}"
                         + (f"; recognised per row: {said}." if said else "."))
    left = seconds * (updates - u) / u if u else None
    line = (f"<strong>Done: {u} of {updates} updates on {html.escape(digit)}</strong> in {seconds:.0f} s."
            if u == updates else
            f"<strong>Learning {html.escape(digit)}: {u} of {updates} updates</strong> ({seconds:.0f} s"
            + (f", about {left:.0f} s left)" if left is not None else ")"))
    frame.status = _status(frame, line, old)
    frame.table = _table(frame, classes)
    return frame
