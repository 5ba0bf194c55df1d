"""Pictures of forgetting: a grid and a gif of every class after every task, and the accuracy plot."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import atomic_write

SEED = 1234   # fixed noise of the pictures, the trainer's sample_seed


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1
        return ImageFont.load_default()


def _pil(images: torch.Tensor, scale: int = 1):
    """uint8 (N, C, H, W) -> one PIL image with the N images side by side."""
    from PIL import Image

    row = torch.cat(list(images), dim=2).permute(1, 2, 0).numpy()
    pil = Image.fromarray(row[:, :, 0] if row.shape[2] == 1 else row).convert("RGB")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def forgetting_grid(samples: list[dict], classes: list[str], columns: list[str], per_cell: int, size: int):
    """A row per class, a column per checkpoint; grey where the class was not learned yet (PIL image)."""
    from PIL import Image, ImageDraw

    pad, left, top = 6, 10 + 8 * max(len(c) for c in classes), 22
    cell_w, cell_h = per_cell * size, size
    img = Image.new("RGB", (left + len(columns) * (cell_w + pad), top + len(classes) * (cell_h + pad)), "white")
    draw, font = ImageDraw.Draw(img), _font(12)
    for j, title in enumerate(columns):
        draw.text((left + j * (cell_w + pad), 4), title, fill="black", font=font)
    for i, c in enumerate(classes):
        y = top + i * (cell_h + pad)
        draw.text((4, y + cell_h // 2 - 6), c, fill="black", font=font)
        for j, cells in enumerate(samples):
            x = left + j * (cell_w + pad)
            if c in cells:
                img.paste(_pil(cells[c][:per_cell]), (x, y))
            else:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=(160, 160, 160))
    return img


def forgetting_frames(samples: list[dict], classes: list[str], columns: list[str], per_row: int, size: int):
    """One frame per checkpoint: every class seen so far, a grey row for the others."""
    from PIL import Image, ImageDraw

    scale = 2 if size <= 32 else 1
    pad, left, top = 4, 10 + 8 * max(len(c) for c in classes), 22
    w, h = per_row * size * scale, size * scale
    frames = []
    for title, cells in zip(columns, samples, strict=True):
        img = Image.new("RGB", (left + w + pad, top + len(classes) * (h + pad)), "white")
        draw, font = ImageDraw.Draw(img), _font(12)
        draw.text((left, 4), title, fill="black", font=font)
        for i, c in enumerate(classes):
            y = top + i * (h + pad)
            draw.text((4, y + h // 2 - 6), c, fill="black", font=font)
            if c in cells:
                img.paste(_pil(cells[c][:per_row], scale), (left, y))
            else:
                draw.rectangle((left, y, left + w - 1, y + h - 1), fill=(160, 160, 160))
        frames.append(img)
    return frames


def accuracy_plot(path: Path, tasks: list, classes: list[str], title: str) -> None:
    """Each class's accuracy after every checkpoint (``scores.TaskScores``, the main evaluator's), and the
    average over classes seen so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [t.task for t in tasks]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for c in classes:
        pts = [(t.task, 100 * t.main.per_class[c]) for t in tasks if c in t.main.per_class]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"class {c}")
    ax.plot(xs, [100 * t.main.average for t in tasks], "k--", lw=2, label="average")
    ax.set(xlabel="after task", ylabel="accuracy on generated images (%)", ylim=(-3, 103), title=title)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(classes) > 6 else 1, loc="lower left")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _save_pil(path: Path, img, **kwargs) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, **kwargs))


def write_pictures(run, samples: list[dict], tasks: list, classes: list[str], size: int, title: str,
                   one_task: bool) -> dict:
    """The forgetting grid, the forgetting gif and the accuracy plot in the run folder (``runs.RunFolder``);
    returns their names. ``one_task``: the run learned every class in one task (its one column says so)."""
    columns = [f"all at once, {t.tasks_seen} classes" if one_task else f"after task {t.task}" for t in tasks]
    _save_pil(run.picture_path("forgetting_grid"), forgetting_grid(samples, classes, columns, 4, size), format="PNG")
    frames = forgetting_frames(samples, classes, columns, 8, size)
    _save_pil(run.picture_path("forgetting_gif"), frames[0], format="GIF", save_all=True, append_images=frames[1:],
              duration=900, loop=0)
    accuracy_plot(run.picture_path("accuracy_plot"), tasks, classes,
                  f"{title}: accuracy of the evaluator on generated images")
    return dict(run.PICTURES)
