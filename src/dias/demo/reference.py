"""The demo's reference: a model the package trained itself, shipped with its runs' logs and eval card.

    reference = load_reference()  # the one shipped in the package (dias/demo_model/)
    reference.weights             # model.safetensors, as `dias export` writes it (config in its metadata)
    reference.logs                # {seed: metrics.jsonl records} of every reference run: the curves and spread

`scripts/train_demo_model.sh` trains the runs (seeds 42, 43, 44) with `dias train` and calls
`package_reference` (through `scripts/package_demo_model.py`), which writes a reference folder:

    model.safetensors    the first run's weights
    config.yaml          that run's config, readable
    log-seed42.jsonl     each run's metrics.jsonl, one file per seed
    card.json            per run: seed, steps, training time, val metrics beside the baselines; the machines

A failure while the runs are read or the files written leaves the folder as it was: every run is read
first, the files are written to a staging folder inside it, then renamed into place, the card last.

All runs must share one config but for the seed; the weights are the first run's.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from dias.commands.export import export_weights
from dias.config import CONFIG_FILE_NAME, apply_overrides, flatten, from_dict, load_config, save_config, to_dict
from dias.data.records import load_header, split_path
from dias.data.synthetic import DATASET_NAME
from dias.errors import DiasError, MissingFileError, UsageError
from dias.io import atomic_write_bytes, file_sha256
from dias.runtime.device import cpu_name
from dias.schema import Config
from dias.train.checkpoint import load_checkpoint
from dias.train.log import format_records, read_metrics
from dias.version import __version__

DINOV2, COLOUR = "dinov2", "colour"  # the bundled demo models: real ViT-S/14 tokens, or the colour-code stand-in
REFERENCE_PACKAGE_DIRS = {DINOV2: "demo_model_dinov2", COLOUR: "demo_model"}  # inside the dias package
WEIGHTS_FILE_NAME = "model.safetensors"
CARD_FILE_NAME = "card.json"
STAGING_DIR_NAME = ".packaging"  # inside the reference folder while it is written
LOG_FILE_PATTERN = "log-seed{seed}.jsonl"
EVAL_METRICS_FILE = Path("eval-val") / "metrics.json"  # where `dias eval RUN/last.pt` writes a run's scores
REFERENCE_OPTION = "--reference"
# Keys that may differ between the reference runs (and between them and a fresh run): where they ran.
DATA_KEYS = ("num_train", "num_val", "size", "seed")  # a card's "data": how `dias prepare synthetic` made it
RUN_SPECIFIC_KEYS = ("train.seed", "train.out_dir", "data.root", "data.features", "data.num_workers", "train.device")


class DamagedReferenceError(DiasError, ValueError):
    """A reference folder whose card, logs or weights are unreadable, or disagree with each other."""


@dataclass
class Reference:
    root: Path
    weights: Path  # model.safetensors
    config: Config  # the config every reference run trained with (the first run's seed)
    logs: dict[int, list[dict[str, Any]]]  # seed -> the run's metrics.jsonl records, in order
    card: dict[str, Any]


def bundled_reference_dir(kind: str = COLOUR) -> Path:
    """A reference shipped in the package: the DINOv2 demo model's or the colour-code one's."""
    return Path(str(resources.files("dias").joinpath(REFERENCE_PACKAGE_DIRS[kind])))


def load_reference(root: str | Path | None = None) -> Reference:
    """The reference in `root` (default: the bundled one), its weights checked against the card's SHA-256.

    A missing file, a damaged card or log, a log name that leaves the folder, or weights whose hash is not
    the card's are errors naming the file.
    """
    root = Path(root) if root is not None else bundled_reference_dir()
    for name in (WEIGHTS_FILE_NAME, CONFIG_FILE_NAME, CARD_FILE_NAME):
        if not (root / name).is_file():
            raise MissingFileError(
                f"the demo reference in {root} has no {name}; pass {REFERENCE_OPTION} DIR with a folder written by "
                "scripts/package_demo_model.py, or reinstall dias"
            )
    card = _read_card(root)
    logs = {}
    for run in card["runs"]:
        logs[run["seed"]] = _read_log(_log_path(root, run["log"]))
    weights = root / WEIGHTS_FILE_NAME
    if file_sha256(weights) != card["weights"]["sha256"]:
        raise DamagedReferenceError(
            f"{weights} is not the file its {CARD_FILE_NAME} vouches for (its SHA-256 differs); the weights are "
            "damaged or were replaced: reinstall dias, or pass "
            f"{REFERENCE_OPTION} DIR with a folder written by scripts/package_demo_model.py"
        )
    return Reference(root, weights, load_config(root / CONFIG_FILE_NAME), logs, card)


def _read_card(root: Path) -> dict[str, Any]:
    """The card of the reference in `root`, its shape checked: weights with a sha256, runs with a seed and a log."""
    path = root / CARD_FILE_NAME
    damaged = f"the demo reference's {path} is damaged"
    fix = f"reinstall dias, or pass {REFERENCE_OPTION} DIR with a folder written by scripts/package_demo_model.py"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DamagedReferenceError(f"{damaged} (not JSON: {exc}); {fix}") from exc
    try:
        runs, sha256 = card["runs"], card["weights"]["sha256"]
        valid = isinstance(sha256, str) and isinstance(runs, list) and bool(runs)
        for run in runs:
            valid = valid and isinstance(run["log"], str) and isinstance(run["seed"], int)
        data = card.get("data") or {}
        valid = valid and set(data) <= set(DATA_KEYS) and all(type(v) is int and v >= 0 for v in data.values())
    except (KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise DamagedReferenceError(
            f"{damaged} (it lacks the weights' sha256 or a run's seed and log, or its data is not "
            f"{', '.join(DATA_KEYS)} as whole numbers); {fix}"
        )
    return card


def _log_path(root: Path, name: str) -> Path:
    """The log `name` (named in the card) in `root`; refused when it would lead out of the folder."""
    path = root / name
    if Path(name).name != name or name in ("", ".", "..") or not path.resolve().is_relative_to(root.resolve()):
        raise DamagedReferenceError(
            f"the demo reference's {CARD_FILE_NAME} in {root} names the log {name!r}, which leads out of that "
            "folder; a card names its logs by file name, inside the folder"
        )
    if not path.is_file():
        raise MissingFileError(f"the demo reference in {root} has no {name} (named in {CARD_FILE_NAME})")
    return path


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The records of one reference log; a line that is not a JSON record is an error naming the file and line."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise DamagedReferenceError(
                    f"the demo reference's log {path} is damaged at line {number} (not a JSON record); reinstall "
                    f"dias, or pass {REFERENCE_OPTION} DIR with a folder written by scripts/package_demo_model.py"
                )
            records.append(record)
    return records


def package_reference(run_dirs: list[str | Path], out: str | Path, *, trained_on: str | None = None) -> dict[str, Any]:
    """Write a reference folder `out` from training runs (the first one's weights); returns the card.

    `trained_on` says where the runs trained (the card's record of it); by default, this machine.

    Each run folder holds what `dias train` writes (config.yaml, metrics.jsonl, last.pt) and, when the run
    was scored with `dias eval RUN/last.pt`, eval-val/metrics.json, whose metrics and baselines go in the card.
    """
    run_dirs = [Path(run) for run in run_dirs]
    if not run_dirs:
        raise UsageError("package_reference needs at least one run folder")
    configs = [load_config(run / CONFIG_FILE_NAME) for run in run_dirs]
    _check_same_config_other_seeds(run_dirs, configs)
    runs, logs = [], []
    for run, cfg in zip(run_dirs, configs, strict=True):  # read everything before anything is written
        logs.append(read_metrics(run))  # whole records only, so a run still training can be packaged
        runs.append(_run_entry(run, cfg, logs[-1]))
    out = Path(out)
    staging = out / STAGING_DIR_NAME  # written in full, then its files renamed into out: a failure leaves out as it was
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for records, entry in zip(logs, runs, strict=True):
        (staging / entry["log"]).write_text(format_records(records), encoding="utf-8")
    export_weights(run_dirs[0] / "last.pt", staging / WEIGHTS_FILE_NAME)
    save_config(configs[0], staging / CONFIG_FILE_NAME)
    card = {
        "made_by": "scripts/train_demo_model.sh (dias train, then dias eval, then scripts/package_demo_model.py)",
        "dias_version": __version__,
        "weights": {
            "file": WEIGHTS_FILE_NAME,
            "seed": configs[0].train.seed,
            "sha256": file_sha256(staging / WEIGHTS_FILE_NAME),
        },
        "data": _generator_options(configs[0]),
        "runs": runs,
        "mean_over_scored_runs": _mean_scores([r["eval"] for r in runs if r["eval"] is not None]),
        "trained_on": trained_on or f"{cpu_name()}, {torch.get_num_threads()} threads",
        "packaged_on": {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__},
    }
    atomic_write_bytes(staging / CARD_FILE_NAME, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    for entry in runs:
        (staging / entry["log"]).replace(out / entry["log"])
    (staging / WEIGHTS_FILE_NAME).replace(out / WEIGHTS_FILE_NAME)
    (staging / CONFIG_FILE_NAME).replace(out / CONFIG_FILE_NAME)
    (staging / CARD_FILE_NAME).replace(out / CARD_FILE_NAME)  # last: the card names the logs and the weights
    staging.rmdir()
    return card


def _generator_options(cfg: Config) -> dict[str, int] | None:
    """How `dias prepare synthetic` made the runs' data (so the demo can make it again), from its splits' headers;
    None for data the generator did not make."""
    headers = [load_header(split_path(cfg.data.root, split)) for split in (cfg.data.train_split, cfg.data.val_split)]
    if any(header.get("dataset") != DATASET_NAME for header in headers):
        return None
    train, val = (header["info"] for header in headers)
    return {
        "num_train": train["num_images"],
        "num_val": val["num_images"],
        "size": train["size"],
        "seed": train["seed"],
    }


def _check_same_config_other_seeds(run_dirs: list[Path], configs: list[Config]) -> None:
    """Refuse (UsageError) runs whose configs differ in more than RUN_SPECIFIC_KEYS, or that share a seed."""
    for run, cfg in zip(run_dirs[1:], configs[1:], strict=True):
        differences = differing_keys(configs[0], cfg)
        if differences:
            raise UsageError(
                f"{run} was trained with another config than {run_dirs[0]}; differing keys: {', '.join(differences)}"
            )
    seeds = [cfg.train.seed for cfg in configs]
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"the reference runs must have different seeds, got {seeds}")


def _run_entry(run: Path, cfg: Config, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The card's entry of one run: its seed, steps, training time, log file and, when scored, its eval."""
    scored = run / EVAL_METRICS_FILE
    evaluation = json.loads(scored.read_text(encoding="utf-8")) if scored.is_file() else None
    return {
        "seed": cfg.train.seed,
        "step": load_checkpoint(run / "last.pt")["step"],
        "total_steps": cfg.train.total_steps,
        "train_minutes": training_minutes(records),
        "log": LOG_FILE_PATTERN.format(seed=cfg.train.seed),
        "eval": None if evaluation is None else _eval_summary(evaluation),
    }


def differing_keys(reference: Config, other: Config) -> list[str]:
    """Dotted keys (outside RUN_SPECIFIC_KEYS) whose values differ between two configs."""
    flat_reference, flat_other = flatten(to_dict(reference)), flatten(to_dict(other))
    keys = sorted(set(flat_reference) | set(flat_other))
    return [
        f"{key} ({flat_reference.get(key)!r} vs {flat_other.get(key)!r})"
        for key in keys
        if key not in RUN_SPECIFIC_KEYS and flat_reference.get(key) != flat_other.get(key)
    ]


def fresh_config(reference: Reference, overrides: list[str] | tuple[str, ...], placement: list[str]) -> Config:
    """The reference's config with `overrides`, then `placement` (data.root=..., data.features=...: where this
    machine keeps the data): what a fresh run checked against it trains."""
    return from_dict(apply_overrides(to_dict(reference.config), [*overrides, *placement]))


def training_minutes(records: list[dict[str, Any]]) -> float:
    """Minutes spent in training steps, from the logged windows' rates (validation and saving left out)."""
    seconds, last_step = 0.0, 0
    for record in records:
        if "steps_per_s" in record and record["steps_per_s"] > 0:
            seconds += (record["step"] - last_step) / record["steps_per_s"]
            last_step = record["step"]
    return seconds / 60


def _eval_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {
        "metrics": evaluation["metrics"],
        "baselines": evaluation["baselines"],
        "num_images": evaluation["card"]["num_evaluated"],
    }


def _mean_scores(evaluations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-metric means over runs of the model's and each baseline's scores."""
    if not evaluations:
        return None

    def mean(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
        names = rows[0].keys()
        values = {name: [row[name] for row in rows if row.get(name) is not None] for name in names}
        return {name: (sum(v) / len(v) if v else None) for name, v in values.items()}

    baselines = evaluations[0]["baselines"].keys()
    return {
        "num_runs": len(evaluations),
        "metrics": mean([e["metrics"] for e in evaluations]),
        "baselines": {name: mean([e["baselines"][name] for e in evaluations]) for name in baselines},
    }
