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
import json
import sys
from pathlib import Path

from seglib.env import show_logs


def parse_value(text):
    """A papermill parameter from the command line: a Python literal or JSON (``true``, ``null``) if it is one,
    else the string."""
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError):  # json's JSONDecodeError is a ValueError
            pass
    return text


def open_competition(name, data_dir, **options):
    """The adapter of ``name`` on ``data_dir`` ("sample" for the bundled sample, None as notebooks resolve it)."""
    from seglib.competitions import get_competition
    from seglib.env import resolve_data_dir

    return get_competition(name, resolve_data_dir(name, data_dir), **options)


def command_run(arguments):
    from seglib.env import NOTEBOOK_DIR
    from seglib.notebooks import run_notebooks
    from seglib.recipes import recipe_parameters

    run_dir = arguments.run_dir or Path.cwd() / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parameters = {name: parse_value(value) for name, value in arguments.parameter}
    if arguments.recipe:
        parameters = recipe_parameters(arguments.recipe, parameters)
    if arguments.refresh_notebooks and parameters:
        raise ValueError("--refresh-notebooks stores the default parameters' outputs; drop the -p options")
    output_dir = NOTEBOOK_DIR if arguments.refresh_notebooks else None
    run_dir = run_notebooks(run_dir, parameters, output_dir=output_dir, progress=not arguments.quiet)
    print(f"Run finished: plots, model, policy and submission.csv in {run_dir}; executed notebooks in "
          f"{output_dir or run_dir / 'notebooks'}")


def command_notebooks(arguments):
    from seglib.notebooks import copy_notebooks

    written = copy_notebooks(arguments.destination)
    print(f"{len(written)} notebook(s) written to {arguments.destination}"
          + ("" if len(written) == 5 else " (existing ones kept)"))


def command_kaggle_dataset(arguments):
    from seglib.notebooks import kaggle_dataset

    wheel = kaggle_dataset(arguments.destination, arguments.wheel, arguments.owner)
    print(f"{arguments.destination}: {wheel.name}, notebooks/, dataset-metadata.json; upload with "
          f"kaggle datasets create -p {arguments.destination}")


def command_validate(arguments):
    from seglib.submit import validate_submission

    summary = validate_submission(arguments.submission, open_competition(arguments.competition, arguments.data_dir))
    print(f"{arguments.submission}: valid ({summary})")


def command_submit(arguments):
    from seglib.artifacts import SUBMISSION
    from seglib.env import distribution_strategy
    from seglib.submit import load_trained_run, shard_path, write_submission

    run_dir = Path(arguments.run_dir)
    trained = load_trained_run(run_dir, distribution_strategy())
    config = trained["config"]
    competition = open_competition(config.competition, arguments.data_dir, **config.competition_options)
    path = run_dir / SUBMISSION
    summary = write_submission(path, competition, trained["models"], trained["geometry"], trained["normalization"],
                               trained["policy"], arguments.batch_size, tta=trained["tta"], shard=arguments.shard,
                               resume=not arguments.restart)
    print(f"{shard_path(path, arguments.shard)}: valid ({summary})")


def command_merge(arguments):
    from seglib.submit import merge_submissions

    summary = merge_submissions(arguments.shards, arguments.output,
                                open_competition(arguments.competition, arguments.data_dir))
    print(f"{arguments.output}: {len(arguments.shards)} shard(s) joined, valid ({summary})")


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


DATA_DIR = ("data_dir", {"help": "the competition folder holding sample_submission.csv, or \"sample\""})
COMMANDS = {  # name: (handler, help, arguments as (flags, argparse options))
    "run": (command_run, "run the five notebooks in order with papermill", [
        ("--run-dir", {"help": "run folder (default runs/<date-time> in the working directory)"}),
        (("-p", "--parameter"), {"nargs": 2, "action": "append", "default": [], "metavar": ("NAME", "VALUE"),
                                 "help": "papermill parameter for every notebook, e.g. -p EPOCHS 5"}),
        ("--recipe", {"help": "a named set of parameters from seglib.recipes (tgs_cpu, tgs_gpu, carvana_gpu); "
                              "-p options win over it"}),
        ("--quiet", {"action": "store_true", "help": "no per-cell progress bars"}),
        ("--refresh-notebooks", {"action": "store_true",
                                 "help": "write the executed notebooks back into notebooks/ (what nbval checks)"})]),
    "notebooks": (command_notebooks, "copy the five notebooks into a folder to work in", [("destination", {})]),
    "kaggle-dataset": (command_kaggle_dataset, "a folder for `kaggle datasets create`: the wheel, the notebooks "
                       "and dataset-metadata.json (for kernels with internet off)", [
        ("destination", {}),
        ("--wheel", {"help": "a built seglib wheel (default: build one from this checkout)"}),
        ("--owner", {"help": "your Kaggle user name (default $KAGGLE_USERNAME)"})]),
    "validate": (command_validate, "validate a submission CSV", [("competition", {}), DATA_DIR, ("submission", {})]),
    "check": (command_check, "check every file of a dataset; exit 1 if there are problems", [
        ("competition", {}),
        ("data_dir", {"help": "the competition folder, extracted or as Kaggle's zips, or \"sample\""}),
        ("--report", {"metavar": "FILE.csv", "help": "also write the problems to this CSV (path, message)"}),
        ("--quiet", {"action": "store_true", "help": "no progress bar"})]),
    "submit": (command_submit, "write the submission of a trained run (or one shard of it)", [
        ("run_dir", {"help": "the run folder of notebooks 01-04 (models, policy, mean/std)"}),
        ("--data-dir", {"help": "the competition folder (default: as notebook 05 resolves it)"}),
        ("--shard", {"metavar": "i/n", "help": "write part i of n of the test set to submission.shardiofn.csv"}),
        ("--batch-size", {"type": int, "default": 16}),
        ("--restart", {"action": "store_true", "help": "ignore a partial file left by a stopped run"})]),
    "merge": (command_merge, "join shard submission files and validate the union", [
        ("competition", {}), DATA_DIR, ("output", {"help": "the joined submission CSV"}),
        ("shards", {"nargs": "+", "help": "the shard files, in order"})]),
}


def main(argv=None):
    """Entry point of ``python -m seglib`` and the ``seglib`` script."""
    parser = argparse.ArgumentParser(prog="seglib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (handler, help_text, options) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        for flags, keywords in options:
            command.add_argument(*([flags] if isinstance(flags, str) else flags), **keywords)
        command.set_defaults(handler=handler)
    arguments = parser.parse_args(argv)
    show_logs("stderr")  # stdout holds the command's result
    try:
        return arguments.handler(arguments) or 0
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"seglib {arguments.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
