"""Package reference runs as the bundled demo model: the first run's weights, every run's log and scores.

    python scripts/package_demo_model.py runs/demo-model-42 runs/demo-model-43 runs/demo-model-44 \
        --out src/dias/demo_model

Each run folder holds what `dias train` writes and, once scored, `dias eval`'s eval-val/metrics.json.
scripts/train_demo_model.sh calls this after training; see dias.demo.reference for the folder it writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dias.demo.reference import package_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; the first one's weights are packaged")
    parser.add_argument("--out", type=Path, required=True, help="reference folder to write")
    parser.add_argument("--trained-on", help="where the runs trained, for the card (default: this machine)")
    args = parser.parse_args()
    card = package_reference(args.runs, args.out, trained_on=args.trained_on)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
