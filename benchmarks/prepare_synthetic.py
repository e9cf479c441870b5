"""Synthetic dataset generation speed: `dias prepare synthetic` for N images of S px with W workers.

    python benchmarks/prepare_synthetic.py [--num-images 20000] [--size 128] [--workers 2]

Writes into a temporary folder (deleted afterwards) and prints images per second and the total time.
"""

import argparse
import os
import tempfile
import time

from machine import cpu_name

from dias.data.synthetic import prepare_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        prepare_synthetic(
            out, num_train=args.num_images, num_val=0, size=args.size, num_workers=args.workers, progress=False
        )
        seconds = time.perf_counter() - start
    print(f"# {cpu_name()}, {os.cpu_count()} cores, {args.workers} workers")
    print("| images | size | seconds | images/s |")
    print("|---|---|---|---|")
    print(f"| {args.num_images} | {args.size} | {seconds:.1f} | {args.num_images / seconds:.0f} |")


if __name__ == "__main__":
    main()
