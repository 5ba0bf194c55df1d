"""The training step captured as CUDA graphs (``mergan.graphs``): what can be checked on the CPU (when capture is
chosen, and that no step of any strategy reads a device value on the host), and on a CUDA device the captured
step against the eager one over a few hundred iterations."""
import dataclasses

import pytest
import torch
from accelerate import Accelerator

from mergan import graphs
from mergan.config import resolve
from mergan.data import load_task_data
from mergan.graphs import NoHostSync
from mergan.strategies import STRATEGIES
from mergan.trainer import Trainer

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("device, processes, precision, requested, captured, says", [
    ("cuda", 1, "no", None, True, "CUDA graphs"),
    ("cuda", 1, "bf16", None, True, "CUDA graphs"),
    ("cuda", 1, "no", False, False, "--no-cuda-graphs"),
    ("cuda", 1, "fp16", None, False, "fp16's loss scaler"),
    ("cuda", 2, "no", None, False, "for one process"),
    ("cpu", 1, "no", None, False, "need a CUDA device"),
])
def test_capture_is_chosen_where_it_can_hold_and_says_why_not(device, processes, precision, requested, captured,
                                                              says):
    on, line = graphs.plan(torch.device(device), processes, precision, requested)
    assert on is captured and line.startswith("training step: ") and says in line


def test_the_guard_catches_a_host_read():
    x = torch.ones(3)
    with pytest.raises(RuntimeError, match="cannot be captured"), NoHostSync():
        float(x.sum())
    with pytest.raises(RuntimeError, match="cannot be captured"), NoHostSync():
        torch.nonzero(x)
    with NoHostSync():
        (x * 2).sum()


def _trainer(tmp_path, strategy, loss, **kw):
    data = load_task_data("mnist", "data", "0,1")
    overrides = {"dim": 4, "batch_size": 8, "iters": 2, "loss": loss, "critic_iters": 2, "penalty_every": 2,
                 "replay_batch": 8, "ema": 0.9}
    cfg = resolve(data, strategy=strategy, preset="quick", overrides=overrides)
    return Trainer(cfg, data, tmp_path, Accelerator(cpu=True), **kw)


@pytest.mark.parametrize("strategy, loss", [(s, ("wgan-gp", "ns-r1")[k % 2]) for k, s in enumerate(sorted(STRATEGIES))]
                         + [("ra", "ns-r1"), ("jtr", "wgan-gp")])
def test_no_step_of_any_strategy_reads_the_device_on_the_host(tmp_path, strategy, loss):
    """What a CUDA graph needs of the step's code, checked on the CPU: the generator update and the critic update
    (with and without the penalty), in a task with replays, read no device value on the host."""
    import copy

    from mergan.batches import BatchStream

    holder = {}
    tr = _trainer(tmp_path, strategy, loss, device_rng=True, previous=lambda t: copy.deepcopy(
        holder["tr"].strategy.deliverable(holder["tr"].context(t))[0]).requires_grad_(False))
    holder["tr"] = tr
    t = tr.strategy.plan(2, 1)[0][-1]            # task 1 (joint: its one task of both classes)
    tr.finish_task(0)                            # EWC: a Fisher to pull towards
    steps = tr.task_steps(t, 1, save=False)
    next(steps)                                  # iteration 0 sets the task up (the previous generator loaded)
    real = tr._to_device(next(BatchStream(tr.strategy.task_data(tr.data, tr.cfg.classes, t)[0], 8, 0)))
    guard = NoHostSync()

    def unguarded(step):   # Adam's own step: capturable=True (the GPU's) reads nothing on the host; the CPU's does
        def run(*a, **k):
            guard.paused = True
            try:
                return step(*a, **k)
            finally:
                guard.paused = False
        return run

    tr.opt_G.step, tr.opt_D.step = unguarded(tr.opt_G.step), unguarded(tr.opt_D.step)
    with guard:
        tr.generator_step(t)
        tr.critic_step(t, real, penalty=True)
        tr.critic_step(t, real, penalty=False)
    steps.close()


def test_on_the_cpu_the_step_is_eager_and_draws_on_the_cpu(tmp_path):
    tr = _trainer(tmp_path, "ra", "ns-r1")
    assert not tr.capture and tr.rng.device.type == "cpu" and "eager" in tr.step_line
    tr.new_optimizers()
    assert tr.opt_G.param_groups[0]["capturable"] is False


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device: run on a GPU machine (scripts/gpu_check.sh)")
@pytest.mark.parametrize("strategy, loss", [("ra", "wgan-gp"), ("jtr", "ns-r1"), ("sft", "wgan-gp"),
                                            ("joint", "ns-r1")])
def test_captured_step_equals_the_eager_step(tmp_path, strategy, loss):
    """The same run, captured and eager (both drawing on the device, from the same seed), over two tasks of 150
    updates: the same losses at every logged iteration and the same weights at the end, to float tolerance."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    data = load_task_data("mnist", "data", "0,1")
    overrides = {"dim": 16, "batch_size": 64, "iters": 150, "loss": loss, "save_every": 1000}
    runs = {}
    for captured in (True, False):
        cfg = resolve(data, strategy=strategy, preset="paper" if loss == "wgan-gp" else "quick", overrides=overrides)
        cfg = dataclasses.replace(cfg, log_every=10)
        tr = Trainer(cfg, data, tmp_path / str(captured), Accelerator(), cuda_graphs=captured, device_rng=True)
        assert tr.capture is captured
        losses = []
        for t in tr.strategy.plan(2, cfg.iters)[0]:
            losses += [(s.task, s.iteration, s.logs) for s in tr.task_steps(t, tr.strategy.plan(2, cfg.iters)[1])
                       if s.logs]
            tr.finish_task(t)
            tr.deliver(t, cfg.iters)
        runs[captured] = (losses, {k: v.detach().cpu() for k, v in tr.G_raw.state_dict().items()},
                          {k: v.detach().cpu() for k, v in tr.D_raw.state_dict().items()})
    (l1, g1, d1), (l0, g0, d0) = runs[True], runs[False]
    assert [(t, i) for t, i, _ in l1] == [(t, i) for t, i, _ in l0]
    for (_, _, a), (_, _, b) in zip(l1, l0):
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), (k, a, b)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-3, atol=1e-4)
    for k in d0:
        torch.testing.assert_close(d1[k], d0[k], rtol=1e-3, atol=1e-4)
