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


# Big images (Carvana's 1918 x 1280, hand-bone 2048 x 2048) are shown at about this many pixels a side:
# a grid cell is under 2 inches wide, and striding keeps the figure fast.
DISPLAY_SIDE = 256


def _for_display(array):
    """Every n-th row and column, so the longer side is about DISPLAY_SIDE."""
    step = max(1, max(array.shape[:2]) // DISPLAY_SIDE)
    return array[::step, ::step]


def _display_image(image):
    """An image as imshow wants it: 2-D grayscale, or RGB from the first three channels."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] < 3:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] > 3:
        image = image[..., :3]  # 6-channel input: show the RGB part
    if image.ndim == 3 and image.dtype.kind == "f":
        # Normalised RGB batches: stretch to [0, 1] so imshow does not clip them.
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    return _for_display(image)


def _mask_overlay(mask, mask_colour):
    """RGBA overlay of a (height, width) mask, or of a multi-label (height, width, classes) mask with one colour
    per class."""
    mask = np.asarray(mask)
    overlay = np.zeros(mask.shape[:2] + (4,))
    if mask.ndim == 2:
        overlay[mask] = (*mask_colour, 0.35)
        return overlay
    colours = plt.get_cmap("hsv")(np.linspace(0, 1, mask.shape[-1], endpoint=False))
    for channel in range(mask.shape[-1]):
        overlay[mask[..., channel]] = (*colours[channel, :3], 0.4)
    return overlay


def image_grid(images, masks=None, titles=None, columns=8, cell_size=1.8, mask_colour=(1.0, 0.2, 0.2)):
    """Images in a grid, with masks drawn as a translucent overlay (and a contour for binary masks).

    Args:
        images: (n, height, width) or (n, height, width, channels) uint8 or float.
        masks: optional boolean (n, height, width), or (n, height, width, classes) drawn one colour a class.
        titles: optional one title per image.
    """
    count = len(images)
    columns = min(columns, max(1, count))
    rows = max(1, int(np.ceil(count / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell_size, rows * cell_size), squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if index >= count:
            continue
        image = _display_image(images[index])
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        if masks is not None and np.any(masks[index]):
            mask = _for_display(np.asarray(masks[index], dtype=bool))
            axis.imshow(_mask_overlay(mask, mask_colour))
            if mask.ndim == 2:
                axis.contour(mask, levels=[0.5], colors=[mask_colour], linewidths=0.8)
        if titles is not None:
            axis.set_title(titles[index], fontsize=7)
    figure.tight_layout()
    return figure


def cutouts(images, masks, titles=None, background=(0, 177, 64), columns=4, cell_size=3.0):
    """Each image's masked pixels pasted on a solid background (a green screen by default): what the mask keeps.

    Args:
        images: (n, height, width, channels) uint8.
        masks: boolean (n, height, width); for multi-label masks, any class counts.
    """
    pasted = []
    for image, mask in zip(images, masks):
        image, mask = _for_display(np.asarray(image)), _for_display(np.asarray(mask, dtype=bool))
        if mask.ndim == 3:
            mask = mask.any(axis=-1)
        image = image[..., :3] if image.ndim == 3 and image.shape[-1] >= 3 else np.repeat(
            image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
        pasted.append(np.where(mask[..., np.newaxis], image, np.asarray(background, dtype=image.dtype)))
    return image_grid(np.stack(pasted), titles=titles, columns=columns, cell_size=cell_size)


def bar_plot(values, xlabel, ylabel, title=None, horizontal=False):
    """Bars from a pandas Series (index = labels)."""
    figure, axis = plt.subplots(figsize=(7, 0.25 * len(values) + 1.5) if horizontal else (7, 3.5))
    if horizontal:
        axis.barh([str(label) for label in values.index], values.to_numpy(), color="tab:blue")
        axis.invert_yaxis()
        axis.set_xlabel(ylabel)
        axis.set_ylabel(xlabel)
    else:
        axis.bar([str(label) for label in values.index], values.to_numpy(), color="tab:blue")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def heatmap(table, title=None, value_label=None):
    """A DataFrame as a labelled heatmap (e.g. the class-overlap matrix)."""
    size = 0.28 * max(table.shape) + 2.5
    figure, axis = plt.subplots(figsize=(size + 1, size))
    shown = axis.imshow(table.to_numpy(dtype=float), cmap="magma")
    axis.set_xticks(range(table.shape[1]), [str(label) for label in table.columns], rotation=90, fontsize=7)
    axis.set_yticks(range(table.shape[0]), [str(label) for label in table.index], fontsize=7)
    colorbar = figure.colorbar(shown, ax=axis, fraction=0.046)
    if value_label:
        colorbar.set_label(value_label)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def histograms(table, columns=None, title=None):
    """One histogram per column of a DataFrame (bars of counts for non-numeric columns)."""
    columns = list(table.columns if columns is None else columns)
    figure, axes = plt.subplots(1, max(1, len(columns)), figsize=(3.2 * max(1, len(columns)), 3), squeeze=False)
    for axis, column in zip(axes[0], columns):
        values = table[column].dropna()
        if values.dtype.kind in "biuf":
            axis.hist(values, bins=15, color="tab:blue")
        else:
            # Carvana has dozens of makes and hundreds of trims: the 15 most frequent values are readable.
            counts = values.astype(str).value_counts().head(15).sort_index()
            axis.bar(counts.index, counts.to_numpy(), color="tab:blue")
            axis.tick_params(axis="x", labelrotation=90, labelsize=7)
        axis.set_title(column)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def show_image(image, title=None, box=None, cmap=None, size=6.0):
    """One image (or a 2-D map such as a background difference), optionally with a box (top, bottom, left,
    right) drawn on it in full-size pixel coordinates."""
    image = np.asarray(image)
    step = max(1, max(image.shape[:2]) // DISPLAY_SIDE)
    figure, axis = plt.subplots(figsize=(size, size * image.shape[0] / image.shape[1]))
    shown = _display_image(image) if image.ndim == 3 else _for_display(image)
    axis.imshow(shown, cmap=cmap or ("gray" if shown.ndim == 2 else None))
    if box is not None:
        top, bottom, left, right = (value / step for value in box)
        axis.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False, color="tab:red",
                                     linewidth=2))
    axis.axis("off")
    if title:
        axis.set_title(title)
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
            shown = axes[channel, column].imshow(_for_display(image[..., channel]), cmap="viridis")
            axes[channel, column].set_title(f"{name} image, channel {channel}")
            axes[channel, column].axis("off")
            figure.colorbar(shown, ax=axes[channel, column], fraction=0.046)
    figure.tight_layout()
    return figure


def learning_curves(history):
    """Training and validation curves of every metric in a Keras history DataFrame.

    A "fold" column (cross-validation) gives one pair of lines per fold; a "stage" column (two-stage
    training) marks where fine-tuning starts, where the loss changes meaning.
    """
    folds = history.groupby("fold") if "fold" in history else [(None, history)]
    names = [name for name in history.select_dtypes("number").columns
             if not name.startswith("val_") and name not in ("learning_rate", "fold", "minutes")]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for fold, fold_history in folds:
        suffix = "" if fold is None else f" fold {fold}"
        epochs = range(len(fold_history))
        for axis, name in zip(axes[0], names):
            axis.plot(epochs, fold_history[name], label=f"train {name}{suffix}")
            if f"val_{name}" in fold_history:
                axis.plot(epochs, fold_history[f"val_{name}"], label=f"validation {name}{suffix}")
            if "stage" in fold_history and fold_history["stage"].nunique() > 1:
                axis.axvline(int((fold_history["stage"] == fold_history["stage"].iloc[0]).sum()) - 0.5,
                             color="grey", linestyle="--")
    for axis, name in zip(axes[0], names):
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
