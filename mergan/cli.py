"""The ``mergan`` command (installed with the package): one entry point for every script of the project.

    mergan train --strategy ra --preset quick --classes 0,1,2,3,4     # python train.py, the same options
    mergan test --out runs/mnist-ra                                   # python train.py --test
    mergan report runs/mnist-* --out results.md                       # python -m mergan.report
    mergan push runs/mnist-ra USER/mnist-ra                           # the Hub (mergan.hub)
    mergan demo --runs USER/mergan-runs                               # python demo_app.py

Each command hands its arguments to the module that owns it, so ``mergan CMD --help`` is that module's help.
"""
from __future__ import annotations

import sys
from typing import Callable


def _train(argv):
    import train

    return train.main(argv)


def _test(argv):
    import train

    return train.main(["--test", *argv])


def _module(name: str, *prefix: str) -> Callable:
    def run(argv):
        import importlib

        return importlib.import_module(name).main([*prefix, *argv])
    return run


def _demo(argv):
    """The demo; runs on the Hub are fetched first (the demo itself reads only huggingface_hub's cache unless
    HF_HUB_OFFLINE=0, so that a Space never looks anything up)."""
    import argparse
    import os

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--runs", default=os.environ.get("MERGAN_RUNS"))
    known, rest = p.parse_known_args(argv)
    if known.runs is not None:
        from .hub import HubError, hub_source, local_folder

        if hub_source(known.runs) is not None:
            try:
                argv = [*rest, "--runs", str(local_folder(known.runs, nested=True))]
            except HubError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
    import demo_app

    demo_app.main(argv)
    return 0


# name: (what it does, the function that runs it with the remaining arguments)
COMMANDS: dict[str, tuple[str, Callable]] = {
    "train": ("train a run, one class per task (python train.py)", _train),
    "test": ("evaluate a run: accuracy after every task, variety, FID; refreshes its card (train.py --test)", _test),
    "report": ("our runs beside the paper's Tables 1 and 2, as Markdown", _module("mergan.report")),
    "card": ("write a run's model card (README.md) again", _module("mergan.card")),
    "push": ("push an evaluated run to a Hugging Face Hub repository", _module("mergan.hub", "push")),
    "pull": ("fetch a run (or runs) from the Hub into huggingface_hub's cache", _module("mergan.hub", "pull")),
    "demo": ("the Gradio demo over local runs or a Hub repository of runs", _demo),
    "bench": ("time and count FLOPs of training iterations", _module("mergan.bench")),
    "train-classifier": ("train an evaluator on real images",
                         _module("mergan.evaluation", "train-classifier")),
    "export-live": ("write RUN/live.safetensors so the demo can keep teaching a run",
                    _module("mergan.live", "export")),
    "upgrade": ("convert run folders of mergan 0.1 (format 1) to this format", _module("mergan.runs", "upgrade")),
}


def usage() -> str:
    from . import __version__

    width = max(map(len, COMMANDS))
    return "\n".join([f"usage: mergan COMMAND [ARGS...]   (mergan {__version__}; mergan COMMAND --help: its options)",
                      "", "Memory Replay GANs: continual learning of class-conditional generators.", "",
                      "commands:", *(f"  {name.ljust(width)}  {about}" for name, (about, _) in COMMANDS.items())])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from . import __version__

        print(f"mergan {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (mergan --help)", file=sys.stderr)
        return 2
    program = sys.argv[0]
    sys.argv[0] = f"mergan {name}"   # argparse names the program after it in usage lines
    try:
        return COMMANDS[name][1](rest) or 0
    finally:
        sys.argv[0] = program


if __name__ == "__main__":
    sys.exit(main())
