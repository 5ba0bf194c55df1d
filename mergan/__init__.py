"""Memory Replay GANs (Wu et al., NeurIPS 2018) in PyTorch: continual learning of class-conditional generators.

    from mergan import load_generator, sample
    G, meta = load_generator("runs/mnist-ra/task_04.safetensors")   # or a run folder, or a Hub id "owner/name"
    images = sample(G, labels=[0, 0, 3], seed=0)     # uint8 (N, C, H, W); label i draws meta.classes[i]
"""
__version__ = "0.2.0"   # 0.2: run folders of format 2 (0.1 wrote format 1)
__all__ = ["load_generator", "sample", "generate", "save_generator", "read_metadata", "CheckpointError"]

_FROM = {"load_generator": "checkpoints", "save_generator": "checkpoints", "read_metadata": "checkpoints",
         "CheckpointError": "checkpoints", "sample": "sampling", "generate": "sampling"}


def __getattr__(name: str):
    """The names above, imported on first use: ``mergan --help`` and the Hub's commands start without torch."""
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    raise AttributeError(f"module 'mergan' has no attribute {name!r}")
