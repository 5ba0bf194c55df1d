"""Train a class-conditional GAN one category per task with a continual-learning strategy.

    python train.py --strategy ra --preset quick --classes 0,1,2,3,4          # CPU, real MNIST digits, offline
    accelerate launch train.py --strategy jtr --preset paper                   # GPUs, the original's budget
    python train.py --test --out runs/mnist-ra                                 # evaluate a run (Table 1 metric)

One generator per task is written to ``OUT/task_XX.safetensors`` (load with ``mergan.load_generator``), with a
sample grid of every class seen so far in ``OUT/samples``. ``--resume`` continues an interrupted run; running
a finished ``--out`` again with a longer ``--classes`` trains only the new tasks.
"""
from __future__ import annotations

import argparse
import gc
import logging
import sys
from contextlib import ExitStack

from mergan.checkpoints import CheckpointError, WriteError
from mergan.config import DEFAULTS, PRESETS, SETTINGS, RunConfig, check_name, resolve
from mergan.data import DATASETS, DataError, load_task_data
from mergan.launch import LaunchError, check_group, use_cpu
from mergan.records import RecordError
from mergan.runs import FolderBusy, RunFolder
from mergan.strategies import STRATEGIES
from mergan.trackers import add_options as add_tracker_options, requested as requested_trackers
from mergan.trainer import Trainer, TrainingError

log = logging.getLogger("mergan")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)} (default mnist)")
    p.add_argument("--strategy", default="ra", help=f"one of {', '.join(STRATEGIES)} (default ra)")
    p.add_argument("--classes", default=None,
                   help="comma-separated classes in task order (default: all, in the paper's order)")
    p.add_argument("--preset", default="paper", help=f"budget preset: {', '.join(PRESETS)} (default paper)")
    for s in SETTINGS:   # every setting once (mergan.config.SETTINGS); None: the preset's
        p.add_argument(s.flag, dest=s.name, type=s.type, default=None, help=s.help,
                       **({"choices": list(s.choices)} if s.choices else {}))
    p.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<strategy>)")
    p.add_argument("--data-dir", default=None,
                   help="where the dataset lives (default ./data; MNIST: its files there, else the official files "
                        "shipped in assets/mnist; --test: the data the run was trained on)")
    p.add_argument("--lsun-cap", type=int, default=100_000, help="LSUN images per class (paper: 100,000)")
    p.add_argument("--image-size", type=int, default=32, choices=[32, 64], help="folder datasets: 32 or 64")
    p.add_argument("--channels", type=int, default=3, choices=[1, 3], help="folder datasets: 1 or 3")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="on a CUDA device, run the eager step instead of the step captured as CUDA graphs")
    add_tracker_options(p)   # --report-to, --tensorboard
    p.add_argument("--test", action="store_true", help="evaluate the run in --out instead of training")
    p.add_argument("--eval-samples", type=int, default=6400, help="generated images per class for --test")
    p.add_argument("--classifier", default=None,
                   help="--test: evaluator file (default: assets/classifiers/, then classifiers/, else trained once)")
    p.add_argument("--classifier-epochs", type=int, default=None,
                   help="--test: epochs when an evaluator has to be trained (default: chosen on validation images)")
    p.add_argument("--inception-weights", default=None,
                   help="--test: local inception_v3 weights for Inception FID (skipped without them)")
    return p


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def make_config(args, data) -> RunConfig:
    return resolve(data, strategy=args.strategy, preset=args.preset, seed=args.seed,
                   overrides={s.name: getattr(args, s.name) for s in SETTINGS})


def command_line(argv, resume: bool = False) -> str:
    """This command as typed (``resume``: the one that continues its run, with --resume)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python train.py", *args, *(["--resume"] if resume and "--resume" not in args else [])])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.test:
        from mergan.card import write_card_cli
        from mergan.evaluation import evaluate_run_cli
        return evaluate_run_cli(args) or write_card_cli(args.out)   # the card, with the new numbers
    try:
        for kind, name, choices in (("dataset", args.dataset, DATASETS), ("strategy", args.strategy, STRATEGIES),
                                    ("preset", args.preset, PRESETS)):
            check_name(kind, name, choices)
        args.trackers = requested_trackers(args.report_to, args.tensorboard)
    except ValueError as e:
        return fail(str(e))
    run = RunFolder(args.out or f"runs/{args.dataset}-{args.strategy}")
    try:
        cpu = use_cpu(args.cpu)   # a launch whose processes would not form a group is refused first
        data = load_task_data(args.dataset, args.data_dir or "data", args.classes, lsun_cap=args.lsun_cap,
                              image_size=args.image_size, channels=args.channels, first=saved_classes(run, args))
        cfg = make_config(args, data)
    except (DataError, RecordError, ValueError, LaunchError) as e:
        return fail(str(e))
    except OSError as e:   # an unreadable data folder
        return fail(f"cannot read {e.filename or args.data_dir}: {e.strerror or e}; check the path and its permissions")
    except KeyboardInterrupt:
        return fail("interrupted before training; nothing was written", 130)

    import torch
    from accelerate import Accelerator

    if args.mixed_precision == "fp16" and (cpu or not torch.cuda.is_available()):
        return fail("fp16 mixed precision needs a CUDA GPU; on the CPU use --mixed-precision bf16 or no")
    acc = Accelerator(cpu=cpu, mixed_precision=args.mixed_precision, log_with=args.trackers,
                      project_dir=str(run.logs_path))
    try:
        with ExitStack() as held:   # the run folder's lock, held until the command ends
            return train(args, argv, run, data, cfg, acc, held)
    except KeyboardInterrupt:       # before training began (during it: train says what was kept)
        return fail("interrupted before training; nothing was written", 130)
    finally:
        # The prepared networks hold the process group: released here, while Python is whole (left to the
        # interpreter's exit, a DDP rank's gloo threads could abort it, killing the other ranks with it). One
        # process holds none, and a full collection costs it 0.1-0.3 s of CPU for each command run in-process.
        if acc.num_processes > 1:
            acc.free_memory()
            gc.collect()
        acc.end_training()


def saved_classes(run: RunFolder, args) -> list[str] | None:
    """A run folder's classes, which the default class order keeps first (an extension adds the rest)."""
    if args.classes is not None or not run.has_config():
        return None
    try:
        return run.read_config().classes
    except (RecordError, OSError):
        return None   # the plan says what is wrong with it


def train(args, argv, run: RunFolder, data, cfg: RunConfig, acc, held: ExitStack) -> int:
    """Everything after the Accelerator exists: one writer, the plan, the training; every rank runs it, only
    the main process writes and speaks."""
    from accelerate.utils import broadcast_object_list

    from mergan.card import CardError, write_card
    from mergan.trackers import start as start_trackers

    main_process = acc.is_main_process
    say = fail if main_process else (lambda message, code=1: code)
    if not main_process:
        logging.getLogger().setLevel(logging.WARNING)
    fresh, existed = not run.has_config(), run.path.exists()   # a fresh start writes config.json with its first save

    def undo(data_failed: bool = False):
        if fresh and main_process:
            run.discard_unstarted(keep_folder=existed, saved=data_failed)

    try:
        check_group(acc)
        problem = None
        if main_process:
            try:
                held.enter_context(run.writing(command_line(argv), create=True))
            except (FolderBusy, OSError) as e:
                problem = str(e) if isinstance(e, FolderBusy) else f"cannot create --out {run.path}: {e.strerror or e}"
        problem = broadcast_object_list([problem])[0]
        if problem:
            return say(problem)   # (the folder is the holder's: nothing to undo)
        state, message = run.plan(cfg, args.resume, one_task=STRATEGIES[cfg.strategy].one_task)
        if run.has_config():
            cfg = cfg.continuing(run.read_config())   # the run's own model (its label tables grow as needed)
    except (LaunchError, CheckpointError, RecordError, ValueError) as e:
        undo()
        return say(str(e))
    if message:
        if main_process:
            print(message)
        return 0
    log.info("data: %s", data.source.description)
    log.info("run: %s, strategy %s, %d task(s) %s, %d generator updates per task, model %s, on %s x%d",
             run.path, cfg.strategy, len(cfg.classes), ",".join(cfg.classes), cfg.iters, cfg.model, acc.device,
             acc.num_processes)
    try:
        if main_process:
            run.remove_temp_files()    # left by a process killed while writing
        acc.wait_for_everyone()
        trainer = Trainer(cfg, data, run.path, acc, cuda_graphs=False if args.no_cuda_graphs else None)
        log.info("%s", trainer.step_line)
        if args.trackers:
            start_trackers(acc, cfg, trainer.record.run_id)
        trainer.train(state)
        if main_process:
            log.info("model card: %s", write_card(run))
    except WriteError as e:
        undo()
        return say(e.retry("run the same command with --resume" if run.state_path.is_file() else
                           "run the same command again"))
    except (TrainingError, CheckpointError, DataError, CardError) as e:
        undo(isinstance(e, DataError))   # fixing the data changes the run: a start that failed on it leaves nothing
        return say(str(e))
    except MemoryError:
        undo()
        return say("out of memory; lower --dim or --batch-size")
    except KeyboardInterrupt:
        undo()
        if run.state_path.is_file():
            return say(f"interrupted; the run continues from its last save with: {command_line(argv, resume=True)}",
                       130)
        return say("interrupted before the first save; nothing was kept: run the same command to start again", 130)
    if main_process:
        print(f"done: {len(cfg.classes)} task(s) in {run.path} (generators task_XX.safetensors, grids in samples/, "
              f"model card README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
