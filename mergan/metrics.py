"""The numbers of an evaluation: accuracy on generated images, variety (reverse accuracy; precision, recall,
density and coverage), FID.

The paper gives no protocol for reverse accuracy and FID (reference doc section 3.3); ours:

- Reverse accuracy: a fresh classifier of the main evaluator's architecture and number of epochs, trained only
  on images of the run's final generator, ``classifier.REVERSE_PER_CLASS`` (1,000) per class (fewer where the
  real training data has fewer, or ``eval_samples`` is smaller), then tested on the real test split (train when
  there is none). Its ceiling is the same recipe trained on as many real training images per class
  (``classifier.reverse_ceiling``, computed once with the evaluator and stored in its file).
- Precision and recall (Kynkaenniemi et al. 2019), density and coverage (Naeem et al. 2020), per class, k = 5,
  in the main evaluator's features: the class's real test images against as many of its generated images
  (the first ones of the accuracy's samples). Computed by ``prdc``, the reference implementation of Naeem et
  al. Recall is the share of real images that fall inside the generated images' k-nearest-neighbour balls: it
  falls when a generator draws its class in few ways. The ceiling: as many real *training* images of the class
  against the same real test images.
- FID in the evaluator's feature space (its 128/256-unit penultimate layer), per class and over all classes,
  final generator vs the real test split (train when there is none). Computed with torchmetrics'
  ``FrechetInceptionDistance`` given a custom feature module; the features are extracted once and shared with
  the accuracy. Not comparable with Inception FIDs, and noisy when a class has few real images.
- Inception FID only with local weights (``--inception-weights``): a torchvision ``inception_v3`` state dict,
  or torchmetrics' FID weights file (that one needs the ``torch-fidelity`` package). Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .classifier import EvaluationError, Evaluator, confusion_counts, fit_classifier, per_class_rates, rate
from .sampling import sample


class _Precomputed(nn.Module):
    """The feature module handed to torchmetrics: features are extracted once, by the evaluator."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D); None with fewer than 2 each."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(a) < 2 or len(b) < 2:
        return None
    fid = FrechetInceptionDistance(feature=_Precomputed(a.shape[1]), reset_real_features=True)
    fid.update(a.double(), real=True)
    fid.update(b.double(), real=False)
    return round(max(0.0, float(fid.compute())), 4)


def generated_accuracy(G, run_classes: list[str], evaluator: Evaluator, n: int, seed: int = 0,
                       device=None, keep: bool = False):
    """Accuracy of the evaluator on ``n`` generated images of each class (label i draws ``run_classes[i]``).

    Returns ({class: accuracy}, {class: (uint8 images, features)} if ``keep`` else None).
    """
    acc, kept = {}, {} if keep else None
    for label, name in enumerate(run_classes):
        images = sample(G, torch.full((n,), label), seed, device)
        preds, feats = evaluator.run(images)
        acc[name] = rate(preds == evaluator.index(name))
        if keep:
            kept[name] = (images, feats)
    return acc, kept


def reverse_accuracy(cfg: dict, fake: dict[str, torch.Tensor], real_x: torch.Tensor, real_y: torch.Tensor,
                     classes: list[str], epochs: int, seed: int, device) -> tuple[dict, float, dict]:
    """Train on generated images only (``fake[class]``, label = index in ``classes``), test on real ones:
    ({class: share of its real test images recognised}, accuracy over all of them, {class: {class its real
    images were taken for: count}} (``classifier.confusion_counts``))."""
    x = torch.cat([fake[c] for c in classes])
    y = torch.cat([torch.full((len(fake[c]),), k) for k, c in enumerate(classes)])
    net = fit_classifier({**cfg, "n_classes": len(classes)}, x, y, epochs, seed, device)
    preds, _ = Evaluator(net, {}).run(real_x)
    return per_class_rates(preds, real_y, classes), rate(preds == real_y), confusion_counts(preds, real_y, classes)


PRDC_K = 5


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = PRDC_K) -> dict[str, float] | None:
    """Precision, recall, density and coverage of feature sets (N, D) with ``k`` nearest neighbours (``prdc``,
    Naeem et al. 2020's reference code; it prints a line, kept out of the output); None with fewer than k + 2
    samples on either side (each needs k neighbours besides itself, and one more to rank them)."""
    import contextlib
    import io

    from prdc import compute_prdc

    if min(len(real), len(fake)) < k + 2:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        values = compute_prdc(real.double().numpy(), fake.double().numpy(), nearest_k=k)
    return {key: round(float(values[key]), 6) for key in ("precision", "recall", "density", "coverage")}


# ----------------------------------------------------------------------------------------------- Inception FID

class _InceptionFeatures(nn.Module):
    """torchvision's inception_v3 pool features (2048) of uint8 images: [-1, 1], 299x299, grey to RGB."""

    def __init__(self, state: dict):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits="AuxLogits.fc.weight" in state, init_weights=False,
                           transform_input=False, num_classes=state["fc.weight"].shape[0])
        net.load_state_dict(state)
        net.fc = nn.Identity()
        self.net = net.eval()
        self.num_features = 2048

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div(127.5).sub(1).expand(-1, 3, -1, -1)
        # The torchvision weights take ImageNet-normalised input and turn it into [-1, 1] when transform_input
        # is on; we give [-1, 1] directly with it off, which is the same.
        return self.net(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))


def inception_fid(weights: str | Path, real: torch.Tensor, fake: torch.Tensor, device) -> dict:
    """FID with local Inception weights between uint8 image sets; nothing is downloaded."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = Path(weights)
    if not path.is_file():
        raise EvaluationError(f"no Inception weights at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EvaluationError(f"cannot read Inception weights {path} ({type(e).__name__}); give a torchvision "
                              f"inception_v3 state dict or torchmetrics' FID weights file") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise EvaluationError(f"{path} is not an inception_v3 state dict")
    if state["fc.weight"].shape[0] == 1008:   # the TF-ported FID Inception that torchmetrics and torch-fidelity use
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise EvaluationError(f"{path} is the FID Inception weights file; reading it needs torch-fidelity "
                                  f"(pip install torch-fidelity), or give a torchvision inception_v3 state "
                                  f"dict") from None
        fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
        kind = "torchmetrics FID Inception (torch-fidelity), 2048-d pool features"
    else:
        try:
            fid = FrechetInceptionDistance(feature=_InceptionFeatures(state))
        except RuntimeError as e:
            raise EvaluationError(f"{path} does not fit torchvision's inception_v3 ({str(e).splitlines()[0]})") from e
        kind = "torchvision inception_v3, 2048-d pool features"
    fid = fid.to(device)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), 64):
            batch = images[i:i + 64].to(device)
            fid.update(batch.expand(-1, 3, -1, -1).contiguous(), real=is_real)
    return {"overall": float(fid.compute()), "features": kind, "weights": str(path), "real_images": len(real),
            "fake_images": len(fake)}
