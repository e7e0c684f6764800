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


TITLE_SIZE = 9  # grid cells are under 2 inches wide: 9 pt titles stay readable


def _box_patch(box, step=1, colour="yellow"):
    """A rectangle for (top, left, height, width) full-size pixel coordinates (``Geometry.crop``), drawn at
    1/step scale."""
    top, left, height, width = (value / step for value in box)
    return plt.Rectangle((left - 0.5, top - 0.5), width, height, fill=False, color=colour, linewidth=1.2,
                         linestyle="--")


def _image_axes(images, columns, cell_size, legend_height=0.0):
    """A grid figure with each image drawn in its cell (axes off); returns it and the axes holding an image."""
    count = len(images)
    columns = min(columns, max(1, count))
    rows = max(1, int(np.ceil(count / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell_size, rows * cell_size + legend_height),
                                squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for image, axis in zip(images, axes.ravel()):
        image = _display_image(image)
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
    return figure, list(axes.ravel()[:count])


def image_grid(images, masks=None, titles=None, columns=8, cell_size=1.8, mask_colour=(1.0, 0.2, 0.2), box=None):
    """Images in a grid, with masks drawn as a translucent overlay (and a contour for binary masks).

    Args:
        images: (n, height, width) or (n, height, width, channels) uint8 or float.
        masks: optional boolean (n, height, width), or (n, height, width, classes) drawn one colour a class.
        titles: optional one title per image.
        box: optional (top, left, height, width) outlined in every cell, e.g. the original image inside padding
            (``Geometry.crop``).
    """
    figure, axes = _image_axes(images, columns, cell_size)
    for index, axis in enumerate(axes):
        if masks is not None and np.any(masks[index]):
            mask = _for_display(np.asarray(masks[index], dtype=bool))
            axis.imshow(_mask_overlay(mask, mask_colour))
            if mask.ndim == 2:
                axis.contour(mask, levels=[0.5], colors=[mask_colour], linewidths=0.8)
        if box is not None:
            axis.add_patch(_box_patch(box, max(1, max(np.shape(images[index])[:2]) // DISPLAY_SIDE)))
        if titles is not None:
            axis.set_title(titles[index], fontsize=TITLE_SIZE)
    figure.tight_layout()
    return figure


# True positive, false positive and false negative pixels of an overlay (green, red, blue: red-green
# colour-blind readers still tell red from blue).
OUTCOME_COLOURS = {"true positive": (0.1, 0.8, 0.1), "false positive": (0.95, 0.1, 0.1),
                   "false negative": (0.1, 0.3, 1.0)}


def _outcome_overlay(truth, prediction):
    """RGBA overlay colouring each pixel by outcome; multi-label masks count a pixel if any class has it."""
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    if truth.ndim == 3:
        truth, prediction = truth.any(axis=-1), prediction.any(axis=-1)
    overlay = np.zeros(truth.shape + (4,))
    for (name, colour), pixels in zip(OUTCOME_COLOURS.items(), (truth & prediction, ~truth & prediction,
                                                                truth & ~prediction)):
        overlay[pixels] = (*colour, 0.45)
    return overlay


def outcome_grid(images, truths, predictions, titles=None, columns=8, cell_size=1.9):
    """Truth and prediction together: each pixel coloured by outcome (OUTCOME_COLOURS), so a missed mask and a
    correct empty one look different."""
    figure, axes = _image_axes(images, columns, cell_size, legend_height=0.5)
    for index, axis in enumerate(axes):
        axis.imshow(_outcome_overlay(_for_display(np.asarray(truths[index])),
                                     _for_display(np.asarray(predictions[index]))))
        if titles is not None:
            axis.set_title(titles[index], fontsize=TITLE_SIZE)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in OUTCOME_COLOURS.values()]
    figure.legend(handles, list(OUTCOME_COLOURS), loc="lower center", ncol=3, frameon=False)
    figure.tight_layout(rect=(0, 0.35 / figure.get_size_inches()[1], 1, 1))  # room for the legend
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


def _position(labels, value):
    """The index of ``value`` among ``labels``; the nearest one for numbers (float labels need not be equal)."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return int(np.argmin(np.abs(np.asarray(labels, dtype=float) - float(value))))
    return labels.get_loc(value)


def heatmap(table, title=None, value_label=None, xlabel=None, ylabel=None, mark=None, max_ticks=25,
            annotate=False):
    """A DataFrame as a labelled heatmap, sized by its own shape (an 8 x 49 table is a wide strip, not a square).

    Args:
        mark: optional (row label, column label) outlined, e.g. the chosen policy's cell.
        max_ticks: at most this many tick labels per axis (every k-th label beyond that).
        annotate: write each cell's value in it (small tables such as a confusion matrix).
    """
    rows, columns = table.shape
    cell = min(0.45, 9.0 / max(columns, 1))
    figure, axis = plt.subplots(figsize=(max(4.0, cell * columns + 2.5), max(2.5, cell * rows + 1.8)))
    shown = axis.imshow(table.to_numpy(dtype=float), cmap="magma", aspect="auto")
    for set_ticks, labels in ((axis.set_xticks, table.columns), (axis.set_yticks, table.index)):
        step = -(-len(labels) // max_ticks)
        positions = range(0, len(labels), step)
        set_ticks(positions, [f"{labels[i]:.3g}" if isinstance(labels[i], float) else str(labels[i])
                              for i in positions])
    if columns > 12:
        axis.tick_params(axis="x", labelrotation=90)
    if annotate:
        values = table.to_numpy(dtype=float)
        for (row, column), value in np.ndenumerate(values):
            axis.text(column, row, f"{value:g}", ha="center", va="center", fontsize=12,
                      color="black" if value > np.nanmean(values) else "white")
    if mark is not None:
        row, column = _position(table.index, mark[0]), _position(table.columns, mark[1])
        axis.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, color="cyan", linewidth=2))
    colorbar = figure.colorbar(shown, ax=axis, fraction=0.046)
    if value_label:
        colorbar.set_label(value_label)
    axis.set_xlabel(xlabel or table.columns.name or "")
    axis.set_ylabel(ylabel or table.index.name or "")
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def histograms(table, columns=None, title=None, group=None):
    """One histogram per column of a DataFrame (bars of counts for non-numeric columns).

    Args:
        group: optional column whose values (e.g. "train" / "test") get their own overlaid histogram each.
    """
    columns = [column for column in (table.columns if columns is None else columns) if column != group]
    groups = list(table.groupby(group)) if group else [(None, table)]
    figure, axes = plt.subplots(1, max(1, len(columns)), figsize=(3.6 * max(1, len(columns)), 3.2), squeeze=False)
    for axis, column in zip(axes[0], columns):
        numeric = table[column].dropna().dtype.kind in "biuf"
        # Carvana has dozens of makes and hundreds of trims: the 15 most frequent values are readable.
        top = None if numeric else table[column].dropna().astype(str).value_counts().head(15).index
        for name, part in groups:
            values = part[column].dropna()
            if numeric:
                axis.hist(values, bins=15, range=(table[column].min(), table[column].max()), alpha=0.6,
                          label=name)
            else:
                counts = values.astype(str).value_counts().reindex(top, fill_value=0)
                axis.bar(counts.index, counts.to_numpy(), alpha=0.6, label=name)
                axis.tick_params(axis="x", labelrotation=90, labelsize=8)
        axis.set_xlabel(column)
        axis.set_ylabel("images")
        if group:
            axis.legend()
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


def line_plot(table, x, y, xlabel=None, ylabel=None, title=None, best=None, marks=None):
    """One curve from a DataFrame; ``best`` = (x, y) marks a point (e.g. the best threshold); ``marks`` =
    {label: x} draws labelled vertical lines (e.g. the 0.5 default)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(table[x], table[y], marker=".")
    for (label, position), colour in zip((marks or {}).items(), ("grey", "tab:green", "tab:purple")):
        axis.axvline(position, color=colour, linestyle="--", label=label)
    if best is not None:
        axis.scatter([best[0]], [best[1]], s=80, color="tab:red", zorder=3, label=f"best: {best[0]:.3g} -> {best[1]:.4f}")
    if best is not None or marks:
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


def learning_curves(history, monitor=None):
    """Training and validation curves of every metric in a Keras history DataFrame, epochs counted from 1 as
    Keras' log counts them, and the learning rate on its own (log) axis.

    A "fold" column (cross-validation) gives one pair of lines per fold, numbered from 1 as the log does; a
    "stage" column (two-stage training) marks where fine-tuning starts, where the loss changes meaning.
    ``monitor`` (e.g. "val_score") marks each fold's best epoch, the one kept.
    """
    folds = list(history.groupby("fold")) if "fold" in history else [(None, history)]
    names = [name for name in history.select_dtypes("number").columns
             if not name.startswith("val_") and name not in ("learning_rate", "fold", "minutes")]
    panels = names + (["learning_rate"] if "learning_rate" in history else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for fold, fold_history in folds:
        suffix = "" if fold is None or len(folds) == 1 else f", fold {fold + 1}"
        epochs = np.arange(1, len(fold_history) + 1)
        best = int(np.argmax(fold_history[monitor].to_numpy())) + 1 if monitor in fold_history else None
        for axis, name in zip(axes[0], panels):
            axis.plot(epochs, fold_history[name], label=f"{'' if name == 'learning_rate' else 'train'}{suffix}")
            if f"val_{name}" in fold_history:
                axis.plot(epochs, fold_history[f"val_{name}"], label=f"validation{suffix}")
            if best is not None:
                axis.axvline(best, color="tab:red", linestyle=":", label=f"best epoch {best}{suffix}")
            if "stage" in fold_history and fold_history["stage"].nunique() > 1:
                axis.axvline(int((fold_history["stage"] == fold_history["stage"].iloc[0]).sum()) + 0.5,
                             color="grey", linestyle="--", label="fine-tuning starts")
    for axis, name in zip(axes[0], panels):
        axis.set_xlabel("epoch")
        axis.set_ylabel(CURVE_LABELS.get(name, name))
        axis.set_title(CURVE_LABELS.get(name, name))
        if name == "learning_rate":
            axis.set_yscale("log")
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


CURVE_LABELS = {"loss": "loss (the training loss)", "score": "competition score per image, threshold 0.5",
                "iou": "pixel IoU over the batch (not the metric)", "learning_rate": "learning rate"}
