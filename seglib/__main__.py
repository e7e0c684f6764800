"""Command line of seglib (the synthetic samples have their own: ``python -m seglib.sample tgs``).

    python -m seglib run [--run-dir DIR] [--recipe R] [-p NAME VALUE ...]   run the five notebooks in order
    python -m seglib notebooks DEST                              copy the five notebooks into DEST
    python -m seglib kaggle-dataset DEST [--wheel W]             wheel + notebooks + dataset-metadata.json
    python -m seglib validate tgs DATA_DIR SUBMISSION.csv        check a submission file
    python -m seglib check tgs DATA_DIR [--report FILE.csv]      check a dataset's files before training
    python -m seglib submit RUN_DIR [--shard i/n] [--data-dir DIR]  write (part of) the submission of a run
    python -m seglib merge tgs DATA_DIR OUTPUT.csv SHARD.csv ...   join shard files and validate the union
"""

import argparse
import ast
import datetime
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_value(text):
    """A papermill parameter from the command line: a Python literal if it is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def open_competition(name, data_dir):
    """The adapter of ``name`` on ``data_dir`` ("sample" for the bundled sample)."""
    from seglib.competitions import get_competition
    from seglib.env import resolve_data_dir

    return get_competition(name, resolve_data_dir(name, data_dir))


def command_run(arguments):
    from seglib.env import NOTEBOOK_DIR
    from seglib.notebooks import run_notebooks

    run_dir = arguments.run_dir or Path.cwd() / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    from seglib.recipes import recipe_parameters

    parameters = {name: parse_value(value) for name, value in arguments.parameter}
    if arguments.recipe:
        parameters = recipe_parameters(arguments.recipe, parameters)
    if arguments.refresh_notebooks and parameters:
        raise ValueError("--refresh-notebooks stores the default parameters' outputs; drop the -p options")
    output_dir = NOTEBOOK_DIR if arguments.refresh_notebooks else None
    run_dir = run_notebooks(run_dir, parameters, output_dir=output_dir, progress=not arguments.quiet)
    notebooks_dir = output_dir or run_dir / "notebooks"
    print(f"Run finished: plots, model, policy and submission.csv in {run_dir}; executed notebooks in {notebooks_dir}")
    return 0


def command_notebooks(arguments):
    from seglib.notebooks import copy_notebooks

    written = copy_notebooks(arguments.destination)
    print(f"{len(written)} notebook(s) written to {arguments.destination}"
          + ("" if len(written) == 5 else " (existing ones kept)"))
    return 0


def command_kaggle_dataset(arguments):
    from seglib.notebooks import kaggle_dataset

    wheel = kaggle_dataset(arguments.destination, arguments.wheel, arguments.owner)
    print(f"{arguments.destination}: {wheel.name}, notebooks/, dataset-metadata.json; upload with "
          f"kaggle datasets create -p {arguments.destination}")
    return 0


def command_validate(arguments):
    from seglib.submit import validate_submission

    summary = validate_submission(arguments.submission, open_competition(arguments.competition, arguments.data_dir))
    print(f"{arguments.submission}: valid ({summary})")
    return 0


def command_submit(arguments):
    from seglib.artifacts import SUBMISSION
    from seglib.competitions import get_competition
    from seglib.env import distribution_strategy, resolve_data_dir
    from seglib.submit import load_trained_run, shard_path, write_submission

    run_dir = Path(arguments.run_dir)
    trained = load_trained_run(run_dir, distribution_strategy())
    config = trained["config"]
    competition = get_competition(config["competition"], resolve_data_dir(config["competition"], arguments.data_dir),
                                  **config.get("competition_options", {}))
    summary = write_submission(run_dir / SUBMISSION, competition, trained["models"], trained["geometry"],
                               trained["normalization"], trained["policy"], arguments.batch_size,
                               tta=trained["tta"], shard=arguments.shard, resume=not arguments.restart)
    print(f"{shard_path(run_dir / SUBMISSION, arguments.shard)}: valid ({summary})")
    return 0


def command_merge(arguments):
    from seglib.submit import merge_submissions

    summary = merge_submissions(arguments.shards, arguments.output,
                                open_competition(arguments.competition, arguments.data_dir))
    print(f"{arguments.output}: {len(arguments.shards)} shard(s) joined, valid ({summary})")
    return 0


def command_check(arguments):
    from seglib.check import check_dataset, save_report

    from seglib.env import resolve_data_dir

    data_dir = resolve_data_dir(arguments.competition, arguments.data_dir)
    problems = check_dataset(arguments.competition, data_dir, progress=not arguments.quiet)
    for problem in problems:
        print(problem)
    print(problems.summary())
    if arguments.report:
        save_report(arguments.report, problems)
    return 1 if problems.errors else 0  # warnings are listed, not failed on


def main(argv=None):
    """Entry point of ``python -m seglib`` and the ``seglib`` script."""
    parser = argparse.ArgumentParser(prog="seglib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the five notebooks in order with papermill")
    run.add_argument("--run-dir", help="run folder (default runs/<date-time> in the working directory)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="papermill parameter for every notebook, e.g. -p EPOCHS 5 -p COMPETITION tgs")
    run.add_argument("--recipe", help="a named set of parameters from seglib.recipes (tgs_cpu, tgs_gpu, "
                     "carvana_gpu); -p options win over it")
    run.add_argument("--quiet", action="store_true", help="no per-cell progress bars")
    run.add_argument("--refresh-notebooks", action="store_true",
                     help="write the executed notebooks back into notebooks/ (the outputs nbval checks)")
    run.set_defaults(handler=command_run)

    notebooks = commands.add_parser("notebooks", help="copy the five notebooks into a folder to work in")
    notebooks.add_argument("destination")
    notebooks.set_defaults(handler=command_notebooks)

    dataset = commands.add_parser("kaggle-dataset", help="a folder for `kaggle datasets create`: the wheel, the "
                                  "notebooks and dataset-metadata.json (for kernels with internet off)")
    dataset.add_argument("destination")
    dataset.add_argument("--wheel", help="a built seglib wheel (default: build one from this checkout)")
    dataset.add_argument("--owner", help="your Kaggle user name (default $KAGGLE_USERNAME)")
    dataset.set_defaults(handler=command_kaggle_dataset)

    validate = commands.add_parser("validate", help="validate a submission CSV")
    validate.add_argument("competition")
    validate.add_argument("data_dir", help="the competition folder holding sample_submission.csv, or \"sample\"")
    validate.add_argument("submission")
    validate.set_defaults(handler=command_validate)

    check = commands.add_parser("check", help="check every file of a dataset; exit 1 if there are problems")
    check.add_argument("competition")
    check.add_argument("data_dir", help="the competition folder, extracted or as Kaggle's zips, or \"sample\"")
    check.add_argument("--report", metavar="FILE.csv", help="also write the problems to this CSV (path, message)")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(handler=command_check)

    submit = commands.add_parser("submit", help="write the submission of a trained run (or one shard of it)")
    submit.add_argument("run_dir", help="the run folder of notebooks 01-04 (models, policy, mean/std)")
    submit.add_argument("--data-dir", help="the competition folder (default: as notebook 05 resolves it)")
    submit.add_argument("--shard", metavar="i/n", help="write part i of n of the test set to submission.shardiofn.csv")
    submit.add_argument("--batch-size", type=int, default=16)
    submit.add_argument("--restart", action="store_true", help="ignore a partial file left by a stopped run")
    submit.set_defaults(handler=command_submit)

    merge = commands.add_parser("merge", help="join shard submission files and validate the union")
    merge.add_argument("competition")
    merge.add_argument("data_dir", help="the competition folder holding sample_submission.csv, or \"sample\"")
    merge.add_argument("output", help="the joined submission CSV")
    merge.add_argument("shards", nargs="+", help="the shard files, in order")
    merge.set_defaults(handler=command_merge)

    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"seglib {arguments.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
