"""The training step captured as CUDA graphs and replayed: a launch-free step on a CUDA device.

At the paper's sizes (width 32, batch 64) every kernel of a step is tiny, so an eager step costs its kernel
launches and Python, not its arithmetic (README, "On a GPU"). ``torch.compile`` cannot differentiate twice
(the gradient penalty), and ``make_graphed_callables`` is once-differentiable; capturing the whole step with
``torch.cuda.graph`` records whatever kernels run, the penalty's double backward included. Conditions, all met
by the trainer in this mode (``Trainer(..., cuda_graphs=...)``):

- no host synchronisation inside a step: no ``.item()``, no data-dependent shapes, no loss scaler (fp16 falls
  back to the eager step); the losses are read only at logged iterations, outside the graphs;
- random numbers drawn on the device, from the default CUDA generator (the one a graph may use), seeded by the
  run: the noise, the penalty's interpolation weights, joint training's labels;
- static inputs: each real batch is copied into the buffer the critic's graph reads;
- Adam with ``capturable=True`` (its step count on the device).

A task's first ``WARMUP`` iterations run eagerly on a side stream (they are real iterations; CUDA's libraries
pick their kernels there), then the generator update and the critic update (with the penalty and, with a lazy
penalty, without it) are captured once each and replayed for the rest of the task. Each task captures anew:
its previous generator, optimisers and labels are new. ``plan`` says whether a run can be captured and why not.
"""
from __future__ import annotations

import torch

WARMUP = 3   # eager iterations of each task before its steps are captured


def plan(device: torch.device, processes: int, mixed_precision: str, requested: bool | None) -> tuple[bool, str]:
    """Whether the training step is captured as CUDA graphs, and the log line that says which step runs and why.

    ``requested``: True or None (automatic) capture where it can hold, False never (``--no-cuda-graphs``)."""
    if requested is False:
        return False, "training step: eager (--no-cuda-graphs)"
    if device.type != "cuda":
        return False, f"training step: eager (CUDA graphs need a CUDA device, this run is on {device.type})"
    if processes > 1:
        return False, ("training step: eager (CUDA graphs are captured for one process; this run has "
                       f"{processes}: DDP's all-reduce runs outside a graph)")
    if mixed_precision == "fp16":
        return False, ("training step: eager (fp16's loss scaler checks for infinities on the host at every step; "
                       "use --mixed-precision bf16 or no for CUDA graphs)")
    if not hasattr(torch.cuda, "graph"):
        return False, "training step: eager (this PyTorch has no torch.cuda.graph)"
    return True, (f"training step: CUDA graphs (the generator and critic updates captured at iteration {WARMUP} of "
                  f"each task and replayed; --no-cuda-graphs for the eager step)")


def _static(batch):
    """A device copy of a batch (a tensor, or images and labels) to serve as a graph's input buffer."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_static(b) for b in batch)
    return batch.clone()


def _copy_into(static, batch) -> None:
    if isinstance(static, (tuple, list)):
        for s, b in zip(static, batch):
            _copy_into(s, b)
    else:
        static.copy_(batch, non_blocking=True)


class StepGraphs:
    """One task's generator update and critic updates, captured from the trainer's own step functions
    (``Trainer.generator_step``, ``Trainer.critic_step``) and replayed. ``batch``: a real batch already on the
    device, the shape of every later one; ``penalties``: the critic updates to capture (with the penalty, and
    without it where the penalty is lazy)."""

    def __init__(self, trainer, t: int, batch, penalties: tuple[bool, ...]):
        self.static_batch = _static(batch)
        self.graphs: dict = {}
        torch.cuda.synchronize()
        # Each update its own memory pool: the updates replay in any order, so they must not share one.
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = trainer.generator_step(t)
        self.graphs["G"] = (g, out)
        for penalty in penalties:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = trainer.critic_step(t, self.static_batch, penalty)
            self.graphs[("D", penalty)] = (g, out)
        torch.cuda.synchronize()

    def generator_step(self) -> torch.Tensor:
        """One generator update; returns the loss (a buffer the next replay overwrites)."""
        g, out = self.graphs["G"]
        g.replay()
        return out

    def critic_step(self, batch, penalty: bool) -> torch.Tensor:
        """One critic update on ``batch`` (copied into the graph's input buffer)."""
        _copy_into(self.static_batch, batch)
        g, out = self.graphs[("D", penalty)]
        g.replay()
        return out


class NoHostSync(torch.utils._python_dispatch.TorchDispatchMode):
    """Raises at any operation that would make the host wait for the device inside a captured step: reading a
    tensor's value (``.item()``, ``float()``, ``bool()``), or an operation whose output size depends on data
    (``nonzero``, boolean masks). Runs on the CPU too, so the step's code is checked where no GPU is."""

    SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_dim", "item",
               "is_nonzero", "equal", "allclose"}
    paused = False   # set around code checked elsewhere (Adam's capturable step, which runs only on a GPU)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
        if name in self.SYNCING and not self.paused:
            raise RuntimeError(f"{func} reads a device value on the host: it cannot be captured in a CUDA graph")
        return func(*args, **(kwargs or {}))
