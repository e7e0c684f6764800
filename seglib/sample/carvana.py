"""Synthetic Carvana Image Masking Challenge sample, in the layout and byte conventions of Kaggle's files.

Each car stands on a turntable in front of its own studio backdrop (a light grey wall with a soft gradient
and lamps, a floor behind a horizon seam, the turntable ring and a few tape marks) and is photographed from
16 angles: angle 01 faces the camera and each next angle turns the car by 22.5 degrees, so front and back
views are narrow and tall and side views long. The backdrop is identical in all 16 photographs of a car,
only JPEG noise differs, so a per-car median image reveals it wherever the car leaves it uncovered in most
angles. The car is a body, a cabin with windows and pillars, wheels, lights and highlights in one paint per
car; its soft shadow on the floor is not part of the mask. Silver and white paints sit close to the backdrop
grey, as they do in the real data. The extracted competition archive looks like this:

    train/<car>_<nn>.jpg               1918 x 1280 RGB JPG, car = 12 hex digits, nn = 01..16
    train_masks/<car>_<nn>_mask.gif    palette GIF, 0 = background, 1 = car
    train_masks.csv                    img,rle_mask   row-major RLE of the GIF masks, img = <car>_<nn>.jpg
    metadata.csv                       id,year,make,model,trim1,trim2   every train and test car
    sample_submission.csv              img,rle_mask   "1 1" for every test image, sorted
    test/<car>_<nn>.jpg
"""

import collections
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from seglib import rle
from seglib.sample import hex_ids, write_csv

HEIGHT, WIDTH = 1280, 1918
NUM_ANGLES = 16
NUM_TRAIN_CARS = 3
NUM_TEST_CARS = 1
JPEG_QUALITY = 85
PIXELS_PER_METRE = 320.0
# The camera looks slightly down: a point one metre farther away sits this many metres higher on screen.
CAMERA_TILT = 0.17
CENTRE_X = (WIDTH - 1) / 2
GROUND_Y = 975.0  # screen row of the turntable centre
TYRE_WIDTH = 0.24

CarShape = collections.namedtuple(
    "CarShape",
    ["length", "width", "clearance", "body_height", "cabin_height", "cabin_length", "cabin_offset", "wheelbase",
     "wheel_radius"],
)

# Sizes in metres; cabin_length, cabin_offset and wheelbase are shares of the car length.
BODY_STYLES = {
    "sedan": CarShape(4.8, 1.85, 0.2, 0.62, 0.56, 0.5, -0.06, 0.58, 0.33),
    "suv": CarShape(4.6, 1.9, 0.26, 0.78, 0.68, 0.6, -0.08, 0.6, 0.37),
    "hatchback": CarShape(4.3, 1.8, 0.18, 0.64, 0.62, 0.58, -0.1, 0.62, 0.32),
}

# year, make, model, trim1, trim2, body style (the first five are metadata.csv's columns).
CATALOGUE = (
    (2014, "Acura", "RLX", "RLX", "w/Tech", "sedan"),
    (2016, "Chevrolet", "Equinox", "LT", "w/1LT", "suv"),
    (2015, "Ford", "Focus", "SE", "", "hatchback"),
    (2017, "Toyota", "Camry", "LE", "", "sedan"),
    (2016, "Honda", "CR-V", "EX-L", "", "suv"),
    (2013, "Volkswagen", "Golf", "TDI", "w/Sunroof", "hatchback"),
)

# One paint per car, drawn without replacement: silver and white are the hard cases for a background model.
PAINTS = {
    "red": (158, 26, 32),
    "dark blue": (30, 46, 96),
    "silver": (176, 180, 186),
    "white": (230, 231, 233),
}
GLASS = np.array([38, 46, 56], np.float32)
TYRE = np.array([28, 28, 30], np.float32)
RIM = np.array([150, 152, 156], np.float32)

ROWS = np.arange(HEIGHT, dtype=np.float32)[:, np.newaxis]
COLUMNS = np.arange(WIDTH, dtype=np.float32)[np.newaxis, :]


# --- the studio ------------------------------------------------------------------------------------------


def gaussian_spot(row, column, radius):
    """A unit-height round Gaussian spot on the image grid."""
    return np.exp(-((ROWS - row) ** 2 + (COLUMNS - column) ** 2) / (2 * radius**2))


def studio_background(rng):
    """One car's backdrop as float32 (HEIGHT, WIDTH, 3): wall, floor, horizon seam, lamps, ring and marks."""
    horizon = rng.uniform(560, 640)
    wall_rows = ROWS < horizon
    across = (COLUMNS - CENTRE_X) / CENTRE_X
    wall = rng.uniform(218, 230) - 24 * (1 - ROWS / horizon) ** 2 - 10 * across**2
    floor = rng.uniform(196, 208) + 16 * (ROWS - horizon) / (HEIGHT - horizon) - 8 * across**2
    grey = np.where(wall_rows, wall, floor)
    # The cove where wall meets floor: a soft shade with a sharp seam in it.
    grey -= 12 * np.exp(-(((ROWS - horizon) / 22) ** 2)) + 26 * np.exp(-(((ROWS - horizon) / 2.2) ** 2))
    for _ in range(3):
        lamp = gaussian_spot(rng.uniform(40, horizon - 120), rng.uniform(150, WIDTH - 150), rng.uniform(60, 140))
        grey += rng.uniform(10, 22) * lamp
    seam = rng.uniform(200, WIDTH - 200)
    grey -= 8 * np.exp(-(((COLUMNS - seam) / 2.5) ** 2)) * wall_rows
    # The turntable's edge: a ring on the floor around the car, seen as a flat ellipse.
    radius = rng.uniform(2.7, 3.0) * PIXELS_PER_METRE
    ring = np.hypot((COLUMNS - CENTRE_X) / radius, (ROWS - GROUND_Y) / (radius * CAMERA_TILT))
    grey -= 14 * np.exp(-(((ring - 1) * radius / 3.0) ** 2))
    for _ in range(3):  # Tape marks on the floor, left and right of the turntable.
        row = rng.uniform(horizon + 40, HEIGHT - 40)
        column = rng.choice([rng.uniform(40, 300), rng.uniform(WIDTH - 300, WIDTH - 40)])
        tape = (np.abs(ROWS - row) < rng.uniform(4, 8)) & (np.abs(COLUMNS - column) < rng.uniform(25, 60))
        grey -= 40 * tape
    # Faint uneven lighting, far smoother than any detail of the car.
    mottle = ndimage.zoom(rng.standard_normal((9, 13)), (HEIGHT / 9, WIDTH / 13), order=3)
    grey += 2.5 * mottle
    tint = rng.uniform(-3, 3, size=3)
    return (grey[..., np.newaxis] + tint).astype(np.float32)


# --- the car ---------------------------------------------------------------------------------------------


def footprint_depths(length, width, offset, angle):
    """Nearest and farthest depth (metres, + is away from the camera) of a footprint over each screen column.

    The footprint is a rounded rectangle (a superellipse) centred ``offset`` metres along the car's axis.

    Returns:
        (covered, near, far): which columns the footprint spans, and its depth range per column.
    """
    turn = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    along = offset + length / 2 * np.sign(np.cos(turn)) * np.sqrt(np.abs(np.cos(turn)))
    side = width / 2 * np.sign(np.sin(turn)) * np.sqrt(np.abs(np.sin(turn)))
    screen_x = CENTRE_X + PIXELS_PER_METRE * (along * np.sin(angle) - side * np.cos(angle))
    depth = -along * np.cos(angle) - side * np.sin(angle)
    # The convex outline splits at its leftmost and rightmost points into a near and a far chain.
    left, right = int(np.argmin(screen_x)), int(np.argmax(screen_x))
    order = np.roll(np.arange(turn.size), -left)
    split = (right - left) % turn.size
    chains = (order[: split + 1], np.append(order[split:], left))
    columns = COLUMNS[0]
    chain_depths = []
    for chain in chains:
        by_x = chain[np.argsort(screen_x[chain], kind="stable")]
        chain_depths.append(np.interp(columns, screen_x[by_x], depth[by_x]))
    covered = (columns >= screen_x[left]) & (columns <= screen_x[right])
    return covered, np.minimum(*chain_depths), np.maximum(*chain_depths)


def screen_row(height, depth):
    """Screen row of a point ``height`` metres above the floor at ``depth``."""
    return GROUND_Y - PIXELS_PER_METRE * (height + CAMERA_TILT * depth)


def slab_rows(bottom, top, length, width, offset, angle):
    """Screen rows of a vertical slab (a footprint extruded from ``bottom`` to ``top`` metres), per column.

    Returns:
        (covered, first, last, face_last): which columns the slab spans, its first and last row there, and
        the last row of its upper face seen from above.
    """
    covered, near, far = footprint_depths(length, width, offset, angle)
    return covered, screen_row(top, far), screen_row(bottom, near), screen_row(top, near)


def column_region(covered, first, last):
    """Boolean image of rows ``first..last`` in every covered column."""
    return covered & (ROWS >= first) & (ROWS <= last)


def solid_region(slabs, angle):
    """The region of a stack of slabs (bottom, top, length, width, offset), bottom first, and the upper face
    of its top slab."""
    covered, first, last, _ = (np.stack(values) for values in zip(*(slab_rows(*slab, angle) for slab in slabs)))
    # Stacked slabs touch within a column, so their union there is one run from the first row to the last.
    first = np.where(covered, first, np.inf).min(axis=0)
    last = np.where(covered, last, -np.inf).max(axis=0)
    top_covered, top_first, _, top_face_last = slab_rows(*slabs[-1], angle)
    return column_region(covered.any(axis=0), first, last), column_region(top_covered, top_first, top_face_last)


def body_slabs(shape):
    """Lower body slabs, rounded at the bumpers and sills."""
    slabs = []
    for fraction in np.linspace(0, 1, 17)[:-1]:
        rounding = 1 - 0.06 * abs(2 * fraction + 1 / 16 - 1) ** 3
        bottom = shape.clearance + fraction * shape.body_height
        slabs.append((bottom, bottom + shape.body_height / 16, shape.length * rounding, shape.width * rounding, 0.0))
    return slabs


def cabin_slabs(shape, inset=0.0, inset_height=0.0):
    """Cabin slabs: narrower toward the roof, the windscreen raked more than the rear window."""
    base = shape.clearance + shape.body_height + inset_height
    height = shape.cabin_height - 2 * inset_height
    slabs = []
    for fraction in np.linspace(0, 1, 33)[:-1]:
        length = shape.cabin_length * shape.length * (1 - 0.38 * fraction) - 2 * inset
        width = 0.9 * shape.width * (1 - 0.18 * fraction) - 2 * inset
        offset = (shape.cabin_offset - 0.05 * fraction) * shape.length
        bottom = base + fraction * height
        slabs.append((bottom, bottom + height / 32, length, width, offset))
    return slabs


def ellipse(row, column, half_height, half_width):
    """An axis-aligned ellipse as (window, inside): the slices of its bounding box, and which pixels of that
    box it covers (working in the box only keeps the many small shapes cheap)."""
    half_width = max(half_width, 1.0)
    top, bottom = max(int(row - half_height), 0), min(int(row + half_height) + 2, HEIGHT)
    left, right = max(int(column - half_width), 0), min(int(column + half_width) + 2, WIDTH)
    window = (slice(top, bottom), slice(left, right))
    inside = ((ROWS[window[0]] - row) / half_height) ** 2 + ((COLUMNS[:, window[1]] - column) / half_width) ** 2
    return window, inside <= 1


def wheel_regions(shape, angle):
    """(near, row, column, half_width) of each wheel: whether it is on the camera side, and its tyre's screen
    ellipse (its half height is the wheel radius)."""
    wheels = []
    for along in (shape.wheelbase * shape.length / 2, -shape.wheelbase * shape.length / 2):
        for side in (shape.width / 2 - TYRE_WIDTH / 2, -(shape.width / 2 - TYRE_WIDTH / 2)):
            depth = -along * np.cos(angle) - side * np.sin(angle)
            column = CENTRE_X + PIXELS_PER_METRE * (along * np.sin(angle) - side * np.cos(angle))
            # A tyre shows its full disc from the side and only its tread from the front.
            half_width = PIXELS_PER_METRE * (shape.wheel_radius * abs(np.sin(angle))
                                             + TYRE_WIDTH / 2 * abs(np.cos(angle)))
            row = screen_row(shape.wheel_radius, depth)
            wheels.append((depth < 0, row, column, half_width))
    return wheels


def paint_wheel(image, row, column, half_width, radius_pixels, angle):
    """Paint a tyre, and its rim when the wheel is seen enough from the side."""
    window, tyre = ellipse(row, column, radius_pixels, half_width)
    image[window][tyre] = TYRE
    if abs(np.sin(angle)) > 0.3:
        window, rim = ellipse(row, column, 0.62 * radius_pixels, 0.62 * half_width)
        image[window][rim] = RIM


def body_light(angle, shape, rows, columns, top_face):
    """Brightness factor of the paint at pixels (rows, columns): darker toward the sills, a highlight line,
    lighter on ``top_face`` pixels (seen from above)."""
    _, near, far = footprint_depths(shape.length, shape.width, 0.0, angle)
    height = (GROUND_Y - rows) / PIXELS_PER_METRE - CAMERA_TILT * (near[columns] + far[columns]) / 2
    level = np.clip((height - shape.clearance) / shape.body_height, 0, 1)
    light = 0.68 + 0.45 * level + 0.3 * np.exp(-(((level - 0.82) / 0.05) ** 2))
    return np.where(top_face, 1.22, light)


def paint_lights(image, shape, angle, body):
    """Head lights and grille on the front, red lights on the back, whichever end faces the camera."""
    facing = np.cos(angle)
    if abs(facing) < 0.2:
        return
    end = shape.length / 2 * np.sign(facing)
    depth_end = -end * facing
    row = screen_row(shape.clearance + 0.7 * shape.body_height, depth_end)
    for side in (0.36 * shape.width, -0.36 * shape.width):
        column = CENTRE_X + PIXELS_PER_METRE * (end * np.sin(angle) - side * facing)
        window, lamp = ellipse(row, column, 0.06 * PIXELS_PER_METRE, 0.17 * PIXELS_PER_METRE * abs(facing))
        image[window][lamp & body[window]] = (246, 246, 240) if facing > 0 else (176, 22, 28)
    if facing > 0:
        column = CENTRE_X + PIXELS_PER_METRE * end * np.sin(angle)
        row = screen_row(shape.clearance + 0.35 * shape.body_height, depth_end)
        window, grille = ellipse(row, column, 0.09 * PIXELS_PER_METRE, 0.5 * shape.width * PIXELS_PER_METRE * facing)
        image[window][grille & body[window]] = (34, 34, 36)


def render_car(shape, paint, angle):
    """The car at ``angle`` (radians; 0 faces the camera).

    Returns:
        (colours, mask, footprint): float32 (HEIGHT, WIDTH, 3) car colours, its bool mask, and its footprint
        on the floor (where its shadow falls) as (covered, near_row, far_row) per column.
    """
    body, body_top = solid_region(body_slabs(shape), angle)
    cabin, roof = solid_region(cabin_slabs(shape), angle)
    glass, _ = solid_region(cabin_slabs(shape, inset=0.05, inset_height=0.05), angle)
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    wheels = wheel_regions(shape, angle)
    radius_pixels = shape.wheel_radius * PIXELS_PER_METRE
    # Seen from the side, the near wheels stand in front of the body; otherwise the body hides all wheels
    # but their lower part.
    side_on = abs(np.sin(angle)) > 0.3
    car = body | cabin
    mask = car.copy()
    for near, row, column, half_width in wheels:
        window, tyre = ellipse(row, column, radius_pixels, half_width)
        mask[window] |= tyre
        if not (near and side_on):
            paint_wheel(image, row, column, half_width, radius_pixels, angle)
    rows, columns = np.nonzero(car)
    light = body_light(angle, shape, rows, columns, (body_top | roof)[rows, columns])
    image[rows, columns] = np.clip(np.asarray(paint, np.float32) * light[:, np.newaxis], 0, 255)
    # The B-pillar splits the side windows; it only shows when the car is turned.
    pillar_column = CENTRE_X + PIXELS_PER_METRE * shape.cabin_offset * shape.length * np.sin(angle)
    pillar = np.abs(COLUMNS - pillar_column) < 0.05 * PIXELS_PER_METRE * abs(np.sin(angle))
    rows, columns = np.nonzero(glass & ~roof & ~pillar)
    # The windows mirror the bright studio more toward their upper right.
    reflection = 0.8 + 0.4 * np.clip((columns - rows - CENTRE_X + 600) / 900, 0, 1)
    image[rows, columns] = GLASS * reflection[:, np.newaxis]
    paint_lights(image, shape, angle, body)
    for near, row, column, half_width in wheels:
        if near and side_on:
            window, arch = ellipse(row, column, 1.1 * radius_pixels, 1.1 * half_width)
            image[window][arch & body[window]] = (22, 22, 24)
            paint_wheel(image, row, column, half_width, radius_pixels, angle)
    covered, far_row, near_row, _ = slab_rows(0.0, 0.0, shape.length, shape.width, 0.0, angle)
    return image, mask, (covered, near_row, far_row)


def soft_shadow(covered, near_row, far_row):
    """Darkening factor in [0, 1] of the car's soft shadow on the floor, around its footprint.

    Args:
        covered, near_row, far_row: per column, whether the footprint spans it and its nearest and farthest
            screen row.
    """
    # Blurring the footprint's outline per column costs a few passes over the image, a 2-D blur far more.
    reach = 20
    coverage = ndimage.uniform_filter1d(covered.astype(np.float32), 4 * reach + 1)
    far_row = ndimage.uniform_filter1d(np.where(covered, far_row, GROUND_Y), 2 * reach + 1)
    near_row = ndimage.uniform_filter1d(np.where(covered, near_row, GROUND_Y), 2 * reach + 1)
    below_far = np.clip((ROWS - far_row + reach) / (2 * reach), 0, 1)
    above_near = np.clip((near_row + reach - ROWS) / (2 * reach), 0, 1)
    return (coverage * below_far * above_near).astype(np.float32)


def photograph(background, shape, paint, angle):
    """One photograph as uint8 (HEIGHT, WIDTH, 3), the car over its backdrop and soft shadow; and its mask."""
    colours, mask, footprint = render_car(shape, paint, angle)
    shaded = background * (1 - 0.5 * soft_shadow(*footprint))[..., np.newaxis]
    image = np.where(mask[..., np.newaxis], colours, shaded)
    # Soften the car's outline like a lens would; the backdrop holds no sharp edge worth the cost.
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (slice(max(rows[0] - 4, 0), rows[-1] + 5), slice(max(columns[0] - 4, 0), columns[-1] + 5))
    image[box] = ndimage.gaussian_filter(image[box], sigma=(0.7, 0.7, 0), truncate=2.0)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask


# --- files -----------------------------------------------------------------------------------------------


def write_jpg(path, image):
    """Save a JPG with fixed settings and no metadata, so that the bytes are reproducible."""
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)


def write_mask(path, mask):
    """Save a mask like Kaggle: a palette GIF holding 0 (black) and 1 (white)."""
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.astype(np.uint8).tobytes())
    image.putpalette([0, 0, 0, 255, 255, 255])
    image.save(path, format="GIF", optimize=False)


def photograph_car(rng, out_dir, part, car_id, shape, paint):
    """Write the 16 photographs of one car (and its masks for train); return {image id: mask}."""
    background = studio_background(rng)
    # A turntable never stops exactly on the 22.5-degree marks.
    angles = np.deg2rad(22.5 * np.arange(NUM_ANGLES) + rng.uniform(-1.5, 1.5, size=NUM_ANGLES))
    masks = {}
    for number, angle in enumerate(angles, start=1):
        image_id = f"{car_id}_{number:02d}"
        image, mask = photograph(background, shape, paint, angle)
        write_jpg(out_dir / part / f"{image_id}.jpg", image)
        if part == "train":
            write_mask(out_dir / "train_masks" / f"{image_id}_mask.gif", mask)
        masks[image_id] = mask
    return masks


def jitter(rng, shape):
    """A body style with every size varied by a few percent, so no two cars are identical."""
    return CarShape(*(value * rng.uniform(0.96, 1.04) for value in shape))


def generate(out_dir, seed):
    """Write the whole synthetic Carvana sample into ``out_dir`` from one seed."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    num_cars = NUM_TRAIN_CARS + NUM_TEST_CARS
    car_ids = hex_ids(rng, num_cars, digits=12)
    models = [CATALOGUE[index] for index in rng.choice(len(CATALOGUE), size=num_cars, replace=False)]
    paints = [list(PAINTS.values())[index] for index in rng.permutation(len(PAINTS))[:num_cars]]
    for folder in ("train", "train_masks", "test"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    train_masks = {}
    for index, (car_id, model, paint) in enumerate(zip(car_ids, models, paints)):
        part = "train" if index < NUM_TRAIN_CARS else "test"
        masks = photograph_car(rng, out_dir, part, car_id, jitter(rng, BODY_STYLES[model[-1]]), paint)
        if part == "train":
            train_masks.update(masks)
    write_csv(out_dir / "train_masks.csv", ["img", "rle_mask"],
              [(f"{image_id}.jpg", rle.encode(train_masks[image_id], order="C")) for image_id in sorted(train_masks)])
    write_csv(out_dir / "metadata.csv", ["id", "year", "make", "model", "trim1", "trim2"],
              sorted((car_id, *model[:-1]) for car_id, model in zip(car_ids, models)))
    test_ids = sorted(f"{car_id}_{number:02d}" for car_id in car_ids[NUM_TRAIN_CARS:]
                      for number in range(1, NUM_ANGLES + 1))
    write_csv(out_dir / "sample_submission.csv", ["img", "rle_mask"],
              [(f"{image_id}.jpg", "1 1") for image_id in test_ids])
    return out_dir
