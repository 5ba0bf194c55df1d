"""Memory Replay GANs (Wu et al., NeurIPS 2018) in PyTorch: continual learning of class-conditional generators.

    from mergan import load_generator, sample
    G, meta = load_generator("runs/mnist-ra/task_04.safetensors")
    images = sample(G, labels=[0, 0, 3], seed=0)     # uint8 (N, C, H, W); label i draws meta.classes[i]
"""
from .checkpoints import CheckpointError, load_generator, read_metadata, save_generator
from .sampling import generate, sample

__version__ = "0.2.0"   # 0.2: run folders of format 2 (0.1 wrote format 1)
__all__ = ["load_generator", "sample", "generate", "save_generator", "read_metadata", "CheckpointError"]
