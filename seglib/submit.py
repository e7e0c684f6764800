"""Write the submission CSV from streamed test predictions, resumably and in shards, and validate it.

predict (batch by batch) -> original size -> policy -> RLE -> CSV rows appended to a hidden partial file ->
validate -> rename. Memory stays flat in the number of test images: only one batch of predictions is held.

Carvana's 100,064 test images take hours; a Kaggle session can end, or be killed, at any moment. After every
batch the rows are flushed and the finished ids are recorded in a journal beside the partial file, so a run
started again with the same settings cuts the partial file back to its last finished batch and goes on from
there. ``shard="i/n"`` writes part i of n of the test set (one process or machine each); ``merge_submissions``
joins the parts and validates the union. The validator checks what Kaggle would reject, plus what Kaggle
would silently score as wrong, reading the file row by row.
"""

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from seglib import artifacts, rle
from seglib.policy import apply_policy, load_policy
from seglib.predict import predict_batches, to_original_size


class SubmissionError(ValueError):
    """A submission file that Kaggle would reject or mis-score."""


# --- shards --------------------------------------------------------------------------------------------------


def parse_shard(shard):
    """(index, count) of a shard given as "i/n" (1-based, e.g. "2/4") or as a pair; None stays None."""
    if shard is None:
        return None
    try:
        index, count = (int(part) for part in (shard.split("/") if isinstance(shard, str) else shard))
    except (ValueError, TypeError):
        raise ValueError(f"a shard is 'i/n' with whole numbers, e.g. '2/4'; got {shard!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: the index must be between 1 and {count}")
    return index, count


def shard_ids(image_ids, shard):
    """Part i of n of ``image_ids``: contiguous, so the parts joined in order keep the submission order."""
    image_ids = list(image_ids)
    shard = parse_shard(shard)
    if shard is None:
        return image_ids
    index, count = shard
    bounds = np.linspace(0, len(image_ids), count + 1).round().astype(int)
    return image_ids[bounds[index - 1]:bounds[index]]


def shard_path(path, shard):
    """Where shard i/n of ``path`` is written: submission.csv -> submission.shard2of4.csv (``path`` for None)."""
    path, shard = Path(path), parse_shard(shard)
    if shard is None:
        return path
    return path.with_name(f"{path.stem}.shard{shard[0]}of{shard[1]}{path.suffix}")


# --- resumable rows ------------------------------------------------------------------------------------------


class ResumableRows:
    """CSV rows appended batch by batch to a hidden partial file, with a journal of the ids finished.

    Args:
        path: the final file; the partial file and the journal are ``.<name>.partial`` and ``.<name>.journal``
            beside it.
        header: the CSV header.
        settings: anything JSON-serialisable that must match for a resume (model weights digest, policy,
            TTA, ids); a partial file written with other settings is started afresh.
        resume: go on from a partial file left by an earlier run, if its settings match.

    ``done`` lists the ids already written. ``commit()`` renames the partial file to ``path``; ``discard()``
    removes it and the journal.
    """

    def __init__(self, path, header, settings, resume=True):
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.journal = self.path.with_name(f".{self.path.name}.journal")
        self.header = list(header)
        self.key = hashlib.sha256(json.dumps([self.header, settings], sort_keys=True, default=str).encode()).hexdigest()
        self.done = self._resume() if resume else None
        if self.done is None:
            self._start()

    def _resume(self):
        """The ids of the finished batches of a matching earlier run, with the partial file cut back to them;
        None when there is nothing to resume."""
        if not self.partial.exists() or not self.journal.exists():
            return None
        lines = self.journal.read_text().splitlines()
        try:
            if json.loads(lines[0]).get("key") != self.key:
                print(f"{self.partial.name} was written with other settings: starting afresh")
                return None
        except (IndexError, ValueError, AttributeError):
            return None
        done, end, finished_batches = [], None, 0
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                break  # the last line was cut by the kill; its batch counts as unfinished
            done.extend(entry["ids"])
            end = entry["end"]
            finished_batches += 1
        if end is None:
            return None
        with open(self.partial, "r+b") as handle:
            # Rows written after the last journal entry belong to a batch that never finished.
            handle.truncate(end)
        self._rewrite_journal(lines[:1 + finished_batches])
        return done

    def _rewrite_journal(self, lines):
        with artifacts.atomic_path(self.journal) as temporary:
            temporary.write_text("".join(line + "\n" for line in lines if line))

    def _start(self):
        self.done = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial.write_bytes(_csv_bytes([self.header]))
        self._rewrite_journal([json.dumps({"key": self.key})])

    def append(self, image_ids, rows):
        """Append the rows of a finished batch of ``image_ids``, then record the ids in the journal."""
        with open(self.partial, "ab") as handle:
            handle.write(_csv_bytes(rows))
            handle.flush()
            # The OS keeps flushed bytes when the process is killed; fsync also survives a machine crash.
            os.fsync(handle.fileno())
            end = handle.tell()
        with open(self.journal, "a") as handle:
            handle.write(json.dumps({"end": end, "ids": [str(image_id) for image_id in image_ids]}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done.extend(str(image_id) for image_id in image_ids)

    def commit(self):
        """Rename the partial file into place (atomic) and drop the journal."""
        os.replace(self.partial, self.path)
        self.journal.unlink(missing_ok=True)
        return self.path

    def discard(self):
        """Remove the partial file and the journal."""
        self.partial.unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)


def _csv_bytes(rows):
    """Rows as CSV bytes (written in binary so that the journal's byte offsets are exact)."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue().encode()


def weights_digest(models):
    """A digest of the models' weights: a resumed submission must come from the very same models."""
    digest = hashlib.sha256()
    for model in models if isinstance(models, (list, tuple)) else [models]:
        for weights in model.get_weights():
            digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


# --- writing -------------------------------------------------------------------------------------------------


def write_submission(path, competition, model, geometry, normalization, policy, batch_size, image_ids=None,
                     tta="none", shard=None, resume=True, progress=True):
    """Predict the test images and write the submission CSV, resumably, then validate it and rename it into place.

    Args:
        path: where to write (e.g. RUN_DIR/submission.csv); a shard goes to ``shard_path(path, shard)``.
        competition: the adapter (its test ids, RLE order and submission rows).
        model, geometry, normalization: as trained; ``model`` may be a list (the fold models, averaged).
        policy: the post-processing policy from notebook 04.
        batch_size: images per prediction batch.
        image_ids: test ids to predict; default all of them (a subset will fail validation).
        tta: test-time augmentation, the same as the policy was fitted with ("none", "hflip", "d4").
        shard: None for the whole test set, or "i/n" for part i of n (validated on its own ids; join the parts
            with ``merge_submissions``).
        resume: go on from the partial file of an earlier run with the same models, policy and TTA.
        progress: show a progress bar.

    Returns:
        The validation summary of ``validate_submission``.
    """
    image_ids = competition.test_ids() if image_ids is None else list(image_ids)

    def batches(remaining):
        for batch_ids, outputs in predict_batches(model, competition, remaining, geometry, normalization,
                                                  batch_size, part="test", progress=progress, tta=tta):
            yield batch_ids, [to_original_size(geometry, output) for output in outputs]

    settings = {"weights": weights_digest(model), "tta": tta, "geometry": geometry.to_dict()}
    return _write_rows(path, competition, image_ids, shard, batches, policy, settings, resume)


def write_submission_from_store(path, competition, predictions, geometry, policy, batch_size=32, shard=None,
                                resume=True, progress=True):
    """Write the submission from stored model-size test probabilities (a ``seglib.store.Predictions``), with no
    model: the way to submit an ensemble averaged with ``store.average_stores``, or to re-apply a new policy.

    Args: as ``write_submission``; ``predictions`` must hold every test id (of the shard).
    """
    from tqdm import tqdm

    image_ids = competition.test_ids()
    row_of = {image_id: row for row, image_id in enumerate(predictions.ids)}
    # A shard's store needs only the shard's ids.
    missing = [image_id for image_id in shard_ids(image_ids, shard) if image_id not in row_of]
    if missing:
        raise ValueError(f"{predictions.path}: no prediction for test id {missing[0]!r} ({len(missing)} missing)")

    def batches(remaining):
        for start in tqdm(range(0, len(remaining), batch_size), desc="submission", disable=not progress):
            batch_ids = remaining[start:start + batch_size]
            outputs = predictions.read([row_of[image_id] for image_id in batch_ids])
            yield batch_ids, [to_original_size(geometry, output) for output in outputs]

    settings = {"store": str(Path(predictions.path).resolve()), "store_rows": len(predictions),
                "store_modified": os.stat(Path(predictions.path) / "probabilities.npy").st_mtime_ns,
                "geometry": geometry.to_dict()}
    return _write_rows(path, competition, image_ids, shard, batches, policy, settings, resume)


def _write_rows(path, competition, image_ids, shard, prediction_batches, policy, settings, resume):
    """The shared writer: policy -> rows -> resumable partial file -> validation -> rename."""
    image_ids = [str(image_id) for image_id in shard_ids(image_ids, shard)]
    if not image_ids:
        raise ValueError(f"shard {shard} of {path} holds no test ids")
    target = shard_path(path, shard)
    ids_digest = hashlib.sha256("\n".join(image_ids).encode()).hexdigest()
    rows = ResumableRows(target, competition.submission_columns, {**settings, "policy": policy, "ids": ids_digest},
                         resume)
    done = set(rows.done)
    if done:
        print(f"Resuming {target.name}: {len(done)} of {len(image_ids)} images were already written")
    remaining = [image_id for image_id in image_ids if image_id not in done]
    if remaining:
        for batch_ids, probabilities in prediction_batches(remaining):
            batch_rows = []
            for image_id, image_probabilities in zip(batch_ids, probabilities):
                mask = apply_policy(image_probabilities[np.newaxis], policy)[0]
                batch_rows.extend(competition.submission_rows(image_id, mask))
            rows.append(batch_ids, batch_rows)
    try:
        summary = validate_submission(rows.partial, competition, image_ids=image_ids if shard else None)
    except SubmissionError:
        rows.discard()  # rows that fail validation must not be resumed from either
        raise
    rows.commit()
    return summary


def merge_submissions(shard_paths, path, competition):
    """Join shard files (in the order given: shard 1 first) into ``path`` and validate the union.

    Raises:
        SubmissionError when a shard is missing, two shards overlap, or a header differs.
    """
    shard_paths = [Path(shard) for shard in shard_paths]
    if not shard_paths:
        raise ValueError("merge_submissions needs at least one shard file")
    header = list(competition.submission_columns)
    with artifacts.atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as output:
            csv.writer(output).writerow(header)
            for shard in shard_paths:
                if not shard.is_file():
                    raise FileNotFoundError(f"shard file not found: {shard}")
                with open(shard, newline="") as handle:
                    first = next(csv.reader([handle.readline()]), [])
                    if first != header:
                        raise SubmissionError(f"{shard}: header is {first}, expected {header}")
                    shutil.copyfileobj(handle, output)
        summary = validate_submission(temporary, competition)
    return summary


def load_trained_run(run_dir, strategy=None):
    """What notebook 05 and ``python -m seglib submit`` need from a run folder.

    Args:
        run_dir: the run folder of notebooks 01-04.
        strategy: a tf.distribute strategy to load the models in (``env.distribution_strategy()``), so that
            prediction runs on all its replicas; None loads them on the default device.

    Returns:
        A dict with "geometry", "normalization", "models" (the fold models, loaded), "policy", "tta" and
        "config" (the training config of notebook 03).
    """
    from seglib.data import Normalization
    from seglib.geometry import Geometry
    from seglib.stats import load_mean_std

    config_path = artifacts.find(run_dir, artifacts.TRAIN_CONFIG)
    config = artifacts.load_json(config_path, what="training config (notebook 03)")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        # The model paths are relative to the folder notebook 03 wrote: this run's, or an attached input.
        models = [artifacts.load_model(config_path.parent / model_path) for model_path in config["models"]]
    return {
        "config": config,
        "geometry": Geometry.from_dict(config["geometry"]),
        "normalization": Normalization.from_mean_std(load_mean_std(artifacts.find(run_dir, artifacts.MEAN_STD))),
        "models": models,
        "policy": load_policy(artifacts.find(run_dir, artifacts.POLICY)),
        "tta": config.get("tta", "none"),
    }


def run_summary(trained, submission, submission_minutes):
    """The run in one dict, for RUN_DIR/summary.json: the validation score and its interval, the policy, the
    training settings and minutes, the submission's figures and the package versions it ran with.

    Args:
        trained: ``load_trained_run``'s dict.
        submission: ``write_submission``'s summary (rows, empty masks, mean coverage).
        submission_minutes: the minutes writing the submission took.
    """
    import keras
    import pandas as pd
    import tensorflow as tf

    import seglib

    policy, config = trained["policy"], trained["config"]
    settings = ("competition", "architecture", "model", "loss", "learning_rate_schedule", "fine_tune_loss",
                "augmentations", "folds", "tta", "seed", "epochs_run", "train_minutes", "precision")
    return {
        "validation_score": policy.get("validation_score"),
        "validation_interval_95": policy.get("confidence_interval"),
        "score_at_threshold_0.5": policy.get("default_score"),
        "all_empty_score": policy.get("empty_baseline_score"),
        "validation_images": policy.get("validation_images"),
        "policy": {key: policy[key] for key in ("threshold", "min_area", "fill_holes", "thresholds", "min_areas",
                                                "fill_holes_per_class") if key in policy},
        "training": {key: config[key] for key in settings if key in config},
        "image_size": config["geometry"]["size"],
        "submission": {**submission, "minutes": round(submission_minutes, 2)},
        "versions": {"seglib": seglib.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__},
    }


# --- checking ------------------------------------------------------------------------------------------------


def validate_submission(path, competition, image_ids=None):
    """Check a submission against the competition's sample submission, reading it row by row.

    Checks the header, that the key column(s) hold exactly the expected set with no duplicates, and that
    every RLE parses (pairs, positive lengths, sorted, inside the image).

    Args:
        image_ids: check only the rows of these test ids (a shard); default every expected row.

    Returns:
        A dict with the row count, the count of empty masks and the mean predicted coverage.

    Raises:
        SubmissionError naming the row or id at fault.
    """
    if image_ids is None:
        expected_keys = set(competition.expected_submission().astype(str).agg("/".join, axis=1))
    else:
        expected_keys = {"/".join(key) for image_id in image_ids for key in competition.submission_keys(image_id)}
    expected_columns = list(competition.submission_columns)
    height, width = competition.image_size
    seen, duplicated = set(), []
    rows = empty_masks = covered_pixels = 0
    # A Carvana or hand-bone RLE can be longer than the csv module's default field limit of 128 KiB.
    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header != expected_columns:
            raise SubmissionError(f"{path}: header is {header}, expected {expected_columns}")
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(expected_columns):
                raise SubmissionError(f"{path} line {line_number}: {len(row)} field(s), expected "
                                      f"{len(expected_columns)} ({', '.join(expected_columns)})")
            # A row's key as text ("id", or "image_name/class" for several key columns).
            key, text = "/".join(row[:-1]), row[-1]
            if key in seen:
                duplicated.append(key)
            seen.add(key)
            try:
                starts, ends = rle.parse(text, height * width, name=f"{path} row {key}")
            except ValueError as error:
                raise SubmissionError(str(error)) from None
            rows += 1
            empty_masks += not text.strip()
            covered_pixels += int((ends - starts).sum())
    if duplicated:
        raise SubmissionError(f"{path}: duplicate row(s) for {duplicated[:5]}")
    missing, unknown = expected_keys - seen, seen - expected_keys
    if missing or unknown:
        raise SubmissionError(f"{path}: {len(missing)} expected row(s) missing (e.g. {sorted(missing)[:3]}), "
                              f"{len(unknown)} unknown (e.g. {sorted(unknown)[:3]})")
    return {
        "rows": rows,
        "empty_masks": empty_masks,
        "mean_coverage": covered_pixels / max(1, rows) / (height * width),
    }


def submission_masks(table, competition, image_ids):
    """The masks of ``image_ids`` decoded back from a submission table, shaped like ``read_mask``'s.

    The rows of an image are found by the keys ``competition.submission_keys`` gives it, so this works for one
    row per image (TGS, Carvana) and one row per image and class (hand bone) alike.
    """
    masks = []
    for rles in image_rles(table, competition, image_ids):
        channels = [rle.decode(text, competition.image_size, competition.rle_order) for text in rles]
        masks.append(np.stack(channels, axis=-1) if competition.num_classes > 1 else channels[0])
    return np.stack(masks)


def image_rles(table, competition, image_ids):
    """Yield each image's RLE strings (one per class) from a submission table, by the keys
    ``competition.submission_keys`` gives it; SubmissionError for an image without its rows."""
    key_columns = list(table.columns[:-1])
    rle_by_key = dict(zip(map(tuple, table[key_columns].astype(str).to_numpy()), table[table.columns[-1]]))
    for image_id in image_ids:
        keys = competition.submission_keys(image_id)
        missing = [key for key in keys if key not in rle_by_key]
        if missing:
            raise SubmissionError(f"submission has no row for {'/'.join(missing[0])}")
        yield [rle_by_key[key] for key in keys]


def submission_coverage(table, competition, image_ids):
    """Each image's predicted coverage (share of its pixels, mean over its classes), summed from the RLE run
    lengths without decoding a mask: cheap enough for 100k Carvana rows, to compare with training and to pick
    preview images."""
    import pandas as pd

    image_ids = list(image_ids)
    # Every second number of an RLE is a run length: their sum is the mask's area.
    coverage = [np.mean([sum(int(length) for length in text.split()[1::2]) for text in rles])
                / np.prod(competition.image_size) for rles in image_rles(table, competition, image_ids)]
    return pd.Series(coverage, index=list(image_ids), name="predicted_coverage")
