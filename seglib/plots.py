"""The pictures the notebooks draw. Each function returns its matplotlib Figure."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from seglib.artifacts import atomic_path


def save(figure, run_dir, name):
    """Save ``figure`` as RUN_DIR/plots/<name>.png (atomically) and return the path."""
    path = Path(run_dir) / "plots" / f"{name}.png"
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight")
    return path


def image_grid(images, masks=None, titles=None, columns=8, cell_size=1.8, mask_colour=(1.0, 0.2, 0.2)):
    """Images in a grid, with masks drawn as a translucent overlay and a contour.

    Args:
        images: (n, height, width) or (n, height, width, channels) uint8 or float.
        masks: optional boolean (n, height, width).
        titles: optional one title per image.
    """
    count = len(images)
    rows = max(1, int(np.ceil(count / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell_size, rows * cell_size), squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if index >= count:
            continue
        image = np.asarray(images[index])
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        if masks is not None and np.any(masks[index]):
            overlay = np.zeros(masks[index].shape + (4,))
            overlay[masks[index]] = (*mask_colour, 0.35)
            axis.imshow(overlay)
            axis.contour(masks[index], levels=[0.5], colors=[mask_colour], linewidths=0.8)
        if titles is not None:
            axis.set_title(titles[index], fontsize=7)
    figure.tight_layout()
    return figure


def coverage_histogram(coverage, bins=20):
    """Histogram of mask coverage, with the empty share in the title."""
    coverage = np.asarray(coverage)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(coverage[coverage > 0], bins=bins, range=(0, 1), color="tab:blue", label="non-empty masks")
    axis.set_xlabel("mask coverage (share of pixels)")
    axis.set_ylabel("images")
    axis.set_title(f"coverage of non-empty masks; {np.mean(coverage == 0):.1%} of masks are empty")
    axis.legend()
    figure.tight_layout()
    return figure


def scatter(x, y, xlabel, ylabel, title=None):
    """A plain scatter plot (e.g. depth against coverage)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.scatter(x, y, s=10, alpha=0.6)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def line_plot(table, x, y, xlabel=None, ylabel=None, title=None, best=None):
    """One curve from a DataFrame; ``best`` = (x, y) marks a point (e.g. the best threshold)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(table[x], table[y], marker=".")
    if best is not None:
        axis.scatter([best[0]], [best[1]], s=80, color="tab:red", zorder=3, label=f"best: {best[0]:.3g} -> {best[1]:.4f}")
        axis.legend()
    axis.set_xlabel(xlabel or x)
    axis.set_ylabel(ylabel or y)
    if title:
        axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def mean_std_images(mean_std):
    """The mean and standard-deviation images side by side, per channel."""
    channels = mean_std.mean_image.shape[-1]
    figure, axes = plt.subplots(channels, 2, figsize=(8, 3.8 * channels), squeeze=False)
    for channel in range(channels):
        for column, (name, image) in enumerate((("mean", mean_std.mean_image), ("std", mean_std.std_image))):
            shown = axes[channel, column].imshow(image[..., channel], cmap="viridis")
            axes[channel, column].set_title(f"{name} image, channel {channel}")
            axes[channel, column].axis("off")
            figure.colorbar(shown, ax=axes[channel, column], fraction=0.046)
    figure.tight_layout()
    return figure


def learning_curves(history):
    """Training and validation curves of every metric in a Keras history DataFrame."""
    names = [name for name in history.columns if not name.startswith("val_") and name != "learning_rate"]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        axis.plot(history.index, history[name], label=f"train {name}")
        if f"val_{name}" in history:
            axis.plot(history.index, history[f"val_{name}"], label=f"validation {name}")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
