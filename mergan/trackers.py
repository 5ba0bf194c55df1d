"""Experiment trackers, through Accelerate's (``Accelerator(log_with=...)``, ``init_trackers``): TensorBoard, the
default, writing to ``RUN/logs``; Weights & Biases, Trackio, and the others Accelerate ships, each with its own
package installed.

    mergan train ... --report-to                      # TensorBoard (also: --tensorboard)
    mergan train ... --report-to wandb,tensorboard    # several
    tensorboard --logdir runs/mnist-ra/logs

A tracker gets the run's resolved settings when it starts, the losses every ``log_every`` iterations and, after
every task, that task's sample grid (a row per class seen so far, from the fixed noise of ``samples/``) as an
image. Every value is logged at the run's iteration counted across tasks (``step``), so each tracker sees one
increasing step and a task's grid sits at its last iteration.
"""
from __future__ import annotations

import logging

log = logging.getLogger("mergan")

DEFAULT = "tensorboard"
PROJECT = "mergan"      # the trackers' project (TensorBoard: RUN/logs/mergan)
GRID_TAG = "samples"


def add_options(parser) -> None:
    """``--report-to`` and its alias ``--tensorboard``, for train.py."""
    parser.add_argument("--report-to", nargs="?", const=DEFAULT, default=None, metavar="TRACKERS",
                        help=f"log to Accelerate's trackers, comma-separated: {', '.join(names())}, all, or none "
                             f"(the default); alone it means {DEFAULT}, in OUT/logs")
    parser.add_argument("--tensorboard", action="store_true", help="the same as --report-to tensorboard")


def names() -> list[str]:
    """The trackers Accelerate ships."""
    from accelerate.utils import LoggerType

    return [t.value for t in LoggerType if t is not LoggerType.ALL]


def requested(report_to: str | None, tensorboard: bool = False) -> list[str] | None:
    """The trackers asked for, as ``log_with`` (None: none), each checked to exist and to be installed; raises
    ``ValueError`` with one line naming the tracker and the fix."""
    wanted = [] if report_to is None else [w.strip() for w in report_to.split(",") if w.strip()]
    if tensorboard and DEFAULT not in wanted:
        wanted.append(DEFAULT)
    if not wanted:
        return None
    from accelerate.tracking import get_available_trackers

    if "none" in wanted:
        if len(wanted) > 1:
            raise ValueError(f"--report-to none cannot go with other trackers ({', '.join(wanted)}); give one or "
                             f"the other")
        return None
    available = {str(t) for t in get_available_trackers()}
    for w in wanted:
        if w != "all" and w not in names():
            raise ValueError(f"unknown tracker {w!r} for --report-to; choose from {', '.join(names())}, all or none")
        if w != "all" and w not in available:
            raise ValueError(f"--report-to {w} needs the {w} package, which is not installed: pip install {w}")
    return wanted or None


def step(task: int, done_iters: int, iters: int) -> int:
    """The logged step of ``done_iters`` iterations into ``task`` (each task has ``iters`` + 1 iterations)."""
    return task * (iters + 1) + done_iters


def tracker_config(cfg, run_id: str) -> dict:
    """The resolved settings as flat scalars (what every tracker takes): the model's keys as ``model.KEY``, the
    classes joined, the data by content."""
    from .records import config_to_dict

    flat = {"run_id": run_id}
    for key, value in config_to_dict(cfg).items():
        if key == "model":
            flat.update({f"model.{k}": v for k, v in value.items()})
        elif key == "data_source":
            flat["data"] = f"{cfg.dataset} (content {cfg.data_source.fingerprint})"
        elif key == "classes":
            flat["classes"] = ",".join(value)
        else:
            flat[key] = "none" if value is None else value
    return flat


def start(acc, cfg, run_id: str) -> None:
    """Start the Accelerator's trackers with the run's settings (main process only, as Accelerate does)."""
    acc.init_trackers(PROJECT, config=tracker_config(cfg, run_id))
    for tracker in acc.trackers:
        if getattr(tracker, "log_images", None) is None:
            log.info("%s gets the losses and settings only: Accelerate passes it no images (the sample grids are "
                     "in the run's samples/)", tracker.name)


def log_grid(acc, grid, at: int) -> None:
    """A task's sample grid (uint8 (3, H, W), ``sampling.class_grid``) to every tracker that takes images."""
    if not acc.trackers:
        return
    image = grid.permute(1, 2, 0).contiguous().numpy()   # (H, W, 3)
    for tracker in acc.trackers:
        log_images = getattr(tracker, "log_images", None)
        if log_images is None:
            continue
        if tracker.name == "tensorboard":   # SummaryWriter.add_images: one array, a batch of one
            log_images({GRID_TAG: image[None]}, step=at, dataformats="NHWC")
        else:                               # W&B, Aim, ClearML, SwanLab: a list of (H, W, C) images
            log_images({GRID_TAG: [image]}, step=at)
