"""Command line of seglib (the synthetic samples have their own: ``python -m seglib.sample tgs``).

    python -m seglib run [--run-dir DIR] [-p NAME VALUE ...]   run the five notebooks in order
    python -m seglib validate tgs DATA_DIR SUBMISSION.csv        check a submission file
"""

import argparse
import ast
import datetime
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_value(text):
    """A papermill parameter from the command line: a Python literal if it is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def command_run(arguments):
    from seglib.env import REPO_ROOT
    from seglib.notebooks import NOTEBOOK_DIR, run_notebooks

    run_dir = arguments.run_dir or REPO_ROOT / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parameters = {name: parse_value(value) for name, value in arguments.parameter}
    if arguments.refresh_notebooks and parameters:
        raise ValueError("--refresh-notebooks stores the default parameters' outputs; drop the -p options")
    output_dir = NOTEBOOK_DIR if arguments.refresh_notebooks else None
    run_dir = run_notebooks(run_dir, parameters, output_dir=output_dir, progress=not arguments.quiet)
    notebooks_dir = output_dir or run_dir / "notebooks"
    print(f"Run finished: plots, model, policy and submission.csv in {run_dir}; executed notebooks in {notebooks_dir}")
    return 0


def command_validate(arguments):
    from seglib.competitions import get_competition
    from seglib.submit import validate_submission

    summary = validate_submission(arguments.submission, get_competition(arguments.competition, arguments.data_dir))
    print(f"{arguments.submission}: valid ({summary})")
    return 0


def main(argv=None):
    """Entry point of ``python -m seglib`` and the ``seglib`` script."""
    parser = argparse.ArgumentParser(prog="seglib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the five notebooks in order with papermill")
    run.add_argument("--run-dir", help="run folder (default runs/<date-time>)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="papermill parameter for every notebook, e.g. -p EPOCHS 5 -p COMPETITION tgs")
    run.add_argument("--quiet", action="store_true", help="no per-cell progress bars")
    run.add_argument("--refresh-notebooks", action="store_true",
                     help="write the executed notebooks back into notebooks/ (the outputs nbval checks)")
    run.set_defaults(handler=command_run)

    validate = commands.add_parser("validate", help="validate a submission CSV")
    validate.add_argument("competition")
    validate.add_argument("data_dir", help="the competition folder holding sample_submission.csv")
    validate.add_argument("submission")
    validate.set_defaults(handler=command_validate)

    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except (ValueError, FileNotFoundError) as error:
        print(f"seglib {arguments.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
