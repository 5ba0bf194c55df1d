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
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from mergan.checkpoints import CheckpointError, atomic_write_text, load_state, task_path
from mergan.config import DEFAULTS, PRESETS, preset_values
from mergan.data import DATASETS, DataError, load_task_data
from mergan.losses import LOSSES
from mergan.models import model_config
from mergan.strategies import STRATEGIES
from mergan.trainer import Interrupted, RunConfig, Trainer, TrainingError, config_mismatch

log = logging.getLogger("mergan")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)} (default mnist)")
    p.add_argument("--strategy", default="ra", help=f"one of {', '.join(STRATEGIES)} (default ra)")
    p.add_argument("--classes", default=None,
                   help="comma-separated classes in task order (default: all, in the paper's order)")
    p.add_argument("--preset", default="paper", help=f"budget preset: {', '.join(PRESETS)} (default paper)")
    p.add_argument("--iters", type=int, default=None, help="generator updates per task (overrides the preset)")
    p.add_argument("--dim", type=int, default=None, help="network width (default: the paper's, 32 or 64)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's; paper 64)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the preset's; paper 1e-4)")
    p.add_argument("--loss", default=None, choices=list(LOSSES),
                   help="the game: wgan-gp (the original's) or ns-r1 (default: the preset's)")
    p.add_argument("--critic-iters", type=int, default=None,
                   help="critic updates per generator update (default: the preset's; paper 5)")
    p.add_argument("--penalty-weight", type=float, default=None,
                   help="WGAN-GP's lambda or R1's gamma (default: the preset's; paper 10)")
    p.add_argument("--penalty-every", type=int, default=None,
                   help="gradient penalty on every k-th critic step, weighted by k (default: the preset's; paper 1)")
    p.add_argument("--betas", default=None, help="Adam's beta1,beta2 (default: the preset's; paper 0,0.9)")
    p.add_argument("--ema", type=float, default=None,
                   help="decay of the generator's weight average that is delivered and replayed; 0 for none "
                        "(default: the preset's; paper 0)")
    p.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<strategy>)")
    p.add_argument("--data-dir", default="data", help="where the dataset lives (default ./data)")
    p.add_argument("--mnist-source", default="auto", choices=["auto", "full", "mnist5k"],
                   help="auto: full MNIST if found or downloadable, else the 5,000 real digits shipped in assets/")
    p.add_argument("--lsun-cap", type=int, default=100_000, help="LSUN images per class (paper: 100,000)")
    p.add_argument("--image-size", type=int, default=32, choices=[32, 64], help="folder datasets: 32 or 64")
    p.add_argument("--channels", type=int, default=3, choices=[1, 3], help="folder datasets: 1 or 3")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--ra-lambda", type=float, default=None,
                   help="RA weight (default 1e-3, SVHN 1e-2, for batch 64: times 64/batch at another "
                        "batch, times 3 in the quick preset)")
    p.add_argument("--ewc-lambda", type=float, default=DEFAULTS["ewc_lambda"], help="EWC weight (default 1e9)")
    p.add_argument("--save-every", type=int, default=None, help="iterations between resumable state saves")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--tensorboard", action="store_true", help="log losses to OUT/logs for TensorBoard")
    p.add_argument("--test", action="store_true", help="evaluate the run in --out instead of training")
    p.add_argument("--eval-samples", type=int, default=6400, help="generated images per class for --test")
    p.add_argument("--classifier", default=None,
                   help="--test: evaluator file (default: assets/classifiers/, then classifiers/, else trained once)")
    p.add_argument("--classifier-epochs", type=int, default=None,
                   help="--test: epochs when the evaluator has to be trained (default 15)")
    p.add_argument("--inception-weights", default=None,
                   help="--test: local inception_v3 weights for Inception FID (skipped without them)")
    return p


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def make_config(args, data) -> RunConfig:
    if args.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {args.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    pv = preset_values(args.preset, args.dataset)
    iters = args.iters if args.iters is not None else pv["iters"]
    if iters < 1:
        raise ValueError(f"--iters must be at least 1, got {iters}")
    dim = args.dim if args.dim is not None else pv["dim"]
    if dim is not None and dim < 1:
        raise ValueError(f"--dim must be positive, got {dim}")
    arch = "dcgan32" if data.size == 32 else "resnet64"
    model = model_config(arch, channels=data.channels, n_classes=len(data.all_classes), dim=dim,
                         z_dim=DEFAULTS["z_dim"])
    def pick(name, key=None):
        value = getattr(args, name)
        return pv[key or name] if value is None else value

    batch_size = pick("batch_size")
    if batch_size < 2:
        raise ValueError(f"--batch-size must be at least 2 (batch norm needs two samples), got {batch_size}")
    lr = pick("lr")
    if not lr > 0:
        raise ValueError(f"--lr must be positive, got {lr}")
    critic_iters, penalty_every = pick("critic_iters"), pick("penalty_every")
    if critic_iters < 1:
        raise ValueError(f"--critic-iters must be at least 1, got {critic_iters}")
    if penalty_every < 1:
        raise ValueError(f"--penalty-every must be at least 1, got {penalty_every}")
    gp_weight = pick("penalty_weight", "gp_weight")
    if not gp_weight >= 0:
        raise ValueError(f"--penalty-weight must be 0 or more, got {gp_weight}")
    ema = pick("ema")
    if not 0 <= ema < 1:
        raise ValueError(f"--ema must be in [0, 1), got {ema}")
    beta1, beta2 = pv["beta1"], pv["beta2"]
    if args.betas is not None:
        try:
            beta1, beta2 = (float(b) for b in args.betas.split(","))
        except ValueError:
            raise ValueError(f"--betas takes two numbers as beta1,beta2 (paper 0,0.9), got {args.betas!r}") from None
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"--betas must each be in [0, 1), got {args.betas!r}")
    save_every = args.save_every or pv["save_every"]
    if save_every < 1:
        raise ValueError(f"--save-every must be at least 1, got {save_every}")
    ra_lambda = args.ra_lambda
    if args.strategy == "ra" and ra_lambda is None:
        from mergan.strategies import default_ra_lambda
        ra_lambda = float(f"{default_ra_lambda(args.dataset, batch_size) * pv['ra_scale']:.6g}")
    return RunConfig(dataset=args.dataset, strategy=args.strategy, classes=list(data.classes), iters=iters,
                     model=model, data_source=data.source, seed=args.seed, ra_lambda=ra_lambda,
                     ewc_lambda=args.ewc_lambda, save_every=save_every, log_every=pv["log_every"],
                     batch_size=batch_size, lr=lr, critic_iters=critic_iters, beta1=beta1, beta2=beta2,
                     gp_weight=gp_weight, loss=pick("loss"), penalty_every=penalty_every, ema=ema)


def plan_run(out: Path, cfg: RunConfig, resume: bool):
    """Decide what to do with the run folder: returns (state or None, message or None); raises on conflict."""
    saved_path = out / "config.json"
    if not saved_path.is_file():
        if resume:
            raise ValueError(f"nothing to resume in {out}: it holds no run; drop --resume to start one")
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"--out {out} exists and is not a run folder; choose an empty or new folder")
        return None, None
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{saved_path} is unreadable ({e}); restore it or use another --out")
    why = config_mismatch(saved, cfg)
    if why:
        raise ValueError(f"{out} holds a different run ({why}); use the same settings or another --out")
    state_path = out / "state.pt"
    state = load_state(state_path) if state_path.is_file() else None
    if state is None:
        if task_path(out, 0).is_file():
            raise ValueError(f"{out} holds generators but no training state (state.pt, with the critic and the "
                             f"optimisers), so it cannot be continued; train into another --out")
        if not resume:
            raise ValueError(f"{out} holds a run that was interrupted before its first save; pass --resume to "
                             f"restart it, or choose another --out")
        return None, None
    n_done = state["task"] + 1 if state["task_done"] else state["task"]
    if cfg.strategy == "joint" and len(cfg.classes) != len(saved["classes"]):
        raise ValueError("a joint run trains all its classes at once and cannot be extended; "
                         "use another --out for a joint run on more classes")
    if n_done >= len(cfg.classes):
        return None, f"{out} already has all {len(cfg.classes)} tasks; nothing to train (add classes to extend it)"
    if n_done < len(saved["classes"]) and not resume:
        where = f"after task {state['task']}" if state["task_done"] else \
            f"in task {state['task']}, iteration {state['iter']}"
        raise ValueError(f"{out} holds an interrupted run ({where}); pass --resume to continue it, "
                         f"or choose another --out")
    done_tasks = [] if cfg.strategy == "joint" else range(state["task"] + int(state["task_done"]))
    for t in done_tasks:
        if not task_path(out, t).is_file():
            raise CheckpointError(f"{task_path(out, t)} is missing, but the run's state says that task is done; "
                                  f"restore it or start a new --out")
    return state, None


def main(argv=None, stop_after: int | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.test:
        from mergan.evaluation import evaluate_run_cli
        return evaluate_run_cli(args)
    if args.dataset not in DATASETS:
        return fail(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    if args.strategy not in STRATEGIES:
        return fail(f"unknown strategy {args.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if args.preset not in PRESETS:
        return fail(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    out = Path(args.out or f"runs/{args.dataset}-{args.strategy}")
    try:
        data = load_task_data(args.dataset, args.data_dir, args.classes, mnist_source=args.mnist_source,
                              lsun_cap=args.lsun_cap, image_size=args.image_size, channels=args.channels)
        cfg = make_config(args, data)
        state, message = plan_run(out, cfg, args.resume)
    except (DataError, CheckpointError, ValueError) as e:
        return fail(str(e))
    if message:
        print(message)
        return 0

    import torch
    from accelerate import Accelerator

    if args.mixed_precision == "fp16" and (args.cpu or not torch.cuda.is_available()):
        return fail("fp16 mixed precision needs a CUDA GPU; on the CPU use --mixed-precision bf16 or no")
    acc = Accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision,
                      log_with="tensorboard" if args.tensorboard else None, project_dir=str(out / "logs"))
    if not acc.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    log.info("data: %s", data.source)
    log.info("run: %s, strategy %s, %d task(s) %s, %d generator updates per task, model %s, on %s x%d",
             out, cfg.strategy, len(cfg.classes), ",".join(cfg.classes), cfg.iters, cfg.model, acc.device,
             acc.num_processes)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    acc.wait_for_everyone()
    if args.tensorboard:
        acc.init_trackers("mergan", config={k: str(v) for k, v in asdict(cfg).items()})
    strategy = STRATEGIES[cfg.strategy](cfg.dataset, cfg.ra_lambda, cfg.ewc_lambda)
    trainer = Trainer(cfg, data, out, acc, strategy, stop_after=stop_after)
    try:
        trainer.train(state)
    except (TrainingError, CheckpointError) as e:
        return fail(str(e))
    finally:
        acc.end_training()
    if acc.is_main_process:
        print(f"done: {len(cfg.classes)} task(s) in {out} (generators task_XX.safetensors, grids in samples/)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Interrupted as e:
        sys.exit(fail(str(e)))
