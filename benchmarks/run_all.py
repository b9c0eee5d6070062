"""Run every benchmark: `--quick` (under 10 minutes on 2 cores) or the full mode.

    python -m benchmarks.run_all [--quick]

Results land in benchmarks/results/*.json; BENCHMARKS.md holds the latest figures.
The search-efficiency benchmark needs the tabular benchmark (python -m benchmarks.build_table).
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.build_table import TABLE, done, grid

BENCHMARKS = ("trainer_overhead", "storage_cost", "worker_scaling", "search_efficiency")


def main() -> int:
    extra = ["--quick"] if "--quick" in sys.argv[1:] else []
    failed = []
    for name in BENCHMARKS:
        if name == "search_efficiency" and len(done(TABLE)) < len(grid(quick=False)):
            print(
                f"== {name}: skipped, the table at {TABLE} is incomplete (python -m benchmarks.build_table)", flush=True
            )
            continue
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *extra]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
