"""Synthetic TGS Salt Identification Challenge sample, in the layout and byte conventions of Kaggle's files.

Each image is a 101 x 101 seismic section: layered sediment reflectors (sums of sinusoids in depth, dipping,
folded and dragged up against the salt) and, exactly where the mask is set, a salt body with chaotic, weak
texture under a sharp boundary reflector. The extracted competition archive looks like this:

    train.csv              id,rle_mask   column-major RLE; an empty cell for an empty mask
    depths.csv             id,z          every train and test id
    sample_submission.csv  id,rle_mask   "1 1" for every test id
    train/images/<id>.png  RGB with three identical channels
    train/masks/<id>.png   16-bit grayscale {0, 65535}; 8-bit zeros when the mask is empty
    test/images/<id>.png
"""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from seglib import rle
from seglib.sample import hex_ids, write_csv

SIZE = 101
PIXELS = SIZE * SIZE
NUM_TRAIN = 150
NUM_TEST = 40
NUM_EMPTY_TRAIN = 57  # 38 %, close to the 39 % of the real train set.
NUM_BLACK_TRAIN = 4  # The real data holds all-zero images, always with empty masks.
NUM_BLACK_TEST = 2
NUM_TINY_TRAIN = 4
NUM_FULL_TRAIN = 5
TEST_EMPTY_FRACTION = 0.38
SHAPES = ("dome", "flank", "blob", "canopy")
SHAPE_WEIGHTS = (0.45, 0.3, 0.15, 0.1)


def plan_train(rng):
    """Salt pixel count and all-black flag of every train image: empty, tiny, full and every coverage decile."""
    tiny = rng.integers(20, 90, size=NUM_TINY_TRAIN)
    full = np.full(NUM_FULL_TRAIN, PIXELS)
    num_spread = NUM_TRAIN - NUM_EMPTY_TRAIN - NUM_TINY_TRAIN - NUM_FULL_TRAIN
    deciles = np.arange(num_spread) % 10
    # Keep off the decile edges so that rounding to whole pixels cannot move a mask into the next decile.
    fractions = (deciles + rng.uniform(0.05, 0.95, size=num_spread)) / 10
    counts = np.concatenate([np.zeros(NUM_EMPTY_TRAIN, int), tiny, full, np.round(fractions * PIXELS).astype(int)])
    black = np.arange(NUM_TRAIN) < NUM_BLACK_TRAIN
    order = rng.permutation(NUM_TRAIN)
    return counts[order], black[order]


def plan_test(rng):
    """Salt pixel count and all-black flag of every test image, drawn like the train set."""
    has_salt = rng.random(NUM_TEST) >= TEST_EMPTY_FRACTION
    counts = np.where(has_salt, np.round(rng.uniform(0.005, 1.0, size=NUM_TEST) * PIXELS), 0).astype(int)
    black = np.arange(NUM_TEST) < NUM_BLACK_TEST
    counts[black] = 0
    order = rng.permutation(NUM_TEST)
    return counts[order], black[order]


def sample_depths(rng, counts):
    """Depth z of each image; salt is more common deeper, a weak trend as in the real depths.csv."""
    mean = 420 + 110 * (counts > 0) + 90 * counts / PIXELS
    return np.clip(np.round(rng.normal(mean, 180)), 51, 959).astype(int)


def smooth_noise(rng, sigma):
    """Gaussian-smoothed white noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), sigma, mode="reflect")
    return field / field.std()


def salt_profile(rng, across, down):
    """A smooth "saltiness" field whose top pixels form a plausible salt body: dome, flank, blob or canopy."""
    shape = SHAPES[rng.choice(len(SHAPES), p=SHAPE_WEIGHTS)]
    center = rng.uniform(0.0, 1.0)
    if shape == "dome":  # Rises from the bottom with a curved, possibly leaning top.
        return down - rng.uniform(0.3, 3.0) * (across - center) ** 2 + rng.uniform(-0.4, 0.4) * across
    if shape == "flank":  # A steep salt wall entering from the left or the right.
        side = rng.choice([-1.0, 1.0])
        return side * across + rng.uniform(-0.5, 0.5) * down + rng.uniform(-1.0, 1.0) * (down - center) ** 2
    if shape == "blob":  # A diapir cross-section, often cut by the image border.
        stretch = rng.uniform(0.4, 2.5)
        center_down = rng.uniform(0.3, 1.0)
        return -(stretch * (across - center) ** 2 + (down - center_down) ** 2 / stretch)
    # Canopy: a salt sheet above the section, its base bulging down.
    return -down - rng.uniform(0.3, 2.0) * (across - center) ** 2


def salt_mask(rng, count):
    """A smooth salt body of exactly ``count`` pixels."""
    if count <= 0:
        return np.zeros((SIZE, SIZE), bool)
    if count >= PIXELS:
        return np.ones((SIZE, SIZE), bool)
    across, down = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE))
    field = salt_profile(rng, across, down) + rng.uniform(0.04, 0.12) * smooth_noise(rng, rng.uniform(6, 14))
    # The `count` highest pixels of a smooth field make a smooth body with exactly the planned coverage.
    mask = np.zeros(PIXELS, bool)
    mask[np.argsort(-field, axis=None, kind="stable")[:count]] = True
    return mask.reshape(SIZE, SIZE)


def layered_trace(rng, depth):
    """Sediment reflectivity at geological depth ``depth``: chirped sinusoids under a slow bright/dim envelope."""
    trace = np.zeros_like(depth)
    for _ in range(rng.integers(4, 8)):
        frequency = 1 / rng.uniform(4, 22)
        drift = rng.uniform(-0.4, 0.4)  # Relative frequency change over the image height: layers thin or thicken.
        phase = 2 * np.pi * frequency * (depth + drift * depth**2 / (2 * SIZE))
        trace += rng.uniform(0.3, 1.0) * np.sin(phase + rng.uniform(0, 2 * np.pi))
    envelope = 1 + 0.6 * np.sin(2 * np.pi * depth / rng.uniform(30, 90) + rng.uniform(0, 2 * np.pi))
    return trace * envelope


def sediment_section(rng, mask):
    """Dipping, gently folded layers, dragged upward along the salt flanks."""
    across, down = np.meshgrid(np.arange(SIZE, dtype=float), np.arange(SIZE, dtype=float))
    dip = rng.uniform(-0.25, 0.25)
    fold = rng.uniform(0, 6) * np.sin(2 * np.pi * across / rng.uniform(60, 250) + rng.uniform(0, 2 * np.pi))
    warp = rng.uniform(0.5, 2.5) * smooth_noise(rng, 15)
    # Rising salt bends the neighbouring strata up, so deeper layers show next to the salt body.
    drag = rng.uniform(4, 14) * ndimage.gaussian_filter(mask.astype(float), 8)
    depth = down + dip * (across - SIZE / 2) + fold + warp + drag
    section = layered_trace(rng, depth) * (1 + 0.25 * smooth_noise(rng, 10))
    return section / section.std()


def boundary_reflector(rng, mask):
    """A sharp Ricker-shaped reflection centred on the salt boundary (strong impedance contrast)."""
    if mask.all() or not mask.any():
        return np.zeros((SIZE, SIZE))
    signed_distance = np.where(mask, 0.5 - ndimage.distance_transform_edt(mask),
                               ndimage.distance_transform_edt(~mask) - 0.5)
    argument = (np.pi * signed_distance / rng.uniform(4, 7)) ** 2
    polarity = 1.0 if rng.random() < 0.75 else -1.0
    return polarity * rng.uniform(1.2, 2.4) * (1 - 2 * argument) * np.exp(-argument)


def salt_texture(rng):
    """Chaotic, weak salt reflectivity, slightly brighter or darker than the sediments on average."""
    # Smoothing more across than down leaves short, broken, horizontal-ish streaks: incoherent reflections.
    chaos = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), (rng.uniform(0.6, 1.2), rng.uniform(1.5, 4.0)))
    chaos /= chaos.std()
    offset = rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.45)
    return offset + rng.uniform(0.15, 0.4) * chaos


def seismic_image(rng, mask):
    """A uint8 101 x 101 seismic section whose salt texture covers exactly ``mask``."""
    signal = np.where(mask, salt_texture(rng), sediment_section(rng, mask)) + boundary_reflector(rng, mask)
    # Each column is one recorded trace with its own slight gain, which shows as faint vertical striping.
    trace_gain = 1 + 0.08 * ndimage.gaussian_filter1d(rng.standard_normal(SIZE), 1.0)
    noise = rng.uniform(0.12, 0.35) * rng.standard_normal(signal.shape)
    signal = ndimage.gaussian_filter((signal + noise) * trace_gain, 0.5)
    grey = rng.uniform(100, 145) + rng.uniform(30, 60) * signal
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def write_image(path, grey):
    """Save a grayscale image the way Kaggle shipped it: an RGB PNG with three identical channels."""
    Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2)).save(path, format="PNG")


def write_mask(path, mask):
    """Save a mask like Kaggle: 16-bit {0, 65535} when it holds salt, 8-bit zeros when it is empty."""
    pixels = mask.astype(np.uint16) * 65535 if mask.any() else np.zeros(mask.shape, np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def make_split(rng, out_dir, split, ids, counts, black):
    """Draw and write the images (and train masks) of one split; return the masks."""
    (out_dir / split / "images").mkdir(parents=True, exist_ok=True)
    if split == "train":
        (out_dir / split / "masks").mkdir(parents=True, exist_ok=True)
    masks = []
    for identifier, count, is_black in zip(ids, counts, black):
        mask = salt_mask(rng, count)
        grey = np.zeros((SIZE, SIZE), np.uint8) if is_black else seismic_image(rng, mask)
        write_image(out_dir / split / "images" / f"{identifier}.png", grey)
        if split == "train":
            write_mask(out_dir / split / "masks" / f"{identifier}.png", mask)
        masks.append(mask)
    return masks


def generate(out_dir, seed):
    """Write the whole synthetic TGS sample into ``out_dir`` from one seed."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    ids = hex_ids(rng, NUM_TRAIN + NUM_TEST, digits=10)
    train_ids, test_ids = ids[:NUM_TRAIN], ids[NUM_TRAIN:]
    train_counts, train_black = plan_train(rng)
    test_counts, test_black = plan_test(rng)
    depths = sample_depths(rng, np.concatenate([train_counts, test_counts]))
    train_masks = make_split(rng, out_dir, "train", train_ids, train_counts, train_black)
    make_split(rng, out_dir, "test", test_ids, test_counts, test_black)
    write_csv(out_dir / "train.csv", ["id", "rle_mask"],
              [(identifier, rle.encode(mask, "F")) for identifier, mask in zip(train_ids, train_masks)])
    # The real depths.csv mixes train and test ids in no particular order.
    depth_rows = [(ids[index], int(depths[index])) for index in rng.permutation(len(ids))]
    write_csv(out_dir / "depths.csv", ["id", "z"], depth_rows)
    write_csv(out_dir / "sample_submission.csv", ["id", "rle_mask"], [(identifier, "1 1") for identifier in test_ids])
    return out_dir
