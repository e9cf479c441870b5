"""Command line: `dias <command>`. Parses arguments and dispatches to one function each; no logic here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dias import __version__


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        # Errors a user can cause carry their own fix; show them without a traceback.
        print(f"dias: error: {exc}", file=sys.stderr)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dias", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dias {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="convert a dataset into dias LMDB records")
    datasets = prepare.add_subparsers(title="datasets", metavar="DATASET", required=True)
    synthetic = datasets.add_parser("synthetic", help="generate the built-in multi-object dataset")
    synthetic.add_argument("--out", type=Path, required=True, help="folder for train.lmdb and val.lmdb")
    synthetic.add_argument("--num-train", type=int, default=None, help="training images")
    synthetic.add_argument("--num-val", type=int, default=None, help="validation images")
    synthetic.add_argument("--size", type=int, default=None, help="image side in pixels")
    synthetic.add_argument("--seed", type=int, default=None, help="generator seed")
    synthetic.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    synthetic.add_argument("--overwrite", action="store_true", help="replace finished splits in --out")
    synthetic.set_defaults(run=_prepare_synthetic)

    config = commands.add_parser("config", help="print a resolved config")
    config.add_argument("--config", type=Path, default=None, help="YAML file (default: built-in defaults)")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.seed=43")
    config.set_defaults(run=_show_config)
    return parser


def _prepare_synthetic(args: argparse.Namespace) -> int:
    from dias.data import synthetic

    options = {
        "num_train": args.num_train,
        "num_val": args.num_val,
        "size": args.size,
        "seed": args.seed,
        "num_workers": args.workers,
    }
    summary = synthetic.prepare_synthetic(
        args.out, overwrite=args.overwrite, **{k: v for k, v in options.items() if v is not None}
    )
    print(f"synthetic dataset ready in {args.out}: {summary}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    from dias.config import load_config, to_dict

    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0
