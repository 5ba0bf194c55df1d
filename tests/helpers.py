"""Shared by the tests: a task file's metadata made by hand (no training run), a free local port."""
import socket

from mergan.config import RunConfig
from mergan.records import ClassData, DataSource, TaskMeta
from mergan.strategies import strategy_class


def task_meta(model: dict, *, task: int = 0, classes=("0",), strategy: str = "sft", dataset: str = "mnist",
              run_id: str = "test-run", deliverable: str | None = None, **config) -> TaskMeta:
    """The metadata train.py would write for ``task`` of a run of ``strategy`` on ``classes``."""
    classes = [str(c) for c in classes]
    source = DataSource(dataset, "test data", None, {c: ClassData(1, "0" * 16) for c in classes})
    cls = strategy_class(strategy)
    cfg = RunConfig(dataset=dataset, strategy=strategy, classes=classes, iters=config.pop("iters", 1),
                    model={k: v for k, v in model.items() if k != "seen"}, data_source=source, **config)
    return TaskMeta(task=task, classes=classes[: task + 1], iters=cfg.iters, model=model,
                    deliverable=deliverable or cls.task_file, strategy_name=strategy, dataset=dataset,
                    data_source=source, strategy=cls.info(), config=cfg, run_id=run_id)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
