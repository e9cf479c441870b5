"""The training loop of every method: plain PyTorch, one process or torchrun DDP, exact resume.

    result = train(load_config("configs/demo.yaml"), run_dir="runs/demo")
    cfg, checkpoint = load_resume("runs/demo")
    result = train(cfg, run_dir="runs/demo", resume=checkpoint)

Per step: schedules (lr, the method's plan) -> autocast forward -> the method's objective -> backward -> clip ->
Adam step (step.py) -> log -> eval -> checkpoint. The step's losses stay on the device; the host reads
them once per `log.every` steps (window.py), and that one sync also checks them for NaN (the loss, and the
gradient norm unless fp16 loss scaling skips such steps) and checks the time limit. It comes before every
checkpoint and validation, so a non-finite step stops the run, naming it, before any checkpoint holds the
weights it changed. run_dir/last.pt holds everything a resumed run needs (trainable weights, optimizer,
grad scaler, every rank's RNG states, the data position), so on CPU a resumed run's losses equal an
uninterrupted run's exactly.

One process writes a run folder at a time (dias/runtime/lock.py). Ctrl-C and SIGTERM (what cluster schedulers such
as SLURM send before they stop a job) ask the loop to stop at the next step boundary: it saves last.pt
and returns, so a requeued job continues with `dias train --resume RUN_DIR`. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dias import __version__
from dias.config import (
    CONFIG_FILE_NAME,
    Config,
    flatten,
    from_dict,
    load_config,
    save_config,
    to_dict,
    val_every,
    warmup_steps,
)
from dias.errors import DiasError, MissingFileError, UsageError
from dias.methods import method_of
from dias.methods.base import SlotModel
from dias.runtime import distributed
from dias.runtime.device import resolve_precision
from dias.runtime.lock import FolderInUseError, FolderLock, remove_stale_temp_files
from dias.schedules import lr_at
from dias.train.checkpoint import check_compatible, config_from_checkpoint, load_checkpoint, load_trainable_state
from dias.train.features import batch_inputs
from dias.train.loaders import batches, build_loaders
from dias.train.log import METRICS_FILE_NAME, MetricsLogger, truncate_metrics
from dias.train.state import capture_rng, restore_rng, save_training_checkpoint, seed_everything
from dias.train.step import build_optimizer, optimisation_step
from dias.train.stop import STOP_STATUSES, StopRequest
from dias.train.validate import baseline_part, validate
from dias.train.window import StatsWindow

LAST, BEST = "last.pt", "best.pt"

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: SlotModel
    step: int  # optimisation steps done
    status: str  # "done", "interrupted" (Ctrl-C), "terminated" (SIGTERM), "stopped" (max_steps / time_limit)
    losses: list[float] = field(default_factory=list)  # per step of this call, the total objective
    best_fg_ari: float = -math.inf
    val: dict[str, float] = field(default_factory=dict)  # the last validation's means
    num_skipped: int = 0  # corrupt training records dropped by data.skip_corrupt in this call

    @property
    def stopped_by_signal(self) -> bool:
        """Whether Ctrl-C or SIGTERM stopped the run (last.pt saved) before it got where it was going."""
        return self.status in STOP_STATUSES.values()


def load_resume(
    run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), config: str | Path | None = None
) -> tuple[Config, dict]:
    """(config, checkpoint) to continue run_dir from its last.pt, which is read once, here.

    The config is the checkpoint's (or the YAML `config`), with `overrides`; one that changes the model is
    refused with CheckpointError. Pass both to `train(cfg, run_dir, resume=checkpoint)`.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise UsageError(f"--resume takes a run folder, not a file: pass --resume {run_dir.parent}")
    path = run_dir / LAST
    if not path.is_file():
        raise MissingFileError(
            f"{run_dir} holds no {LAST}, so it is not a run of `dias train` that can be resumed; "
            "pass --resume the folder a run wrote, or start a new run with --config FILE"
        )
    checkpoint = load_checkpoint(path)
    return config_from_checkpoint(checkpoint["config"], path, config=config, overrides=overrides), checkpoint


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool | dict = False,
    max_steps: int | None = None,
    time_limit: float | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train until cfg.train.total_steps (or `max_steps` done, or `time_limit` seconds), checkpointing to run_dir.

    `resume` continues run_dir from its last.pt: pass the checkpoint as `load_resume` read it, or True to
    read it here. Either way it is read once.

    Holds run_dir's lock throughout: a second writer of the same folder is refused with FolderInUseError.
    """
    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(run_dir / LAST) if resume is True else resume or None
    dist_info = distributed.init_distributed(cfg.train.device)
    try:
        with contextlib.ExitStack() as stack:
            refused = None
            if dist_info.is_main:  # only rank 0 writes the run folder
                try:
                    stack.enter_context(FolderLock(run_dir))
                except FolderInUseError as exc:
                    refused = exc
            if distributed.all_reduce_any(refused is not None, dist_info):  # every rank stops together
                raise refused or FolderInUseError(f"rank 0 could not lock {run_dir}; see its error")
            return _train(cfg, run_dir, dist_info, checkpoint, max_steps, time_limit, progress)
    finally:
        distributed.shutdown_distributed(dist_info)


def _train(
    cfg: Config,
    run_dir: Path,
    dist_info: distributed.DistInfo,
    resume: dict | None,
    max_steps: int | None,
    time_limit: float | None,
    progress: bool,
) -> TrainResult:
    device, is_main = dist_info.device, dist_info.is_main
    if is_main:  # holding the lock: no save of this run is in flight, so these are a killed process's
        remove_stale_temp_files(run_dir, (LAST, BEST, CONFIG_FILE_NAME, METRICS_FILE_NAME))
    seed_everything(cfg.train.seed)  # every rank builds the same model (a random ViT backbone included)
    method = method_of(cfg)
    model = method.build_model(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]  # the frozen backbone is not optimised
    o = cfg.optim
    warmup, validate_every = warmup_steps(cfg), val_every(cfg)
    optimizer = build_optimizer(params, o, device)
    precision = resolve_precision(cfg.train.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    train_loader, sampler, val_loader = build_loaders(cfg, dist_info)
    step, epoch, consumed, best = 0, 0, 0, -math.inf
    if resume is not None:
        checkpoint = resume
        saved = from_dict(checkpoint["config"])
        check_compatible(saved, cfg, run_dir / LAST)  # a no-op after load_resume; guards a hand-made cfg
        if is_main and saved.train.total_steps != cfg.train.total_steps:
            log.warning(
                "train.total_steps changes from %d (in %s) to %d: the LR schedule (warm-up, cosine decay) and "
                "the method's schedules (dias.methods) are now spread over %d steps, "
                "so from step %d on they differ from those of an uninterrupted run of either length",
                saved.train.total_steps, run_dir / LAST, cfg.train.total_steps, cfg.train.total_steps,
                checkpoint["step"],
            )  # fmt: skip
        load_trainable_state(model, checkpoint["model"], run_dir / LAST)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, best = checkpoint["step"], checkpoint["best_fg_ari"]
        epoch, consumed = checkpoint["data"]["epoch"], checkpoint["data"]["batches"]
        restore_rng(checkpoint["rng"], dist_info, fallback_seed=cfg.train.seed + step)
        if is_main:
            truncate_metrics(run_dir, step)
            log.info("resumed %s at step %d (epoch %d, batch %d)", run_dir, step, epoch, consumed)
    else:
        seed_everything(cfg.train.seed + dist_info.rank)  # each rank draws its own noise
    if is_main:
        if resume is not None:
            _warn_of_hand_edits(run_dir / CONFIG_FILE_NAME, saved, cfg)
        save_config(cfg, run_dir / CONFIG_FILE_NAME)
        log.info(
            "training on %s, %d rank(s) x batch %d = effective batch %d, %d trainable parameters, dias %s",
            device, dist_info.world_size, cfg.data.batch_size, cfg.data.batch_size * dist_info.world_size,
            sum(p.numel() for p in params), __version__,
        )  # fmt: skip
    forward_model = model
    if dist_info.enabled:  # gradients are averaged over the ranks in backward
        forward_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:  # the compiled wrapper shares the parameters; checkpoints keep the plain names
        forward_model = torch.compile(forward_model)
    logger = MetricsLogger(run_dir, cfg, enabled=is_main, fresh=resume is None)

    def checkpoint_to(name: str, rng: list | None = None) -> None:
        state = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "best_fg_ari": best}
        state["data"] = {"epoch": epoch, "batches": consumed}
        rng = rng if rng is not None else distributed.all_gather_objects(capture_rng(), dist_info)
        if is_main:
            save_training_checkpoint(run_dir / name, model, cfg, step, rng=rng, **state)

    result = TrainResult(model, step, "done", best_fg_ari=best)
    stop_at = cfg.train.total_steps if max_steps is None else min(cfg.train.total_steps, max_steps)
    bar = tqdm(total=cfg.train.total_steps, initial=step, disable=not (progress and is_main), desc="train")
    start_time = window_time = time.monotonic()
    window = StatsWindow(method.stat_names, first_step=step, loss_scaled=precision.scaled)

    def read_window() -> bool:
        """The window's one host sync: NaN check of loss and gradient (raises), losses kept, the time limit."""
        timed_out = time_limit is not None and time.monotonic() - start_time > time_limit
        losses, timed_out = window.read(dist_info, timed_out=timed_out)
        result.losses.extend(losses)
        return timed_out

    model.train()
    data = batches(train_loader, sampler, epoch, consumed)
    val_baselines = None  # validation's baseline means, once scored
    stop = StopRequest()
    stop.install()
    try:
        # A signal only sets stop.status; the loop looks at it here, between steps, so the weights, optimizer,
        # step count, data position and RNG it saves all belong to the same step. Under torchrun the ranks
        # may see a signal at different steps, so they agree on it at the next window read instead (below).
        while step < stop_at and (stop.status is None or dist_info.enabled):
            batch, next_epoch, next_consumed = next(data)
            if batch.get("num_skipped"):  # data.skip_corrupt: corrupt records are dropped, and counted aloud
                result.num_skipped += batch["num_skipped"]
                log.warning(
                    "step %d: skipped %d corrupt records of this batch (data.skip_corrupt=true); %d so far",
                    step, batch["num_skipped"], result.num_skipped,
                )  # fmt: skip
            if "index" not in batch:  # every record of the batch was corrupt and skipped
                epoch, consumed = next_epoch, next_consumed
                continue
            inputs = batch_inputs(batch, device)  # images (B, 3, H, W) uint8, or cached features (B, N, C)

            # schedules: set before the step, so step 0 trains with lr 0 (as in the release); the method's plan
            # holds its loss weights and forward options (DIAS: the distillation ramp, the re-initialization coin)
            lr = lr_at(step, o.lr, warmup, cfg.train.total_steps, o.lr * o.final_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            plan = method.plan(cfg, step)

            # forward, objective, backward, clip, Adam: no host sync
            stats = optimisation_step(
                forward_model, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler,
                params=params, precision=precision,
            )  # fmt: skip
            window.add(stats)
            step += 1
            epoch, consumed = next_epoch, next_consumed
            bar.update()

            # the window's one sync, before anything is logged or saved
            val_due = step % validate_every == 0 or step == cfg.train.total_steps
            log_due = step % cfg.log.every == 0 or step == stop_at
            if log_due or val_due or step % cfg.train.checkpoint_every == 0:
                if read_window():
                    stop_at = step  # the time limit: log, checkpoint and stop now
                if dist_info.enabled and distributed.all_reduce_any(stop.status is not None, dist_info):
                    stop.status = stop.status or STOP_STATUSES[signal.SIGTERM]  # a signal reached another rank
                    stop_at = step  # every rank checkpoints this step together, then stops

            # log
            if window.num_read and (step % cfg.log.every == 0 or step == stop_at):
                now = time.monotonic()
                count = window.num_read
                metrics = {**window.take_means(), **plan.logged, "lr": lr}
                metrics["steps_per_s"] = count / (now - window_time)
                logger.log(metrics, step)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", steps_per_s=f"{metrics['steps_per_s']:.2f}")
                window_time = now

            # eval
            if val_due:
                val = None
                if is_main:  # a signal stops validation between batches (val None): the checkpoint comes first
                    val = validate(
                        model, val_loader, mask_source=cfg.eval.mask_source, seed=cfg.eval.seed, device=device,
                        precision=cfg.eval.precision, baselines=val_baselines,
                        should_stop=lambda: stop.status is not None,
                    )  # fmt: skip
                if val is not None:
                    result.val = val
                    val_baselines = baseline_part(val)  # the same at every validation: scored once
                    logger.log({f"val/{k}": v for k, v in val.items()}, step)
                    log.info("step %d validation: %s", step, _format(val))
                elif is_main:
                    log.warning("step %d: validation stopped part-way by %s; not scored", step, stop.status)
                improved = val is not None and val.get("fg_ari", -math.inf) > best
                if distributed.all_reduce_any(improved, dist_info):
                    best = result.val["fg_ari"] if is_main else best
                    checkpoint_to(BEST)
                distributed.barrier(dist_info)

            # checkpoint
            if step % cfg.train.checkpoint_every == 0 or step == stop_at:
                checkpoint_to(LAST)
        result.status = stop.status or ("done" if step >= cfg.train.total_steps else "stopped")
        if stop.status is not None and step < stop_at:  # one process, stopped early: last.pt is not yet this step's
            result.losses.extend(window.read(None)[0])  # the steps since the last read: NaN-free or raise
            log.warning("%s at step %d; saving %s", result.status, step, run_dir / LAST)
            checkpoint_to(LAST)
        elif stop.status is not None:
            log.warning("%s at step %d; saved %s", result.status, step, run_dir / LAST)
        if stop.status is not None and is_main:
            log.warning("continue with `dias train --resume %s`", run_dir)
    finally:
        stop.restore()
        bar.close()
        logger.close()
    result.step, result.best_fg_ari = step, best
    return result


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _warn_of_hand_edits(path: Path, saved: Config, cfg: Config) -> None:
    """Warn, naming the keys, when the run's config.yaml holds values that neither last.pt nor `cfg` has.

    A resumed run takes its config from last.pt and the command's overrides, and then rewrites config.yaml:
    an edit made to the file by hand would otherwise vanish without a word.
    """
    if not path.is_file():
        return
    try:
        on_disk = flatten(to_dict(load_config(path)))
    except DiasError as exc:
        log.warning("%s cannot be read (%s); it is rewritten from %s", path, exc, LAST)
        return
    kept, used = flatten(to_dict(saved)), flatten(to_dict(cfg))
    edits = [
        f"{key}={on_disk[key]!r}" for key in on_disk if on_disk[key] != kept.get(key) and on_disk[key] != used.get(key)
    ]
    if edits:
        log.warning(
            "%s was edited by hand (%s); a resumed run takes its config from %s and the command's key=value "
            "overrides, so these edits are replaced: pass them as overrides, e.g. `dias train --resume %s %s`",
            path, ", ".join(edits), LAST, path.parent, " ".join(edit.replace("'", "") for edit in edits),
        )  # fmt: skip
