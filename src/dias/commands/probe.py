"""`dias probe`: object recognition from a frozen model's slots, the protocol of the DIAS authors' code family.

    result = run_probe("runs/demo/fresh/last.pt", "runs/demo/probe", overrides=["probe.attribute=shape"])
    result.metrics["model"]["top1"]   # class top-1 over every matched object of the val split

Per step: a batch of augmented training images (random crop, resize, flip, as discovery training) ->
the frozen model (no gradient) -> slots matched to the objects (dias.probe.matching) -> one Adam step of
each probe: one on the model's slots, and one each on "slots" that learn nothing (backbone tokens pooled in
the image-blind grid's cells and in per-image k-means segments). LR: linear warm-up over 5 % of the steps,
then cosine to lr / 1000. Then the val split (centre crop) is scored: class top-1 and top-3, the box IoU and
the number of matches, micro-averaged over the matched objects, beside the majority class. On a video model
the batches are clips and slot tracks are matched to object tracks over each clip (dias.commands.probe_clips).

The run folder holds probe.pt (the probes, their optimizers, the step, torch's RNG state and what the run
started with: saved atomically every probe.checkpoint_every steps, at the end and on Ctrl-C / SIGTERM;
`resume=True` continues it exactly as an uninterrupted image probe, a video probe with a fresh clip order
seeded by the step, and refuses a run started on another model or label), config.yaml, metrics.jsonl and
metrics.json with the eval card. One process writes a run folder at a time, and a new run never replaces one
already there.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from dias.commands.probe_clips import check_clip_options, clip_loader, match_clips
from dias.commands.probe_state import PROBE_FILE, SOURCES, ProbeRun, origin
from dias.config import CONFIG_FILE_NAME, save_config
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import load_header, split_path
from dias.data.sampling import EpochSampler, SeededSamples
from dias.data.transforms import EvalTransform, TrainTransform
from dias.errors import DiasError, FileInTheWayError
from dias.io import atomic_write_bytes, file_sha256
from dias.methods.base import SlotModel
from dias.probe.labels import label_vocabulary
from dias.probe.matching import box_iou
from dias.probe.objects import MODEL_SOURCE, Matched, match_batch
from dias.probe.probe import Probe, probe_loss, top_k_correct
from dias.runtime.lock import FolderLock
from dias.schedules import lr_at
from dias.schema import Config, is_video
from dias.train.checkpoint import load_model
from dias.train.loaders import batches
from dias.train.log import METRICS_FILE_NAME, MetricsLogger
from dias.train.stop import StepAbandoned, StopRequest
from dias.version import __version__
from dias.viz.tables import Column, Table, format_fraction, to_markdown

RESULT_FILE = "metrics.json"
MAJORITY = "majority"
MATCHING = {False: "uncapped: every Hungarian pair above the IoU threshold", True: "official cap: objects 0 and 1 only"}

log = logging.getLogger(__name__)


class ProbeScoreError(DiasError, ValueError):
    """No slot of the model matched any val object: the probe has nothing to score."""


@dataclass
class ProbeResult:
    step: int
    status: str  # "done", or the signal's ("interrupted", "terminated")
    matching: str  # the matching mode, as MATCHING words it
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # source -> top1, top3, box_iou, num_matches


def run_probe(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
) -> ProbeResult:
    """Train the probes on `checkpoint`'s frozen slots into `out_dir`, then score them on the val split."""
    out_dir = Path(out_dir)
    model, cfg = load_model(checkpoint, config=config, overrides=overrides)
    match = _match_options(model, cfg)
    matching = MATCHING[cfg.probe.official_cap]
    resume_command = f"dias probe --checkpoint {checkpoint} --out {out_dir} --resume"  # + the same overrides
    with FolderLock(out_dir):
        run = _setup(model, cfg, match, out_dir, checkpoint=checkpoint, resume=resume, resume_command=resume_command)
        logger = MetricsLogger(out_dir, cfg, fresh=not resume)
        stop = StopRequest()
        stop.install()
        try:
            _train_probes(run, logger=logger, stop=stop)
            if stop.status is not None:
                run.save()
                log.warning("%s at step %d; continue with `%s`", stop.status, run.step, resume_command)
                return ProbeResult(run.step, stop.status, matching)
        finally:
            stop.restore()
            logger.close()
        metrics = _finish(run, checkpoint, out_dir)
        return ProbeResult(run.step, "done", matching, metrics)


def _match_options(model: SlotModel, cfg: Config) -> dict[str, Any]:
    """match_batch's options; freezes the model. Fails here, before any work, on a dataset without labels."""
    p = cfg.probe
    # ClevrTex's classes are those its train split names
    train_info = load_header(split_path(cfg.data.root, cfg.data.train_split))["info"]
    vocabulary = label_vocabulary(cfg.data.name, p.attribute, train_info=train_info)
    if is_video(cfg.data.name):
        check_clip_options(cfg)
    model.eval().requires_grad_(False)
    grid = model.backbone.grid_size(cfg.data.image_size)
    match = dict(
        sources=SOURCES, dataset=cfg.data.name, attribute=p.attribute, vocabulary=vocabulary,
        mask_source=p.mask_source, grid=grid, iou_threshold=p.iou_threshold, official_cap=p.official_cap, seed=p.seed,
    )  # fmt: skip
    log.info("matching: %s, IoU > %s, masks %s", MATCHING[p.official_cap], p.iou_threshold, p.mask_source)
    return match


def _setup(
    model: SlotModel,
    cfg: Config,
    match: dict[str, Any],
    out_dir: Path,
    *,
    checkpoint: str | Path,
    resume: bool,
    resume_command: str,
) -> ProbeRun:
    """Fresh probes and optimizers (or probe.pt's, with `resume`); a new run never replaces one already there."""
    if not resume and (out_dir / PROBE_FILE).exists():
        raise FileInTheWayError(
            f"{out_dir} already holds a probe run; continue it with `{resume_command}` or pass another --out"
        )
    torch.manual_seed(cfg.probe.seed)
    dims = {s: model.backbone.feature_dim for s in SOURCES} | {MODEL_SOURCE: cfg.model.slot_dim}
    probes = {s: Probe(dims[s], len(match["vocabulary"])) for s in SOURCES}
    optimizers = {s: torch.optim.Adam(probes[s].parameters(), lr=0.0, weight_decay=0.0) for s in SOURCES}
    started_with = origin(checkpoint, cfg, match["vocabulary"])
    run = ProbeRun(model, cfg, match, out_dir / PROBE_FILE, started_with, probes, optimizers)
    if resume:
        run.restore()
    save_config(cfg, out_dir / CONFIG_FILE_NAME)
    return run


def _train_probes(run: ProbeRun, *, logger: MetricsLogger, stop: StopRequest) -> None:
    """Train until probe.total_steps, or until a signal sets stop.status (the caller then saves probe.pt)."""
    cfg, p = run.cfg, run.cfg.probe
    warmup = p.total_steps // 20 if p.warmup_steps is None else p.warmup_steps
    batches = _training_batches(cfg, start_step=run.step)
    for probe in run.probes.values():
        probe.train()
    while run.step < p.total_steps and stop.status is None:
        # data, then the frozen model's slots matched to the objects: no state changes, so a stop signal drops
        # them at once (a large batch can take minutes) and the run saves the probes as they were
        rng = torch.get_rng_state()  # put back if the step is dropped, so a resume draws what this run would
        try:
            with stop.abandon_on_stop(), torch.no_grad():
                batch = next(batches)
                matched = _matched(run.model, batch, run.match, cfg, train=True)
        except StepAbandoned:
            torch.set_rng_state(rng)
            break
        lr = lr_at(run.step, p.lr, warmup, p.total_steps, p.lr / 1000)

        # the training targets counted for the majority baseline
        run.majority.update(matched[MODEL_SOURCE].classes.tolist())
        run.box_sum += matched[MODEL_SOURCE].boxes.double().sum(0)

        # step: one Adam step per probe
        losses = {s: _train_step(run.probes[s], run.optimizers[s], matched[s], lr) for s in SOURCES}
        run.step += 1

        # log
        if run.step % cfg.log.every == 0 or run.step == p.total_steps:
            logger.log({**{f"loss/{s}": v for s, v in losses.items()}, "lr": lr}, run.step)

        # checkpoint
        if run.step % p.checkpoint_every == 0 or run.step == p.total_steps:
            run.save()


def _finish(run: ProbeRun, checkpoint: str | Path, out_dir: Path) -> dict[str, dict[str, float]]:
    """Score the probes on the val split and write metrics.json with its eval card; the metrics."""
    cfg, p = run.cfg, run.cfg.probe
    mean_box = (run.box_sum / max(sum(run.majority.values()), 1)).float()
    metrics = _score(run.model, run.probes, run.majority, mean_box, cfg, run.match)
    card = {
        "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "dias_version": __version__,
        "dataset": cfg.data.name, "split": cfg.data.val_split, "attribute": p.attribute,
        "num_classes": len(run.match["vocabulary"]), "mask_source": p.mask_source, "iou_threshold": p.iou_threshold,
        "matching": MATCHING[p.official_cap], "steps": p.total_steps, "batch_size": p.batch_size,
        "metrics": "micro-averaged over the matched objects; box IoU of each matched pair's predicted box"
        + ("; video: tracks matched by space-time IoU, one sample per frame a matched object is visible in"
           if is_video(cfg.data.name) else ""),
    }  # fmt: skip
    scores = {
        s: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}
        for s, m in metrics.items()
    }
    text = json.dumps({"metrics": scores, "card": card}, indent=2, allow_nan=False) + "\n"  # no match: null
    atomic_write_bytes(out_dir / RESULT_FILE, text.encode("utf-8"))
    if metrics[MODEL_SOURCE]["num_matches"] == 0:
        raise ProbeScoreError(
            f"no slot of the model matched an object of the {cfg.data.val_split} split (IoU > "
            f"probe.iou_threshold={p.iou_threshold}), so the probe has no score ({out_dir / RESULT_FILE} holds null); "
            "lower probe.iou_threshold, or check that the model segments these images (dias eval)"
        )
    return metrics


def _train_step(probe: Probe, optimizer: torch.optim.Optimizer, matched: Matched, lr: float) -> float:
    """One Adam step on the batch's matched objects (none matched: no step); the loss, or NaN."""
    if len(matched.classes) == 0:
        return math.nan
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits, boxes = probe(matched.vectors)
    loss = probe_loss(logits, boxes, matched.classes, matched.boxes)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def _score(
    model, probes: dict[str, Probe], majority: Counter, mean_box: torch.Tensor, cfg: Config, match: dict
) -> dict[str, dict]:
    """Top-1, top-3, box IoU and matches per source on the val split, and the majority baseline's: the most
    common training classes and the mean training box, scored on the model's matches."""
    totals = {s: Counter() for s in (*SOURCES, MAJORITY)}
    common = [c for c, _ in majority.most_common(3)] or [0]
    for probe in probes.values():
        probe.eval()
    for batch in _val_loader(cfg):
        matched = _matched(model, batch, match, cfg, train=False)
        for source, probe in probes.items():
            m = matched[source]
            if len(m.classes):
                logits, boxes = probe(m.vectors)
                _add(totals[source], top_k_correct(logits, m.classes, 1), top_k_correct(logits, m.classes, 3),
                     box_iou(boxes, m.boxes))  # fmt: skip
        m, guess = matched[MODEL_SOURCE], torch.tensor(common)
        top3 = (m.classes[:, None] == guess[None]).any(1)
        _add(totals[MAJORITY], m.classes == guess[0], top3, box_iou(mean_box.expand(len(m.classes), -1), m.boxes))
    return {s: _means(t) for s, t in totals.items()}


def _add(total: Counter, top1: torch.Tensor, top3: torch.Tensor, iou: torch.Tensor) -> None:
    total.update({"top1": float(top1.sum()), "top3": float(top3.sum()), "box_iou": float(iou.sum())})
    total["num_matches"] += len(top1)


def _means(total: Counter) -> dict[str, float]:
    n = total["num_matches"]
    return {k: (total[k] / n if n else math.nan) for k in ("top1", "top3", "box_iou")} | {"num_matches": int(n)}


def _matched(model, batch: dict[str, Any], match: dict, cfg: Config, *, train: bool) -> dict[str, Matched]:
    """The frozen model's vectors matched to the batch's objects: per image, or per track over each clip."""
    if is_video(cfg.data.name):
        return match_clips(model, batch, match, cfg, train=train)
    return match_batch(model(images=batch["image"]), batch, **match)


def _training_batches(cfg: Config, *, start_step: int) -> Iterator[dict[str, Any]]:
    """Endless training batches from step `start_step` on, one per step.

    Images: each epoch's order and each sample's augmentation come from (probe.seed, epoch, index), as in
    training (dias.data.sampling), so a resumed probe sees exactly the batches an uninterrupted one would.
    Clips: a fresh order seeded by the step.
    """
    p, d = cfg.probe, cfg.data
    if is_video(d.name):
        clips = clip_loader(cfg, train=True, seed=p.seed + start_step)
        while True:
            yield from clips
    transform = TrainTransform(d.image_size, d.crop_scale, d.flip)
    dataset = LmdbDataset(split_path(d.root, d.train_split), transform, d.skip_corrupt, with_meta=True)
    sampler = EpochSampler(len(dataset), p.batch_size, p.seed)
    loader = DataLoader(
        SeededSamples(dataset, p.seed), batch_size=p.batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
        generator=torch.Generator().manual_seed(p.seed),  # creating an iterator must not draw from torch's RNG
    )  # fmt: skip
    epoch, consumed = divmod(start_step, sampler.batches_per_epoch)
    for batch, _, _ in batches(loader, sampler, epoch, consumed):
        yield batch


def _val_loader(cfg: Config) -> DataLoader:
    """The val split, in order."""
    if is_video(cfg.data.name):
        return clip_loader(cfg, train=False, seed=cfg.probe.seed)
    d = cfg.data
    dataset = LmdbDataset(split_path(d.root, d.val_split), EvalTransform(d.image_size), d.skip_corrupt, with_meta=True)
    return DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=collate)


def format_probe(metrics: dict[str, dict[str, float]], matching: str) -> str:
    """A markdown table: the probe on the model's slots beside its baselines."""
    titles = {
        MODEL_SOURCE: "probe on the model's slots", "grid": "probe on tokens pooled in a fixed grid (image-blind)",
        "kmeans": "probe on tokens pooled in k-means segments", MAJORITY: "majority class",
    }  # fmt: skip
    columns = [Column("probe"), *(Column(title, align="right") for title in ("top-1", "top-3", "box IoU", "matches"))]
    rows = [
        [titles[source], *(format_fraction(m[name]) for name in ("top1", "top3", "box_iou")), str(m["num_matches"])]
        for source, m in metrics.items()
    ]
    return f"matching: {matching}\n" + to_markdown(Table(columns=columns, rows=rows))


__all__ = ["ProbeResult", "format_probe", "run_probe", "METRICS_FILE_NAME"]
