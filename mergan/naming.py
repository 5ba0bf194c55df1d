"""How strategies are named and shown, in one place: their titles, the order of the paper's tables, and the
unit in which accuracies are shown (``metrics.json`` stores them as fractions, shown as percentages)."""
from __future__ import annotations

# The paper's Table 1, in its column order: the baselines, the others, MeRGAN.
PAPER_COLUMNS = [("joint", "JT"), ("sft", "SFT"), ("ewc", "EWC"), ("dgr", "DGR"), ("jtr", "MeRGAN-JTR"),
                 ("ra", "MeRGAN-RA")]
TABLE_ORDER = [s for s, _ in PAPER_COLUMNS]
# The demo's rows: what forgets, what remembers, the upper bound last.
TIMELINE_ORDER = ["sft", "ra", "jtr", "ewc", "dgr", "joint"]

TITLES = {"sft": "SFT (sequential fine-tuning)", "ra": "MeRGAN-RA (replay alignment)",
          "jtr": "MeRGAN-JTR (joint training with replay)", "joint": "Joint training (all classes at once)",
          "ewc": "EWC", "dgr": "DGR"}
SHORT = {"sft": "SFT", "ra": "MeRGAN-RA", "jtr": "MeRGAN-JTR", "joint": "Joint", "ewc": "EWC", "dgr": "DGR"}
MERGAN = ("ra", "jtr")
# One line on what each does, for a visitor.
ABOUT = {"sft": "trains on the new class only: the baseline that forgets",
         "ra": "MeRGAN: the new generator must redraw its predecessor's images of the old classes, pixel for pixel",
         "jtr": "MeRGAN: the previous generator's images of the old classes are mixed into training as real data",
         "ewc": "baseline (Seff et al. 2017): a penalty on moving the weights that mattered for the old classes",
         "dgr": "baseline (Shin et al. 2017): an unconditional GAN whose replays a classifier labels",
         "joint": "the ceiling: every class at once, with all the data (not continual learning)"}


def title(strategy: str) -> str:
    return TITLES.get(strategy, strategy)


def short(strategy: str) -> str:
    return SHORT.get(strategy, strategy)


def ordered(strategies, order=TABLE_ORDER) -> list[str]:
    """``strategies`` in ``order``, any others after them alphabetically."""
    strategies = set(strategies)
    return [s for s in order if s in strategies] + sorted(strategies - set(order))


def percent(fraction: float) -> float:
    """An accuracy of ``metrics.json`` (a fraction) as shown (a percentage)."""
    return 100 * fraction


def about(strategy: str) -> str:
    return ABOUT.get(strategy, "")
