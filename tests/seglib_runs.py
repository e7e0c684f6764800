"""Whole ``python -m seglib run``s in the background, for the slow tests that start several at once or kill one.

Each run is its own process group, so that killing it kills its papermill kernel too, and writes its output to
``<run folder>.log``: a full pipe that nobody reads would stall it.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path


def start(run_dir, parameters):
    """Start ``seglib run`` into ``run_dir`` with notebook ``parameters`` ({name: value}); return the process."""
    options = [part for name, value in parameters.items() for part in ("-p", name, repr(value))]
    with log_path(run_dir).open("a") as output:
        return subprocess.Popen([sys.executable, "-m", "seglib", "run", "--quiet", "--run-dir", str(run_dir),
                                 *options], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def wait(process, timeout=1800):
    """Wait for a started run; fail with the end of its output unless it ended well."""
    process.wait(timeout=timeout)
    run_dir = Path(process.args[process.args.index("--run-dir") + 1])
    assert process.returncode == 0, log_path(run_dir).read_text()[-3000:]
    return run_dir


def kill(process):
    """Kill a started run and its kernel, if it is still going."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def log_path(run_dir):
    return Path(run_dir).with_name(f"{Path(run_dir).name}.log")
