"""How long the command line takes to answer, and its peak memory, for one or more source trees.

    python tools/bench_startup.py                       # this checkout's src/
    python tools/bench_startup.py new=src old=/tmp/old/src --rounds 7

Each command runs in a fresh `python -m marionette.cli` process with PYTHONPATH set to the tree; every
round runs each (tree, command) once in a shuffled order, so other jobs on the machine slow every row
alike; the table gives the median wall time and the largest peak RSS over the rounds, and the load
average before and after. The commands never touch a model: `--help`, `verify --help`, `verify` of a
missing file (its one-line error), `reenact --help`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "marionette --help": ["--help"],
    "marionette verify --help": ["verify", "--help"],
    "marionette verify missing.mp4": ["verify", "missing.mp4"],
    "marionette reenact --help": ["reenact", "--help"],
}


def run_once(src: str, args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=src)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "marionette.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(src).resolve().parent)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 2):
        raise SystemExit(f"bench_startup: {' '.join(args)} with PYTHONPATH={src} exited {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", default=["src"], help="LABEL=SRC_DIR or SRC_DIR (default: src)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each command per tree; the median is reported")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) if "=" in t else (t, t) for t in args.trees)
    for label, src in trees.items():
        if not (Path(src) / "marionette" / "cli.py").is_file():
            raise SystemExit(f"bench_startup: {src}: no marionette/cli.py in it (tree {label})")
    cells = [(label, name) for label in trees for name in COMMANDS]
    times: dict[tuple[str, str], list[float]] = {cell: [] for cell in cells}
    memory: dict[tuple[str, str], float] = dict.fromkeys(cells, 0.0)
    load_before = os.getloadavg()[0]
    for label in trees:  # one untimed run each: the byte-code caches are written, as after an install
        run_once(trees[label], ["--help"])
    for round_ in range(args.rounds):
        order = cells[:]
        random.Random(round_).shuffle(order)
        for label, name in order:
            seconds, mb = run_once(trees[label], COMMANDS[name])
            times[(label, name)].append(seconds)
            memory[(label, name)] = max(memory[(label, name)], mb)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} cores;"
          f" median of {args.rounds} rounds\n")
    print("| tree | command | seconds | peak RSS (MB) |\n|---|---|---:|---:|")
    for label, name in cells:
        print(f"| {label} | `{name}` | {statistics.median(times[(label, name)]):.2f} | {memory[(label, name)]:.0f} |")


if __name__ == "__main__":
    main()
