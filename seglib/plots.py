"""The pictures the notebooks draw. Each function returns its matplotlib Figure; ``save`` writes it."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from seglib.artifacts import atomic_path

# Big images (Carvana's 1918 x 1280, hand-bone 2048 x 2048) are shown at about this many pixels a side:
# a grid cell is under 2 inches wide, and striding keeps the figure fast.
DISPLAY_SIDE = 256
TITLE_SIZE = 9  # grid cells are under 2 inches wide: 9 pt titles stay readable
MASK_COLOUR = (1.0, 0.2, 0.2)
# True positive, false positive and false negative pixels (green, red, blue: red-green colour-blind readers
# still tell red from blue).
OUTCOME_COLOURS = {"true positive": (0.1, 0.8, 0.1), "false positive": (0.95, 0.1, 0.1),
                   "false negative": (0.1, 0.3, 1.0)}
CURVE_LABELS = {"loss": "loss (the training loss)", "score": "competition score per image, threshold 0.5",
                "iou": "pixel IoU over the batch (not the metric)", "learning_rate": "learning rate"}


def save(figure, run_dir, name):
    """Save ``figure`` as RUN_DIR/plots/<name>.png (atomically) and return the path."""
    path = Path(run_dir) / "plots" / f"{name}.png"
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight")
    return path


def _step(image):
    """The display stride of an image: its longer side shown at about DISPLAY_SIDE pixels."""
    return max(1, max(np.shape(image)[:2]) // DISPLAY_SIDE)


def _for_display(array):
    array = np.asarray(array)
    return array[::_step(array), ::_step(array)]


def _display_image(image):
    """An image as imshow wants it: 2-D grayscale, or RGB from the first three channels (6-channel inputs)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] < 3 else image[..., :3]
    if image.ndim == 3 and image.dtype.kind == "f":
        # Normalised RGB batches: stretch to [0, 1] so imshow does not clip them.
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    return _for_display(image)


def _finish(figure, axis=None, xlabel=None, ylabel=None, title=None):
    if axis is not None:
        axis.set(xlabel=xlabel or "", ylabel=ylabel or "", title=title or "")
    figure.tight_layout()
    return figure


def _rotation(labels, inches):
    """90 degrees when the labels would overlap side by side (about 12 characters an inch at 10 pt), else 0."""
    return 90 if sum(len(str(label)) + 1 for label in labels) > 12 * inches else 0


def _outline(axis, box, step, **style):
    """Outline (top, left, height, width) given in full-size pixels on an image shown at 1/step scale."""
    top, left, height, width = (value / step for value in box)
    axis.add_patch(plt.Rectangle((left - 0.5, top - 0.5), width, height, fill=False, **style))


def _paint(layers, colours, alpha):
    """RGBA overlay with each boolean layer's pixels in its colour (later layers on top)."""
    overlay = np.zeros(np.shape(layers[0]) + (4,))
    for layer, colour in zip(layers, colours):
        overlay[layer] = (*colour[:3], alpha)
    return overlay


def _mask_overlay(mask):
    """Overlay of a (height, width) mask, or of a (height, width, classes) mask with one hue per class."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        return _paint([mask], [MASK_COLOUR], 0.35)
    hues = plt.get_cmap("hsv")(np.linspace(0, 1, mask.shape[-1], endpoint=False))
    return _paint(np.moveaxis(mask, -1, 0), hues, 0.4)


def _outcome_overlay(truth, prediction):
    """Overlay colouring each pixel by outcome; multi-label masks count a pixel if any class has it."""
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    if truth.ndim == 3:
        truth, prediction = truth.any(axis=-1), prediction.any(axis=-1)
    return _paint([truth & prediction, ~truth & prediction, truth & ~prediction], OUTCOME_COLOURS.values(), 0.45)


def _image_axes(images, columns, cell_size, titles=None, legend_height=0.0):
    """A grid figure with each image (and its title) in a cell, axes off; returns it and the filled axes."""
    columns = min(columns, max(1, len(images)))
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell_size, rows * cell_size + legend_height),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for index, (image, axis) in enumerate(zip(images, axes.flat)):
        image = _display_image(image)
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        if titles is not None:
            axis.set_title(titles[index], fontsize=TITLE_SIZE)
    return figure, axes.flat[:len(images)]


def image_grid(images, masks=None, titles=None, columns=8, cell_size=1.8, box=None):
    """Images (n, height, width[, channels]) in a grid, boolean masks (n, height, width[, classes]) as a
    translucent overlay, one hue a class (outlined when binary), and ``box`` = (top, left, height, width)
    outlined in every cell, e.g. the original image inside padding (``Geometry.crop``)."""
    figure, axes = _image_axes(images, columns, cell_size, titles)
    for index, axis in enumerate(axes):
        if masks is not None and np.any(masks[index]):
            mask = _for_display(np.asarray(masks[index], dtype=bool))
            axis.imshow(_mask_overlay(mask))
            if mask.ndim == 2:
                axis.contour(mask, levels=[0.5], colors=[MASK_COLOUR], linewidths=0.8)
        if box is not None:
            _outline(axis, box, _step(images[index]), color="yellow", linewidth=1.2, linestyle="--")
    return _finish(figure)


def outcome_grid(images, truths, predictions, titles=None, columns=8, cell_size=1.9):
    """Truth and prediction in one overlay, each pixel coloured by outcome (OUTCOME_COLOURS), so a missed mask
    and a correct empty one look different."""
    figure, axes = _image_axes(images, columns, cell_size, titles, legend_height=0.5)
    for axis, truth, prediction in zip(axes, truths, predictions):
        axis.imshow(_outcome_overlay(_for_display(truth), _for_display(prediction)))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in OUTCOME_COLOURS.values()]
    figure.legend(handles, list(OUTCOME_COLOURS), loc="lower center", ncol=3, frameon=False)
    figure.tight_layout(rect=(0, 0.35 / figure.get_size_inches()[1], 1, 1))  # room for the legend
    return figure


def cutouts(images, masks, titles=None, background=(0, 177, 64), columns=4, cell_size=3.0):
    """Each image's masked pixels (any class) pasted on a solid background, a green screen by default: what the
    mask keeps."""
    pasted = []
    for image, mask in zip(images, masks):
        image, mask = _display_image(image), _for_display(np.asarray(mask, dtype=bool))
        image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
        mask = mask.any(axis=-1) if mask.ndim == 3 else mask
        pasted.append(np.where(mask[..., np.newaxis], image, np.asarray(background, dtype=image.dtype)))
    return image_grid(np.stack(pasted), titles=titles, columns=columns, cell_size=cell_size)


def show_image(image, title=None, box=None, cmap=None, size=6.0):
    """One image or 2-D map (e.g. a background difference), optionally with a box (top, bottom, left, right)
    in full-size pixels drawn on it."""
    figure, axis = plt.subplots(figsize=(size, size * np.shape(image)[0] / np.shape(image)[1]))
    shown = _display_image(image)
    axis.imshow(shown, cmap=cmap or ("gray" if shown.ndim == 2 else None))
    if box is not None:
        top, bottom, left, right = box
        _outline(axis, (top, left, bottom - top, right - left), _step(image), color="tab:red", linewidth=2)
    axis.axis("off")
    return _finish(figure, axis, title=title)


def bar_plot(values, xlabel, ylabel, title=None, horizontal=False):
    """Bars from a pandas Series (index = labels); ``horizontal`` for many classes, listed top down."""
    if horizontal:
        figure, axis = plt.subplots(figsize=(7, 0.25 * len(values) + 1.5))
        values.plot.barh(ax=axis, color="tab:blue").invert_yaxis()
        return _finish(figure, axis, ylabel, xlabel, title)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    values.plot.bar(ax=axis, color="tab:blue", rot=_rotation(values.index, 6))
    return _finish(figure, axis, xlabel, ylabel, title)


def _ticks(labels, max_ticks):
    """Every k-th position and label, at most ``max_ticks`` of them, floats to 3 significant digits."""
    positions = range(0, len(labels), -(-len(labels) // max_ticks))
    return positions, [f"{labels[i]:.3g}" if isinstance(labels[i], float) else str(labels[i]) for i in positions]


def heatmap(table, title=None, value_label=None, xlabel=None, ylabel=None, mark=None, annotate=False,
            max_ticks=25):
    """A DataFrame as a labelled heatmap, sized by its shape (an 8 x 49 table is a wide strip, not a square).
    ``mark`` = (row label, column label) outlines a cell (the chosen policy's); ``annotate`` writes the values
    in (small tables such as a confusion matrix); at most ``max_ticks`` tick labels an axis."""
    values = table.to_numpy(dtype=float)
    cell = min(1.2 if annotate else 0.45, 9.0 / max(values.shape[1], 1))  # annotated cells hold 12 pt text
    figure, axis = plt.subplots(figsize=(max(4.0, cell * values.shape[1] + 2.5),
                                         max(2.5, cell * values.shape[0] + 1.8)))
    shown = axis.imshow(values, cmap="magma", aspect="auto")
    positions, texts = _ticks(table.columns, max_ticks)
    axis.set_xticks(positions, texts, rotation=_rotation(texts, cell * values.shape[1]))
    axis.set_yticks(*_ticks(table.index, max_ticks))
    if annotate:
        for (row, column), value in np.ndenumerate(values):
            axis.text(column, row, f"{value:g}", ha="center", va="center", fontsize=12,
                      color="black" if value > np.nanmean(values) else "white")
    if mark is not None:  # the nearest numeric label: a float threshold read back from JSON need not be equal
        row, column = (labels.get_indexer([value], method="nearest" if is_numeric_dtype(labels) else None)[0]
                       for labels, value in zip((table.index, table.columns), mark))
        _outline(axis, (row, column, 1, 1), 1, color="cyan", linewidth=2)
    figure.colorbar(shown, ax=axis, fraction=0.046, label=value_label or "")
    return _finish(figure, axis, xlabel or table.columns.name, ylabel or table.index.name, title)


def histograms(table, title=None, group=None):
    """One histogram per column of a DataFrame (bars of the 15 commonest values for non-numeric columns), with
    one overlaid histogram per value of the ``group`` column (e.g. "train" / "test")."""
    columns = [column for column in table.columns if column != group]
    keys = table[group] if group else pd.Series("images", index=table.index)
    names = sorted(keys.dropna().unique())  # every panel gives a group the same colour
    figure, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.2), squeeze=False)
    for axis, column in zip(axes[0], columns):
        values = table[column].dropna()
        if values.dtype.kind in "biuf":
            parts = [table.loc[keys == name, column].dropna() for name in names]
            axis.hist(parts, bins=15, histtype="stepfilled", alpha=0.6, label=names)
        else:
            # Carvana has dozens of makes and hundreds of trims: the 15 commonest values are readable.
            counts = pd.crosstab(values.astype(str), keys).reindex(columns=names, fill_value=0)
            counts.loc[values.astype(str).value_counts().index[:15]].plot.bar(ax=axis, alpha=0.8, legend=False)
            axis.tick_params(axis="x", labelsize=8)
        axis.set(xlabel=column, ylabel="images")
        if group:
            axis.legend()
    figure.suptitle(title or "")
    return _finish(figure)


def coverage_histogram(coverage, bins=20):
    """Histogram of the non-empty masks' coverage, with the empty share in the title."""
    coverage = np.asarray(coverage)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(coverage[coverage > 0], bins=bins, range=(0, 1), color="tab:blue")
    return _finish(figure, axis, "mask coverage (share of pixels)", "images",
                   f"coverage of non-empty masks; {np.mean(coverage == 0):.1%} of masks are empty")


def line_plot(table, x, y, xlabel=None, ylabel=None, title=None, best=None, marks=None):
    """One curve from a DataFrame; ``best`` = (x, y) marks a point (e.g. the best threshold); ``marks`` =
    {label: x} draws labelled vertical lines (e.g. the 0.5 default)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(table[x], table[y], marker=".")
    for (label, position), colour in zip((marks or {}).items(), ("grey", "tab:green", "tab:purple")):
        axis.axvline(position, color=colour, linestyle="--", label=label)
    if best is not None:
        axis.scatter(*best, s=80, color="tab:red", zorder=3, label=f"best: {best[0]:.3g} -> {best[1]:.4f}")
    if best is not None or marks:
        axis.legend()
    axis.grid(alpha=0.3)
    return _finish(figure, axis, xlabel or x, ylabel or y, title)


def mean_std_images(mean_std):
    """The mean and standard-deviation images side by side, one row per channel."""
    channels = mean_std.mean_image.shape[-1]
    figure, axes = plt.subplots(channels, 2, figsize=(8, 3.8 * channels), squeeze=False)
    for channel, row in enumerate(axes):
        for axis, name, image in zip(row, ("mean", "std"), (mean_std.mean_image, mean_std.std_image)):
            figure.colorbar(axis.imshow(_for_display(image[..., channel])), ax=axis, fraction=0.046)
            axis.set_title(f"{name} image, channel {channel}")
            axis.axis("off")
    return _finish(figure)


def _mark_epochs(axis, history, monitor, suffix):
    """The best epoch by ``monitor`` (the one kept), and where fine-tuning starts (the loss changes meaning)."""
    if monitor in history:
        best = int(np.argmax(history[monitor].to_numpy())) + 1
        axis.axvline(best, color="tab:red", linestyle=":", label=f"best epoch {best}{suffix}")
    if "stage" in history and history["stage"].nunique() > 1:
        first_stage = int((history["stage"] == history["stage"].iloc[0]).sum())
        axis.axvline(first_stage + 0.5, color="grey", linestyle="--", label="fine-tuning starts")


def learning_curves(history, monitor=None):
    """Training and validation curves of every metric in a Keras history DataFrame, epochs counted from 1 as
    Keras' log counts them, the learning rate on a log axis, each fold's best epoch by ``monitor``; a "fold"
    column gives lines per fold (numbered from 1), a "stage" column marks where fine-tuning starts."""
    folds = list(history.groupby("fold")) if "fold" in history else [(None, history)]
    panels = [name for name in history.select_dtypes("number").columns
              if not name.startswith("val_") and name not in ("learning_rate", "fold", "minutes")]
    panels += ["learning_rate"] if "learning_rate" in history else []
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for fold, part in folds:
        suffix = "" if len(folds) == 1 else f", fold {fold + 1}"
        epochs = np.arange(1, len(part) + 1)
        for axis, name in zip(axes[0], panels):
            axis.plot(epochs, part[name], label=("" if name == "learning_rate" else "train") + suffix)
            if f"val_{name}" in part:
                axis.plot(epochs, part[f"val_{name}"], label=f"validation{suffix}")
            _mark_epochs(axis, part, monitor, suffix)
    for axis, name in zip(axes[0], panels):
        label = CURVE_LABELS.get(name, name)
        axis.set(xlabel="epoch", ylabel=label, title=label, yscale="log" if name == "learning_rate" else "linear")
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    return _finish(figure)
