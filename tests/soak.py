"""`make soak`: a longer chaos run than the suite's, on default settings.

`braid up` of :data:`tests.foreground.OUTSIDE` runs 2,000 `linger` jobs (three steps, the
middle one taking 0.5 s) from 4 clients while a worker process is SIGKILLed every 10 s (a
main process, or a pool child every third time) and Redis restarts once; it prints what
became of the jobs and how soon killed steps ran again, and exits 1 unless every job
succeeded once with its result.

    python -m tests.soak [--jobs 2000] [--clients 4] [--kill-every 10] [--step-seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.chaos import Chaos
from tests.foreground import kill, start
from tests.harness import MODELS, ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--step-seconds", type=float, default=0.5, metavar="SECONDS")
    args = parser.parse_args(argv)
    # the outside module's Reader loads a demo model
    subprocess.run([sys.executable, "-m", "app.cli", "models", "bootstrap"], cwd=ROOT,
                   check=True, env={**os.environ, "BRAID_MODELS_DIR": str(MODELS),
                                    "HF_HUB_OFFLINE": "1"}, capture_output=True, timeout=600)
    with tempfile.TemporaryDirectory(prefix="braid-soak-") as tmp:
        up = start(Path(tmp), MODELS)
        try:
            figures = Chaos(up, clients=args.clients, every_s=args.kill_every,
                            seconds=args.step_seconds).run(args.jobs)
        finally:
            kill(up)
    print(figures.summary())
    return 0 if figures.clean and figures.succeeded == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
