"""The loop's own rules (``mergan.py:344-392``), watched on a real Trainer through counting wrappers."""
import copy

import pytest
import torch
from accelerate import Accelerator

from mergan import losses
from mergan.data import load_task_data
from mergan.models import model_config
from mergan.config import RunConfig
from mergan.strategies import build_strategy
from mergan.trainer import Trainer


def make(tmp_path, strategy="sft", classes="0,1", **settings):
    data = load_task_data("mnist", "data", classes)
    cfg = RunConfig(dataset="mnist", strategy=strategy, classes=data.classes, iters=3,
                    model=model_config("dcgan32", channels=1, dim=4), data_source=data.source, batch_size=8,
                    save_every=1000, log_every=1000, **settings)
    return Trainer(cfg, data, tmp_path, Accelerator(cpu=True), build_strategy(cfg))


class Watch:
    """Wraps the trainer's two steps and records what the rules are about."""

    def __init__(self, tr):
        self.tr, self.calls, self.opt_at_first_g = tr, [], {}
        critic, generator = tr.critic_step, tr.generator_step

        def critic_step(t, batch, penalty=True):
            out = critic(t, batch, penalty)
            self.calls.append((t, "D", penalty))
            return out

        def generator_step(t):
            if t not in self.opt_at_first_g:
                self.opt_at_first_g[t] = (id(tr.opt_G), len(tr.opt_G.state), id(tr.opt_D))
            d_grads = [None if p.grad is None else p.grad.clone() for p in tr.D_raw.parameters()]
            ema_before = [p.clone() for p in tr.G_ema.parameters()] if tr.G_ema is not None else None
            out = generator(t)
            for before, p in zip(d_grads, tr.D_raw.parameters()):   # no critic gradient from the generator step
                assert (before is None and p.grad is None) or torch.equal(before, p.grad)
            if ema_before is not None:
                for e0, e, g in zip(ema_before, tr.G_ema.parameters(), tr.G_raw.parameters()):
                    torch.testing.assert_close(e, tr.cfg.ema * e0 + (1 - tr.cfg.ema) * g)
            self.calls.append((t, "G", None))
            return out

        tr.critic_step, tr.generator_step = critic_step, generator_step


def test_iteration_zero_is_critic_only_then_five_critic_steps_per_generator_step(tmp_path):
    tr = make(tmp_path)
    w = Watch(tr)
    tr.train()
    for t in (0, 1):
        kinds = "".join(k for task, k, _ in w.calls if task == t)
        assert kinds == "DDDDD" + "GDDDDD" * 3   # iters=3 generator updates, 5 * (3 + 1) critic updates


def test_adam_is_reset_at_every_task(tmp_path):
    tr = make(tmp_path)
    w = Watch(tr)
    tr.train()
    (g0, n0, d0), (g1, n1, d1) = w.opt_at_first_g[0], w.opt_at_first_g[1]
    assert g0 != g1 and d0 != d1          # new optimisers for the new task ...
    assert n0 == 0 and n1 == 0            # ... with no moments before their first generator update


def test_critic_carries_over_between_tasks_exactly(tmp_path):
    tr = make(tmp_path)
    snapshots = {}
    end_task = tr.strategy.end_task

    def watch_end(ctx):
        snapshots[ctx.task] = copy.deepcopy(ctx.D_raw.state_dict())
        end_task(ctx)

    begin_task = tr.strategy.begin_task

    def watch_begin(ctx):
        if ctx.task == 1:
            for k, v in ctx.D_raw.state_dict().items():
                assert torch.equal(v, snapshots[0][k]), k
        begin_task(ctx)

    tr.strategy.end_task, tr.strategy.begin_task = watch_end, watch_begin
    tr.train()
    assert 0 in snapshots and 1 in snapshots


def test_lazy_penalty_every_fourth_critic_step_weighted_by_four(tmp_path, monkeypatch):
    tr = make(tmp_path, classes="0", loss="ns-r1", critic_iters=1, penalty_every=4, gp_weight=0.5)
    w = Watch(tr)
    seen = []
    real_r1 = losses.r1_penalty

    def counting_r1(d_real, real, loss_scale=None):
        value = real_r1(d_real, real, loss_scale)
        seen.append(float(value.detach()))
        return value

    monkeypatch.setattr(losses, "r1_penalty", counting_r1)
    tr.train()
    flags = [p for _, k, p in w.calls if k == "D"]
    assert flags == [True, False, False, False]   # critic steps 0..3 of a 3-update task: the first carries it
    assert len(seen) == 1


def test_r1_weight_is_gamma_over_two_times_k(tmp_path, monkeypatch):
    """With a penalty that is the only term that differs, the loss difference is gamma/2 * k * R1."""
    tr = make(tmp_path, classes="0", loss="ns-r1", critic_iters=1, penalty_every=4, gp_weight=0.5)
    tr.new_optimizers()
    monkeypatch.setattr(losses, "r1_penalty", lambda d, x, s=None: torch.tensor(3.0))
    from mergan.batches import BatchStream

    state = copy.deepcopy(tr.rng.get_state())
    stream = BatchStream(tr.data.train["0"], 8, 0)
    with_penalty = float(tr.critic_step(0, next(stream), penalty=True))
    # the same batch, noise and weights without the penalty
    tr2 = make(tmp_path, classes="0", loss="ns-r1", critic_iters=1, penalty_every=4, gp_weight=0.5)
    tr2.new_optimizers()
    tr2.rng.set_state(state)
    without = float(tr2.critic_step(0, next(BatchStream(tr2.data.train["0"], 8, 0)), penalty=False))
    assert with_penalty - without == pytest.approx(0.5 / 2 * 4 * 3.0, rel=1e-4)


def test_ema_generator_is_delivered_and_saved_in_the_state(tmp_path):
    tr = make(tmp_path, classes="0", loss="ns-r1", critic_iters=1, ema=0.9)
    Watch(tr)   # checks ema = 0.9 * ema + 0.1 * G after every generator update
    tr.train()
    from mergan.checkpoints import load_generator, load_state

    G, _ = load_generator(tmp_path / "task_00.safetensors")
    for a, b in zip(G.state_dict().values(), tr.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(tr.G_ema.parameters(), tr.G_raw.parameters()))
    state = load_state(tmp_path / "state.pt")
    assert all(torch.equal(state.G_ema[k], v) for k, v in tr.G_ema.state_dict().items())


def test_one_step_schedule_for_training_and_live_teaching(tmp_path):
    """``task_steps`` is the one schedule: teaching a paper-preset run live makes 5 critic updates per generator
    update, with the penalty on the same steps as training."""
    import train
    from accelerate.state import AcceleratorState
    from mergan import live

    out = tmp_path / "paper"
    assert train.main(["--strategy", "ra", "--preset", "paper", "--classes", "0,1", "--iters", "2", "--dim", "4",
                       "--batch-size", "8", "--penalty-every", "2", "--cpu", "--out", str(out)]) == 0
    AcceleratorState._reset_state(True)
    live.export(out)
    calls = []
    critic, generator = Trainer.critic_step, Trainer.generator_step

    def watch_critic(self, t, batch, penalty=True):
        calls.append(("D", penalty))
        return critic(self, t, batch, penalty)

    def watch_generator(self, t):
        calls.append(("G", None))
        return generator(self, t)

    Trainer.critic_step, Trainer.generator_step = watch_critic, watch_generator
    try:
        steps = [s.updates for s in live.teach(out, "2", updates=3, every=1)]
    finally:
        Trainer.critic_step, Trainer.generator_step = critic, generator
    assert steps == [0, 1, 2, 3]
    kinds = "".join(k for k, _ in calls)
    assert kinds == "DDDDD" + "GDDDDD" * 3          # iteration 0 critic only, then 5 critic updates per update
    # the penalty on every 2nd critic step of the task, counted as in training: (it * 5 + j) % 2 == 0
    assert [p for k, p in calls if k == "D"] == [(i % 2 == 0) for i in range(20)]
