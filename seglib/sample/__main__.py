"""Command line: ``python -m seglib.sample tgs [--out DIR] [--seed N]``."""

import argparse

from seglib.sample import DEFAULT_SEED, GENERATORS, generate


def main(argv=None):
    """Parse the arguments and (re)write one competition's synthetic sample."""
    parser = argparse.ArgumentParser(prog="python -m seglib.sample", description=__doc__)
    parser.add_argument("competition", choices=sorted(GENERATORS))
    parser.add_argument("--out", default=None, help="folder to (re)write; default <repo>/data/sample/<competition>")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    arguments = parser.parse_args(argv)
    out_dir = generate(arguments.competition, out_dir=arguments.out, seed=arguments.seed)
    print(f"Wrote the {arguments.competition} sample (seed {arguments.seed}) to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
