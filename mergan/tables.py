"""Every table of an evaluation, from ``scores.Metrics``: one run after ``train.py --test`` (``run_rows``), and
runs side by side in the paper's column order (``comparison_rows``: the report and the demo's numbers tab),
each as rows of cells rendered as aligned text or as Markdown (``render``).

``metrics.json`` stores accuracies as fractions; they are shown as percentages.
"""
from __future__ import annotations

from .scores import PRDC_KEYS, Metrics


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction of ``metrics.json`` as a percentage, "–" for none."""
    return "–" if fraction is None else f"{100 * fraction:.{digits}f}"


def number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render(header: list[str], rows: list[list[str]], style: str = "text") -> str:
    """Rows of cells as Markdown (``style="markdown"``) or as text with aligned columns."""
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


# ----------------------------------------------------------------------------------------------- one run
def run_rows(m: Metrics) -> list[tuple[str, list[str], list[list[str]]]]:
    """One run's tables, as (title, header, rows): accuracy per class after every task by each evaluator, recall
    per class after every task, and the final generator's variety per class beside the real-data ceilings."""
    classes, out = m.classes, []
    for name, pick, info in (("main", lambda t: t.main, m.main), ("second", lambda t: t.second, m.second)):
        if info is None:
            continue
        rows = [[str(t.task)] + [percent(pick(t).per_class.get(c)) for c in classes] + [percent(pick(t).average)]
                for t in m.tasks]
        rows.append(["real"] + [percent(info.real.per_class.get(c)) for c in classes] + [percent(info.real.average)])
        title = (f"accuracy (%) on generated images, {name} evaluator {info.arch} ({info.path}, "
                 f"{percent(info.test_accuracy)}% on real {info.test_split} images)")
        out.append((title, ["after task", *classes, "average"], rows))
    v = m.variety
    if any(t.recall for t in m.tasks):   # files written before per-task recall was measured have none
        rows = [[str(t.task)] + [number(t.recall.per_class.get(c) if t.recall else None) for c in classes]
                + [number(t.recall.average if t.recall else None)] for t in m.tasks]
        rows.append(["real"] + [number(v.prdc_ceiling.get(c, {}).get("recall")) for c in classes]
                    + [number(v.mean("recall", True))])
        out.append((f"recall of each class seen after every task (k = {v.k}, main evaluator's features; real: real "
                    f"against real)", ["after task", *classes, "mean"], rows))
    rows = []
    for c in classes:
        p, ceil, taken = v.prdc.get(c, {}), v.prdc_ceiling.get(c, {}), v.taken_for(c)
        taken = "–" if taken is None else f"{taken[0]} ({percent(taken[1])})"
        rows.append([c, percent(v.reverse.per_class.get(c)), taken, percent(v.reverse_ceiling.per_class.get(c)),
                     *(number(p.get(k)) for k in PRDC_KEYS), number(ceil.get("recall")), number(ceil.get("coverage"))])
    rows.append(["mean", percent(v.reverse.average), "", percent(v.reverse_ceiling.average),
                 *(number(v.mean(k)) for k in PRDC_KEYS), number(v.mean("recall", True)),
                 number(v.mean("coverage", True))])
    out.append((f"variety of the final generator: reverse accuracy (%; {v.reverse_images_per_class} generated images "
                f"per class, tested on real {v.real_split} images; taken for: the class its real images were most "
                f"often taken for, % of them) and precision, recall, density, coverage (k = {v.k}, main evaluator's "
                f"features), each beside real against real",
                ["class", "reverse", "taken for", "real", *PRDC_KEYS, "recall real", "coverage real"], rows))
    return out


def metrics_text(m: Metrics) -> str:
    """The table printed after ``train.py --test``."""
    cfg = m.config
    lines = [f"{m.run}: {cfg.dataset} {m.strategy.short}, {cfg.iters} generator updates per task, model "
             f"{cfg.model['arch']} width {cfg.model['dim']}, {m.eval_samples} samples per class"]
    for title, header, rows in run_rows(m):
        lines += ["", title, render(header, rows)]
    lines += ["", f"reverse accuracy over all real {m.variety.real_split} images: {percent(m.variety.reverse_accuracy)}% "
              f"(real against real: {percent(m.variety.reverse_ceiling_accuracy)}%)",
              f"FID, {m.fid['features']}: overall {number(m.fid['overall'])}; per class "
              + ", ".join(f"{c} {number(x)}" for c, x in m.fid["per_class"].items())]
    inc = m.inception_fid
    lines.append(f"Inception FID: skipped: {inc['skipped']}" if "skipped" in inc else
                 f"Inception FID: {inc['overall']:.2f} ({inc['features']})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- runs side by side
def ordered(runs: list[Metrics]) -> list[Metrics]:
    """Runs in the paper's column order (``StrategyInfo.order``), any others after them by name."""
    return sorted(runs, key=lambda m: (m.strategy.order, m.strategy.name, m.run))


def column_titles(runs: list[Metrics]) -> list[str]:
    """A column per run: the strategy's short name, with the run folder's name where a strategy repeats."""
    seen = [m.strategy.short for m in runs]
    return [m.strategy.short if seen.count(m.strategy.short) == 1 else f"{m.strategy.short} ({m.run.split('/')[-1]})"
            for m in runs]


def comparison_rows(runs: list[Metrics], paper: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Runs side by side: accuracy after every number of tasks (each evaluator, and the lower of the two per
    class), the lowest class, reverse accuracy and mean recall after the last task (ceilings in brackets), FID.
    ``paper``: {tasks seen: {paper column: number}}, shown in brackets beside ours."""
    runs = ordered(runs)
    paper = paper or {}
    header = [""] + column_titles(runs)
    counts = sorted({t.tasks_seen for m in runs for t in m.tasks} | set(paper))

    def after(m, n):
        return next((t for t in m.tasks if t.tasks_seen == n), None)

    def cell(ours: str | None, theirs=None) -> str:
        text = ours if ours is not None else "–"
        return text + (f" ({theirs:.2f})" if theirs is not None else "")

    rows = []
    for n in counts:
        rows.append([f"after {n} tasks"] + [
            cell(percent(t.main.average, 2) if (t := after(m, n)) else None,
                 paper.get(n, {}).get(m.strategy.paper_column)) for m in runs])
        for label, key in (("second evaluator", "second"), ("lower of the two, per class", "both")):
            cells = [percent(getattr(t, key).average, 2) if (t := after(m, n)) and getattr(t, key) else "" for m in runs]
            if any(cells):
                rows.append([f"after {n} tasks, {label}"] + cells)
    rows.append(["lowest class after the last task"] + [
        "{} {}".format(*(lambda c: (c[0], percent(c[1])))(m.final.strict.lowest())) for m in runs])
    rows.append(["reverse accuracy (real: ceiling)"] + [
        f"{percent(m.variety.reverse_accuracy)} ({percent(m.variety.reverse_ceiling_accuracy)})" for m in runs])
    rows.append(["mean recall (real: ceiling)"] + [
        f"{number(m.variety.mean('recall'))} ({number(m.variety.mean('recall', True))})" for m in runs])
    rows.append(["lowest recall"] + [
        "–" if (low := m.variety.lowest("recall")) is None else f"{low[0]} {number(low[1])}" for m in runs])
    rows.append(["FID, evaluator features"] + [number(m.fid.get("overall")) for m in runs])
    return header, rows


def per_class_rows(runs: list[Metrics], classes: list[str]) -> tuple[list[str], list[list[str]]]:
    """Each class after each run's last task: accuracy (lower of the two evaluators) and recall."""
    runs = ordered(runs)
    header = ["class"] + [f"{t}: accuracy / recall" for t in column_titles(runs)]
    rows = [[c] + [f"{percent(m.final.strict.per_class.get(c))} / {number(m.variety.prdc.get(c, {}).get('recall'))}"
                   for m in runs] for c in classes]
    return header, rows
