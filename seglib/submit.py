"""Write the submission CSV from streamed test predictions, resumably and in shards, and validate it.

One batch at a time: original size -> policy -> RLE rows appended to a hidden partial file, flushed, and the ids
journalled, so memory stays flat and a run killed in Carvana's 100,064 test images goes on from its last batch.
``shard="i/n"`` writes part i of n (one process or machine each); ``merge_submissions`` joins the parts.
"""

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from seglib import artifacts, rle
from seglib.errors import SeglibError
from seglib.policy import apply_policy, load_policy
from seglib.predict import predict_batches, to_original_size

log = logging.getLogger(__name__)


def parse_shard(shard):
    """(index, count) of a shard given as "i/n" (1-based, e.g. "2/4") or as a pair; None stays None."""
    if shard is None:
        return None
    try:
        index, count = (int(part) for part in (shard.split("/") if isinstance(shard, str) else shard))
    except (ValueError, TypeError):
        raise SeglibError(f"a shard is 'i/n' with whole numbers, e.g. '2/4'; got {shard!r}") from None
    if not 1 <= index <= count:
        raise SeglibError(f"shard {index}/{count}: the index must be between 1 and {count}")
    return index, count


def shard_ids(image_ids, shard):
    """Part i of n of ``image_ids``: contiguous, so the parts joined in order keep the submission order."""
    image_ids, shard = list(image_ids), parse_shard(shard)
    if shard is None:
        return image_ids
    bounds = np.linspace(0, len(image_ids), shard[1] + 1).round().astype(int)
    return image_ids[bounds[shard[0] - 1]:bounds[shard[0]]]


def shard_path(path, shard):
    """Where shard i/n of ``path`` is written: submission.csv -> submission.shard2of4.csv (``path`` for None)."""
    path, shard = Path(path), parse_shard(shard)
    return path if shard is None else path.with_name(f"{path.stem}.shard{shard[0]}of{shard[1]}{path.suffix}")


class ResumableRows:
    """CSV rows appended batch by batch to ``.<name>.partial`` beside ``path``, with a journal of the finished
    ids (``.<name>.journal``; ``done`` lists them). An earlier run's partial file is resumed only if written with
    the same ``settings`` (JSON-able: weights digest, policy, TTA, ids) and ``resume``; else it starts afresh.
    """

    def __init__(self, path, header, settings, resume=True):
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.journal = self.path.with_name(f".{self.path.name}.journal")
        settings_json = json.dumps([list(header), settings], sort_keys=True, default=str)
        self.key = hashlib.sha256(settings_json.encode()).hexdigest()
        self.done = self._resume() if resume else None
        if self.done is None:
            self.done = []
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.partial.write_bytes(_csv_bytes([header]))
            self._rewrite_journal([json.dumps({"key": self.key})])

    def _resume(self):
        """The finished ids of a matching earlier run, its partial file cut back to them; None if none."""
        if not self.partial.exists() or not self.journal.exists():
            return None
        lines = self.journal.read_text().splitlines()
        try:
            if json.loads(lines[0]).get("key") != self.key:
                log.info("%s was written with other settings: starting afresh", self.partial.name)
                return None
        except (IndexError, ValueError, AttributeError):
            return None
        entries = []
        for line in lines[1:]:
            try:
                entries.append(json.loads(line))
            except ValueError:
                break  # the line a kill cut: its batch counts as unfinished
        if not entries:
            return None
        with open(self.partial, "r+b") as handle:
            handle.truncate(entries[-1]["end"])  # rows past the last entry belong to an unfinished batch
        self._rewrite_journal(lines[:1 + len(entries)])
        return [image_id for entry in entries for image_id in entry["ids"]]

    def _rewrite_journal(self, lines):
        with artifacts.atomic_path(self.journal) as temporary:
            temporary.write_text("".join(line + "\n" for line in lines))

    def append(self, image_ids, rows):
        """Append the rows of a finished batch, then record its ``image_ids`` in the journal."""
        image_ids = [str(image_id) for image_id in image_ids]
        end = _append_synced(self.partial, _csv_bytes(rows))
        _append_synced(self.journal, (json.dumps({"end": end, "ids": image_ids}) + "\n").encode())
        self.done.extend(image_ids)

    def commit(self):
        """Rename the partial file into place (atomic) and drop the journal."""
        os.replace(self.partial, self.path)
        self.journal.unlink(missing_ok=True)
        return self.path

    def discard(self):
        """Remove the partial file and the journal."""
        self.partial.unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)


def _append_synced(path, data):
    """Append ``data`` and return the file's size; fsync, so that a machine crash (not only a kill) keeps it."""
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()


def _csv_bytes(rows):
    """Rows as CSV bytes (binary, so that the journal's byte offsets are exact)."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue().encode()


def write_submission(path, competition, model, geometry, normalization, policy, batch_size, image_ids=None,
                     tta="none", shard=None, resume=True, progress=True):
    """Predict the test images (default all; a subset fails validation), write the submission CSV resumably to
    ``shard_path(path, shard)``, validate it, rename it into place and return ``validate_submission``'s summary.

    ``model`` may be a list (the fold models, averaged); ``policy`` is notebook 04's and ``tta`` the one it was
    fitted with. ``resume`` goes on from an earlier run's partial file if the models, policy and TTA match.
    """
    image_ids = competition.test_ids() if image_ids is None else list(image_ids)

    def batches(remaining):
        return predict_batches(model, competition, remaining, geometry, normalization, batch_size, part="test",
                               progress=progress, tta=tta)

    digest = hashlib.sha256()  # a resumed submission must come from the very same weights
    for fold_model in model if isinstance(model, (list, tuple)) else [model]:
        for weights in fold_model.get_weights():
            digest.update(np.ascontiguousarray(weights).tobytes())
    settings = {"weights": digest.hexdigest(), "tta": tta}
    return _write_rows(path, competition, image_ids, shard, batches, geometry, policy, settings, resume)


def write_submission_from_store(path, competition, predictions, geometry, policy, batch_size=32, shard=None,
                                resume=True, progress=True):
    """Write the submission from stored model-size test probabilities (a ``seglib.store.Predictions`` holding
    every test id of the shard), with no model: an ensemble from ``store.average_stores``, or a new policy."""
    from tqdm import tqdm

    image_ids = competition.test_ids()
    row_of = {image_id: row for row, image_id in enumerate(predictions.ids)}
    missing = [image_id for image_id in shard_ids(image_ids, shard) if image_id not in row_of]
    if missing:
        raise SeglibError(f"{predictions.path}: no prediction for test id {missing[0]!r} ({len(missing)} missing)")

    def batches(remaining):
        for start in tqdm(range(0, len(remaining), batch_size), desc="submission", disable=not progress):
            batch_ids = remaining[start:start + batch_size]
            yield batch_ids, predictions.read([row_of[image_id] for image_id in batch_ids])

    array = Path(predictions.path) / "probabilities.npy"
    settings = {"store": str(array.resolve()), "rows": len(predictions), "modified": array.stat().st_mtime_ns}
    return _write_rows(path, competition, image_ids, shard, batches, geometry, policy, settings, resume)


def _write_rows(path, competition, image_ids, shard, prediction_batches, geometry, policy, settings, resume):
    """Model-size batches -> original size -> policy -> rows -> resumable partial file -> validation -> rename."""
    image_ids = [str(image_id) for image_id in shard_ids(image_ids, shard)]
    if not image_ids:
        raise SeglibError(f"shard {shard} of {path} holds no test ids")
    target = shard_path(path, shard)
    ids_digest = hashlib.sha256("\n".join(image_ids).encode()).hexdigest()
    settings = {**settings, "geometry": geometry.to_dict(), "policy": policy.to_json(), "ids": ids_digest}
    rows = ResumableRows(target, competition.submission_columns, settings, resume)
    done = set(rows.done)
    if done:
        log.info("Resuming %s: %d of %d images were already written", target.name, len(done), len(image_ids))
    remaining = [image_id for image_id in image_ids if image_id not in done]
    if remaining:
        for batch_ids, outputs in prediction_batches(remaining):
            masks = [apply_policy(to_original_size(geometry, output)[np.newaxis], policy)[0] for output in outputs]
            rows.append(batch_ids, [row for image_id, mask in zip(batch_ids, masks)
                                    for row in competition.submission_rows(image_id, mask)])
    try:
        summary = validate_submission(rows.partial, competition, image_ids=image_ids if shard else None)
    except SeglibError:
        rows.discard()  # rows that fail validation must not be resumed from either
        raise
    rows.commit()
    return summary


def merge_submissions(shard_paths, path, competition):
    """Join shard files (in the order given: shard 1 first) into ``path`` and validate the union; SeglibError
    when a shard is missing, two overlap or a header differs."""
    if not shard_paths:
        raise SeglibError("merge_submissions needs at least one shard file, got none")
    header = list(competition.submission_columns)
    with artifacts.atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as output:
            csv.writer(output).writerow(header)
            for shard in map(Path, shard_paths):
                if not shard.is_file():
                    raise FileNotFoundError(f"shard file not found: {shard}")
                with open(shard, newline="") as handle:
                    first = next(csv.reader([handle.readline()]), [])
                    if first != header:
                        raise SeglibError(f"{shard}: header is {first}, expected {header}")
                    shutil.copyfileobj(handle, output)
        return validate_submission(temporary, competition)


def load_trained_run(run_dir, strategy=None):
    """What notebook 05 and ``python -m seglib submit`` need from a run folder: a dict of "config" (notebook 03's
    ``TrainSettings``), "geometry", "normalization", "models" (the fold models, loaded in ``strategy``'s scope if
    given, so that prediction runs on all its replicas), "policy" and "tta"."""
    from seglib.data import Normalization
    from seglib.geometry import Geometry
    from seglib.stats import load_mean_std
    from seglib.train import TrainSettings

    config_path = artifacts.find(run_dir, artifacts.TRAIN_CONFIG)
    config = TrainSettings.load(config_path)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        # The model paths are relative to the folder notebook 03 wrote: this run's, or an attached input.
        models = [artifacts.load_model(config_path.parent / model_path) for model_path in config.models]
    mean_std = load_mean_std(artifacts.find(run_dir, artifacts.MEAN_STD))
    return {"config": config, "geometry": Geometry.from_dict(config.geometry), "models": models,
            "normalization": Normalization.from_mean_std(mean_std), "tta": config.tta,
            "policy": load_policy(artifacts.find(run_dir, artifacts.POLICY))}


def run_summary(trained, submission, submission_minutes):
    """The run in one dict for RUN_DIR/summary.json: validation score and interval, policy, training settings,
    the submission's figures (``write_submission``'s summary and minutes) and the package versions."""
    import pandas as pd

    import seglib
    from seglib.backend import keras, tf

    policy, config = trained["policy"].to_json(), trained["config"].to_dict()
    policy_keys = ("threshold", "min_area", "fill_holes", "thresholds", "min_areas", "fill_holes_per_class")
    settings = ("competition", "architecture", "model", "loss", "learning_rate_schedule", "fine_tune_loss",
                "augmentations", "folds", "tta", "seed", "epochs_run", "train_minutes", "precision")
    return {"validation_score": policy.get("validation_score"),
            "validation_interval_95": policy.get("confidence_interval"),
            "score_at_threshold_0.5": policy.get("default_score"),
            "all_empty_score": policy.get("empty_baseline_score"),
            "validation_images": policy.get("validation_images"),
            "policy": {key: policy[key] for key in policy_keys if key in policy},
            "training": {key: config[key] for key in settings},
            "image_size": config["geometry"]["size"],
            "submission": {**submission, "minutes": round(submission_minutes, 2)},
            "versions": {"seglib": seglib.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                         "numpy": np.__version__, "pandas": pd.__version__}}


def validate_submission(path, competition, image_ids=None):
    """Check a submission row by row against the expected rows (those of ``image_ids`` only, for a shard): the
    header, each expected key exactly once, every RLE well-formed and inside the image; SeglibError naming the
    row or id at fault. Returns the row count, the count of empty masks and the mean predicted coverage.
    """
    expected = (set(competition.expected_submission().astype(str).agg("/".join, axis=1)) if image_ids is None else
                {"/".join(key) for image_id in image_ids for key in competition.submission_keys(image_id)})
    pixels = int(np.prod(competition.image_size))
    seen, duplicated, empty_masks, covered_pixels = set(), [], 0, 0
    for key, text in _read_rows(path, list(competition.submission_columns)):
        if key in seen:
            duplicated.append(key)
        seen.add(key)
        try:
            starts, ends = rle.parse(text, pixels, name=f"{path} row {key}")
        except ValueError as error:
            raise SeglibError(str(error)) from None
        empty_masks += not text.strip()
        covered_pixels += int((ends - starts).sum())
    if duplicated:
        raise SeglibError(f"{path}: duplicate row(s) for {duplicated[:5]}")
    missing, unknown = expected - seen, seen - expected
    if missing or unknown:
        raise SeglibError(f"{path}: {len(missing)} expected row(s) missing (e.g. {sorted(missing)[:3]}), "
                          f"{len(unknown)} unknown (e.g. {sorted(unknown)[:3]})")
    return {"rows": len(seen), "empty_masks": empty_masks, "mean_coverage": covered_pixels / max(1, len(seen)) / pixels}


def _read_rows(path, columns):
    """Yield (key, RLE) per row of a submission file; the key is "id", or "image/class" for two key columns."""
    # A Carvana or hand-bone RLE can be longer than the csv module's default field limit of 128 KiB.
    csv.field_size_limit(2 ** 31 - 1)
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header != columns:
            raise SeglibError(f"{path}: header is {header}, expected {columns}")
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(columns):
                raise SeglibError(f"{path} line {line_number}: {len(row)} field(s), expected {len(columns)} "
                                  f"({', '.join(columns)})")
            yield "/".join(row[:-1]), row[-1]


def submission_masks(table, competition, image_ids):
    """The masks of ``image_ids`` decoded from a submission table, shaped like ``read_mask``'s."""
    masks = []
    for rles in _image_rles(table, competition, image_ids):
        channels = [rle.decode(text, competition.image_size, competition.rle_order) for text in rles]
        masks.append(np.stack(channels, axis=-1) if competition.num_classes > 1 else channels[0])
    return np.stack(masks)


def _image_rles(table, competition, image_ids):
    """Yield each image's RLE strings (one per class) from a submission table, by its ``submission_keys``."""
    rle_by_key = dict(zip(map(tuple, table[table.columns[:-1]].astype(str).to_numpy()), table[table.columns[-1]]))
    for image_id in image_ids:
        keys = competition.submission_keys(image_id)
        missing = [key for key in keys if key not in rle_by_key]
        if missing:
            raise SeglibError(f"submission has no row for {'/'.join(missing[0])}")
        yield [rle_by_key[key] for key in keys]


def submission_coverage(table, competition, image_ids):
    """Each image's predicted coverage (mean over its classes), from the RLE run lengths without decoding a mask:
    cheap enough for 100k Carvana rows."""
    import pandas as pd

    image_ids = list(image_ids)
    # Every second number of an RLE is a run length: their sum is the mask's area.
    coverage = [np.mean([sum(map(int, text.split()[1::2])) for text in rles]) / np.prod(competition.image_size)
                for rles in _image_rles(table, competition, image_ids)]
    return pd.Series(coverage, index=image_ids, name="predicted_coverage")
