"""Check a competition folder before training: every unreadable file, missing partner and malformed CSV row.

Real downloads go wrong quietly (a truncated PNG, a mask re-exported with grey edges, a repeated CSV row), and
training stops hours in at the first bad file or reads a wrong mask without complaint. The adapters' readers
raise on the first problem; this reads every file once through the same adapter and collects every problem::

    python -m seglib check tgs /kaggle/input/tgs-salt-identification-challenge
"""

import collections
import functools
import io

import pandas as pd
from PIL import Image
from tqdm import tqdm  # text bars: tqdm.auto warns in Jupyter without ipywidgets

from seglib import artifacts
from seglib.competitions import get_competition
from seglib.competitions.base import DATA_ERRORS, Problem, problem_from
from seglib.stats import read_ahead


class CheckReport(list):
    """The Problems found (a list, in the order found), how many files were read to find them, and the ids of
    all-constant images (no problem: listed for the EDA, as TGS has a few all-black sections)."""

    def __init__(self, problems=(), files_checked=0, constant_images=()):
        super().__init__(problems)
        self.files_checked = files_checked
        self.constant_images = list(constant_images)

    @property
    def errors(self):
        return [problem for problem in self if problem.severity == "error"]

    def summary(self):
        if not self:
            return f"no problems in {self.files_checked} files"
        errors = len(self.errors)
        return (f"{len(self)} problem(s) ({errors} error(s), {len(self) - errors} warning(s)) in "
                f"{self.files_checked} file(s) checked")


def check_dataset(competition_name, data_dir, progress=False, workers=None):
    """A ``CheckReport`` of every problem of a competition folder (extracted or Kaggle's zips): folders and
    tables first, then each image and mask, decoded in full (a truncated file only fails on decode) by
    ``workers`` threads (Pillow releases the GIL) under a tqdm bar if ``progress``."""
    competition = get_competition(competition_name, data_dir)
    found = dict.fromkeys(competition.problems())  # an ordered set: one broken zip can surface twice
    jobs = []
    for part in ("train", "test"):
        try:
            jobs += [(part, image_id) for image_id in competition.listed_ids(part)]
        except DATA_ERRORS:
            pass  # ``problems`` named the unlistable zip
    modes, constant_images = collections.defaultdict(list), []
    checked = read_ahead(functools.partial(check_image, competition), *zip(*jobs), workers=workers)
    with tqdm(total=len(jobs), desc=f"checking {competition.name}", unit="image", disable=not progress) as bar:
        for part, image_id, path, problems, mode, constant in checked:
            found.update(dict.fromkeys(problems))
            if mode is not None:
                modes[part].append((path, mode))
            if constant:
                constant_images.append(image_id)
            bar.update()
    found.update(dict.fromkeys(mode_warnings(modes)))
    return CheckReport(found, len(competition.files.paths_read), constant_images)


def check_image(competition, part, image_id):
    """Read one image as training does, and a training image's mask: (part, id, path, Problems, the image's
    Pillow mode, whether it is all one value)."""
    path = competition.image_path(image_id, part)
    problems, mode, constant = [], None, False
    try:
        image = competition.read_image(image_id, part)
        with Image.open(io.BytesIO(competition.files.read_bytes(path))) as header:
            mode = header.mode
        constant = bool(image.min() == image.max())
    except DATA_ERRORS as error:
        problems.append(problem_from(path, error))
    if part == "train":
        problems += competition.mask_problems(image_id)
    return part, image_id, path, problems, mode, constant


def mode_warnings(modes):
    """A warning per image whose mode (palette, RGBA, 16-bit...) differs from most of its part's: the adapter
    converts it, but it may come from another source or export than the rest."""
    for part, paths_and_modes in modes.items():
        counts = collections.Counter(mode for _, mode in paths_and_modes)
        usual, usual_count = counts.most_common(1)[0]
        for path, mode in paths_and_modes:
            if mode != usual:
                yield Problem(path, f"image mode {mode}, while {usual_count} of {len(paths_and_modes)} {part} images "
                                    f"are {usual}", "warning")


def save_report(path, problems):
    """Write ``problems`` as a CSV with columns path, severity, message, atomically."""
    table = pd.DataFrame([(problem.path, problem.severity, problem.message) for problem in problems],
                         columns=["path", "severity", "message"])
    return artifacts.save_csv(path, table, index=False)
