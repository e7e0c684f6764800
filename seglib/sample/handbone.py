"""Synthetic hand bone X-ray sample, in the folder layout and JSON structure of the real competition data.

Each patient has a left and a right hand radiograph: a soft-tissue silhouette (forearm, palm, five fingers) and,
brighter, the 29 labelled bones: radius and ulna, 8 carpal bones, 5 metacarpals and 14 phalanges. Every bone is
one polygon that goes unchanged into the annotation JSON and is rasterised with the same pixel-centre rule the
adapter uses, so images and masks agree pixel for pixel. Neighbouring carpal bones overlap a little, and so do
the carpals and the distal radius and ulna, as in the real labels. A patient's right hand is the mirrored left
hand in a slightly different pose. Finger bones are numbered thumb first, each ray from the tip to the
metacarpal: finger-1 is the thumb's distal phalanx, finger-3 its metacarpal, finger-19 the little finger's
metacarpal.

The images are 512 x 512 to keep the sample small; the real ones are 2048 x 2048, and the adapter reads every
size from the files::

    train/DCM/ID001/image1661130828152_L.png            8-bit grayscale, 6 train patients x 2 hands
    train/outputs_json/ID001/image1661130828152_L.json  {"annotations": [{"id", "type": "poly_seg", "label",
                                                         "points": [[x, y], ...]}, ...], "filename", ...}
    test/DCM/ID007/image1661319116107.png               2 test patients x 2 hands
    meta_data.csv                                       ID,age,sex,weight,height (ID as the integer, like the
                                                        real meta_data.xlsx)
"""

import csv
import json
import uuid
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage import draw

from seglib.competitions.handbone import CLASSES

SIZE = 512
NUM_TRAIN_PATIENTS = 6
NUM_TEST_PATIENTS = 2
FIRST_TIMESTAMP = 1661130828152  # Real file names are "image" + a millisecond timestamp.
WRIST_CENTRE = np.array([256.0, 380.0])
JOINT_GAP = 4.0
POINTS_PER_SIDE = 14

# Template of a left hand (thumb on the right of the image) in pixels of a 512 x 512 image. Each finger ray,
# thumb to little finger: metacarpal base (x, y), direction in degrees from straight up (positive towards the
# thumb), bone lengths from the metacarpal outwards, and a width factor.
RAYS = (
    ((338.0, 326.0), 42.0, (58.0, 42.0, 30.0), 1.15),
    ((300.0, 318.0), 10.0, (92.0, 55.0, 32.0, 24.0), 1.0),
    ((268.0, 315.0), 0.0, (96.0, 60.0, 37.0, 26.0), 1.05),
    ((238.0, 318.0), -8.0, (88.0, 56.0, 35.0, 25.0), 0.95),
    ((212.0, 325.0), -17.0, (76.0, 44.0, 27.0, 22.0), 0.85),
)
# Half-widths (base, shaft, head) of metacarpal, proximal, middle and distal bones; the thumb has no middle one.
FINGER_WIDTHS = ((11.0, 7.0, 10.0), (9.0, 6.0, 8.0), (8.0, 5.0, 7.0), (7.0, 4.5, 5.0))
THUMB_WIDTHS = (FINGER_WIDTHS[0], FINGER_WIDTHS[1], FINGER_WIDTHS[3])
# Carpal bones: centre (x, y), semi-axes (along, across), tilt in degrees. Placed close enough to overlap.
CARPALS = {
    "Trapezium": ((332.0, 338.0), (19.0, 16.0), -20.0),
    "Trapezoid": ((300.0, 336.0), (15.0, 16.0), 0.0),
    "Capitate": ((268.0, 340.0), (16.0, 25.0), 0.0),
    "Hamate": ((234.0, 340.0), (18.0, 22.0), 10.0),
    "Scaphoid": ((310.0, 374.0), (27.0, 16.0), -35.0),
    "Lunate": ((271.0, 380.0), (20.0, 17.0), 0.0),
    "Triquetrum": ((238.0, 372.0), (18.0, 14.0), 20.0),
    "Pisiform": ((226.0, 382.0), (11.0, 11.0), 0.0),
}
# Forearm bones: base (below the image), distal end, and half-widths (base, shaft, head).
ARM = {
    "Radius": ((292.0, 600.0), (285.0, 391.0), (16.0, 16.0, 36.0)),
    "Ulna": ((205.0, 600.0), (214.0, 404.0), (12.0, 11.0, 15.0)),
}


def finger_class(ray, bone):
    """Class name of bone ``bone`` (0 = metacarpal, outwards) of ray ``ray`` (0 = thumb)."""
    num_bones = len(RAYS[ray][2])
    first = 1 if ray == 0 else 4 + 4 * (ray - 1)  # the distal phalanx of the ray
    return f"finger-{first + num_bones - 1 - bone}"


def long_bone(base, head, widths):
    """Outline (k, 2) of a long bone from ``base`` to ``head``: flared ends, a narrow shaft, rounded caps."""
    base, head = np.asarray(base, float), np.asarray(head, float)
    base_width, shaft_width, head_width = widths
    axis = head - base
    along = axis / np.linalg.norm(axis)
    normal = np.array([-along[1], along[0]])
    # Sine spacing puts more points on the rounded ends, where the outline bends most.
    position = np.sin(np.linspace(-np.pi / 2, np.pi / 2, POINTS_PER_SIDE))
    flare = (shaft_width + (base_width - shaft_width) * np.clip(-position, 0, None) ** 3
             + (head_width - shaft_width) * np.clip(position, 0, None) ** 3)
    half_width = flare * (1 - np.abs(position) ** 6) ** (1 / 6)
    centre_line = base + (position[:, None] + 1) / 2 * axis
    side = centre_line + half_width[:, None] * normal
    other_side = centre_line - half_width[:, None] * normal
    return np.concatenate([side, other_side[::-1]])


def irregular_ellipse(rng, centre, semi_axes, tilt_degrees, num_points=20):
    """Outline (num_points, 2) of a tilted ellipse with a slightly bumpy rim, like a carpal bone."""
    angles = np.linspace(0, 2 * np.pi, num_points, endpoint=False)
    phases = rng.uniform(0, 2 * np.pi, size=2)
    bumps = 1 + 0.05 * np.sin(2 * angles + phases[0]) + 0.03 * np.sin(3 * angles + phases[1])
    along, across = semi_axes[0] * bumps * np.cos(angles), semi_axes[1] * bumps * np.sin(angles)
    tilt = np.radians(tilt_degrees)
    return np.column_stack([centre[0] + along * np.cos(tilt) - across * np.sin(tilt),
                            centre[1] + along * np.sin(tilt) + across * np.cos(tilt)])


def patient_pose(rng, height_cm):
    """Pose and proportions of one patient's hands: size follows body height, the rest varies at random."""
    return {
        "scale": float(np.clip(height_cm / 172 * rng.uniform(0.95, 1.03), 0.86, 1.08)),
        "rotation": rng.uniform(-9, 9),
        "shift": rng.uniform([-18, -14], [18, 10]),
        "spread": rng.uniform(-5, 5, size=len(RAYS)) * np.array([1.6, 1, 0.6, 1, 1.3]),
        "length": rng.uniform(0.94, 1.06, size=len(RAYS)),
        "bend": rng.uniform(-4, 4, size=(len(RAYS), 4)),
        "carpal_shift": rng.uniform(-2, 2, size=(len(CARPALS), 2)),
        "carpal_scale": rng.uniform(0.93, 1.07, size=len(CARPALS)),
    }


def hand_pose(rng, pose):
    """One hand of a patient: the patient's pose, placed and flexed a little differently."""
    hand = dict(pose)
    hand["rotation"] = pose["rotation"] + rng.uniform(-3, 3)
    hand["shift"] = pose["shift"] + rng.uniform(-6, 6, size=2)
    hand["spread"] = pose["spread"] + rng.uniform(-2, 2, size=len(RAYS))
    hand["bend"] = pose["bend"] + rng.uniform(-1.5, 1.5, size=pose["bend"].shape)
    return hand


def finger_rays(hand):
    """Bone outlines of the five rays (class name -> outline) and each ray's (base, fingertip), in template space."""
    outlines, rays = {}, []
    for ray, (base, direction, lengths, width_factor) in enumerate(RAYS):
        widths = THUMB_WIDTHS if ray == 0 else FINGER_WIDTHS
        position = np.asarray(base)
        for bone, length in enumerate(lengths):
            angle = np.radians(direction + hand["spread"][ray] + hand["bend"][ray, bone])
            step = np.array([np.sin(angle), -np.cos(angle)])
            head = position + length * hand["length"][ray] * step
            outlines[finger_class(ray, bone)] = long_bone(position, head, np.asarray(widths[bone]) * width_factor)
            position = head + JOINT_GAP * step
        rays.append((np.asarray(base), position))
    return outlines, rays


def hand_outlines(rng, hand):
    """Bone outlines (class name -> (k, 2) float points) and soft-tissue outlines of one left hand, in template
    space."""
    bones, rays = finger_rays(hand)
    for index, (name, (centre, semi_axes, tilt)) in enumerate(CARPALS.items()):
        centre = np.asarray(centre) + hand["carpal_shift"][index]
        bones[name] = irregular_ellipse(rng, centre, np.asarray(semi_axes) * hand["carpal_scale"][index], tilt)
    for name, (base, head, widths) in ARM.items():
        bones[name] = long_bone(base, head, widths)
    # Fingers: a padded capsule along each ray; palm: the hull of metacarpals, carpals and the wrist ends of
    # the forearm bones; forearm: the hull of radius and ulna.
    tissue = [long_bone(base, tip + 6 * (tip - base) / np.linalg.norm(tip - base), (14, 12, 10)) for base, tip in rays]
    metacarpals = [bones[finger_class(ray, 0)] for ray in range(len(RAYS))]
    arm_points = np.concatenate([bones[name] for name in ARM])
    wrist_points = arm_points[arm_points[:, 1] < WRIST_CENTRE[1] + 50]
    palm_points = np.concatenate(metacarpals + [bones[name] for name in CARPALS] + [wrist_points])
    tissue += [convex_outline(palm_points), convex_outline(arm_points)]
    return bones, tissue


def convex_outline(points):
    """The convex hull of ``points`` as an outline."""
    return points[ConvexHull(points).vertices]


def place(outline, hand, mirror):
    """Move a template outline to the image: scale and rotate about the wrist, shift, mirror for a right hand."""
    angle = np.radians(hand["rotation"])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = WRIST_CENTRE + hand["scale"] * (outline - WRIST_CENTRE) @ rotation.T + hand["shift"]
    if mirror:
        placed[:, 0] = SIZE - 1 - placed[:, 0]
    return placed


def to_annotation_points(outline):
    """Integer [x, y] points inside the image, as the real annotations store them."""
    points = np.clip(np.round(outline), 0, SIZE - 1).astype(int)
    # Clipping at the image border can repeat a point; the real polygons have no repeated neighbours.
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
    return points[keep]


def fill(points):
    """Boolean mask of an integer polygon, by the adapter's pixel-centre rule."""
    mask = np.zeros((SIZE, SIZE), bool)
    rows, columns = draw.polygon(points[:, 1], points[:, 0], shape=(SIZE, SIZE))
    mask[rows, columns] = True
    return mask


def smooth_noise(rng, sigma):
    """Gaussian-smoothed white noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), sigma)
    return field / field.std()


def xray_image(rng, bone_masks, tissue_mask):
    """A uint8 radiograph: attenuation adds up, so tissue is grey, bone bright and overlapping bones brighter."""
    # Tissue thins towards the outline of the hand, so it fades out rather than ending at a hard edge.
    tissue = ndimage.gaussian_filter(tissue_mask.astype(float), 5)
    bone = np.zeros((SIZE, SIZE))
    for mask in bone_masks:
        # Cortical bone is denser than the marrow inside it: a bright rim.
        cortex = mask & ~ndimage.binary_erosion(mask, iterations=2)
        bone += 0.6 * mask + 0.4 * cortex
    bone *= 1 + 0.1 * smooth_noise(rng, 1.5)  # trabecular texture
    heel_effect = 1 + rng.uniform(-0.06, 0.06) * np.linspace(-1, 1, SIZE)[:, None]
    signal = rng.uniform(0.9, 1.1) * heel_effect * (rng.uniform(12, 24) + 70 * tissue + 95 * bone)
    # Detector blur, then quantum noise.
    signal = ndimage.gaussian_filter(signal, 1.0) + rng.normal(0, 2.5, size=signal.shape)
    return np.clip(np.round(signal), 0, 255).astype(np.uint8)


def draw_hand(rng, hand, mirror):
    """The image and the per-class integer polygons of one hand."""
    bones, tissue = hand_outlines(rng, hand)
    polygons = {name: to_annotation_points(place(bones[name], hand, mirror)) for name in CLASSES}
    tissue_mask = np.zeros((SIZE, SIZE), bool)
    for outline in tissue:
        tissue_mask |= fill(to_annotation_points(place(outline, hand, mirror)))
    bone_masks = [fill(points) for points in polygons.values()]
    tissue_mask |= np.any(bone_masks, axis=0)
    # Round the silhouette: padding by 10 px, then smoothing corners away.
    tissue_mask = ndimage.distance_transform_edt(~tissue_mask) < 10
    tissue_mask = ndimage.gaussian_filter(tissue_mask.astype(float), 4) > 0.5
    return xray_image(rng, bone_masks, tissue_mask), polygons


def make_patients(rng):
    """Patient records (folder name, part, ID number, age, sex, weight, height), train first."""
    patients = []
    for number in range(1, NUM_TRAIN_PATIENTS + NUM_TEST_PATIENTS + 1):
        sex = "M" if rng.random() < 0.5 else "F"
        height = rng.normal(175, 6) if sex == "M" else rng.normal(162, 6)
        weight = (height - 100) * rng.uniform(0.8, 1.15)
        patients.append({"folder": f"ID{number:03d}", "part": "train" if number <= NUM_TRAIN_PATIENTS else "test",
                         "ID": number, "age": int(rng.integers(20, 61)), "sex": sex,
                         "weight": int(round(weight)), "height": int(round(height))})
    return patients


def annotation_document(rng, file_name, polygons):
    """The JSON structure of the real annotation files."""
    annotations = [{"id": str(uuid.UUID(bytes=rng.bytes(16), version=4)), "type": "poly_seg", "attributes": {},
                    "points": points.tolist(), "label": name} for name, points in polygons.items()]
    return {"annotations": annotations, "attributes": {}, "filename": file_name,
            "metadata": {"height": SIZE, "width": SIZE}}


def write_hand(out_dir, patient, stem, image, document):
    """Write one hand's PNG and, for train patients, its annotation JSON."""
    image_folder = out_dir / patient["part"] / "DCM" / patient["folder"]
    image_folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_folder / f"{stem}.png", format="PNG")
    if patient["part"] == "train":
        json_folder = out_dir / "train" / "outputs_json" / patient["folder"]
        json_folder.mkdir(parents=True, exist_ok=True)
        (json_folder / f"{stem}.json").write_text(json.dumps(document) + "\n")


def write_metadata(path, patients):
    """meta_data.csv: one row per patient, train and test."""
    columns = ("ID", "age", "sex", "weight", "height")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([patient[column] for column in columns] for patient in patients)


def generate(out_dir, seed):
    """Write the whole synthetic hand bone sample into ``out_dir`` from one seed."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    patients = make_patients(rng)
    timestamp = FIRST_TIMESTAMP
    for patient in patients:
        pose = patient_pose(rng, patient["height"])
        for side in ("L", "R"):
            # Both hands are taken within seconds; patients minutes to days apart.
            stem = f"image{timestamp}_{side}" if patient["part"] == "train" else f"image{timestamp}"
            image, polygons = draw_hand(rng, hand_pose(rng, pose), mirror=side == "R")
            write_hand(out_dir, patient, stem, image, annotation_document(rng, f"{stem}.png", polygons))
            timestamp += int(rng.integers(500, 5_000))
        timestamp += int(rng.integers(60_000, 90_000_000))
    write_metadata(out_dir / "meta_data.csv", patients)
    return out_dir
