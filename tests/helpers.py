"""Records made by hand for tests: a task file's metadata without a training run."""
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
