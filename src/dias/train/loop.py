"""The training loop of every method: plain PyTorch, one process or torchrun DDP, exact resume.

    result = train(load_config("configs/demo.yaml"), run_dir="runs/demo")
    cfg, checkpoint = load_resume("runs/demo")  # dias.train.resume
    result = train(cfg, run_dir="runs/demo", resume=checkpoint)

A call reads as setup (build the Run: model, optimizer, scaler, loaders; restore it from last.pt) -> the steps
-> finish (the stop report). Per step: data -> schedules (lr, the method's plan) -> the optimisation step
(autocast forward, the method's objective, backward, clip, Adam: step.py) -> window read -> log -> eval ->
checkpoint. The step's losses stay on the device; the host reads them once per `log.every` steps
(window.py), and that one sync also checks them for NaN (the loss, and the gradient norm unless fp16 loss
scaling skips such steps) and checks the time limit. It comes before every checkpoint and validation, so a
non-finite step stops the run, naming it, before any checkpoint holds the weights it changed.
run_dir/last.pt holds everything a resumed run needs (trainable weights, optimizer, grad scaler, every
rank's RNG states, the data position), so on CPU a resumed run's losses equal an uninterrupted run's exactly.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dias.config import CONFIG_FILE_NAME, save_config
from dias.methods import method_of
from dias.methods.base import SlotModel
from dias.runtime import distributed
from dias.runtime.device import resolve_precision
from dias.runtime.lock import FolderInUseError, FolderLock, remove_stale_temp_files
from dias.schedules import lr_at
from dias.schema import Config, val_every, warmup_steps
from dias.train.checkpoint import BEST, LAST, load_checkpoint
from dias.train.features import batch_inputs
from dias.train.loaders import batches, build_loaders
from dias.train.log import METRICS_FILE_NAME, MetricsLogger, read_metrics
from dias.train.resume import restore
from dias.train.state import Run, seed_everything
from dias.train.step import build_optimizer, optimisation_step
from dias.train.stop import STOP_STATUSES, StopRequest
from dias.train.validate import baseline_part, validate
from dias.train.window import StatsWindow
from dias.version import __version__

log = logging.getLogger(__name__)
VAL_SCORE_KEY = "val/fg_ari"  # a metrics.jsonl record of a validation holds it


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


@dataclass
class Session:
    """One call of train(): where it stops, the statistics window, the logs, the stop request and the result."""

    stop_at: int  # total_steps or max_steps; the time limit, or a signal under torchrun, brings it forward
    time_limit: float | None
    validate_every: int
    warmup: int  # the LR warm-up, in steps
    window: StatsWindow
    logger: MetricsLogger
    bar: tqdm
    result: TrainResult
    start_time: float
    window_time: float  # when the current log window began
    stop: StopRequest = field(default_factory=StopRequest)
    val_baselines: dict[str, float] | None = None  # validation's baseline means, once scored

    def __enter__(self) -> Session:
        """From here on Ctrl-C and SIGTERM set stop.status; on the way out the bar and the logs close."""
        self.stop.install()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.restore()
        self.bar.close()
        self.logger.close()


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
        with _lock(run_dir, dist_info):
            run = setup(cfg, run_dir, dist_info, checkpoint)
            session = begin(
                run, fresh=checkpoint is None, max_steps=max_steps, time_limit=time_limit, progress=progress
            )
            with session:  # Ctrl-C and SIGTERM now stop at a step boundary
                train_steps(run, session)
                finish(run, session)
            return session.result
    finally:
        distributed.shutdown_distributed(dist_info)


@contextlib.contextmanager
def _lock(run_dir: Path, dist_info: distributed.DistInfo) -> Iterator[None]:
    """Rank 0 holds run_dir's lock throughout; when it cannot, every rank raises FolderInUseError together."""
    with contextlib.ExitStack() as stack:
        refused = None
        if dist_info.is_main:  # only rank 0 writes the run folder
            try:
                stack.enter_context(FolderLock(run_dir))
            except FolderInUseError as exc:
                refused = exc
        if distributed.all_reduce_any(refused is not None, dist_info):  # every rank stops together
            raise refused or FolderInUseError(f"rank 0 could not lock {run_dir}; see its error")
        yield


def setup(cfg: Config, run_dir: Path, dist_info: distributed.DistInfo, resume: dict | None) -> Run:
    """Build the run, restore it from the checkpoint `resume` (or seed each rank afresh), save its config."""
    device, is_main = dist_info.device, dist_info.is_main
    if is_main:  # holding the lock: no save of this run is in flight, so these are a killed process's
        remove_stale_temp_files(run_dir, (LAST, BEST, CONFIG_FILE_NAME, METRICS_FILE_NAME))
    seed_everything(cfg.train.seed)  # every rank builds the same model (a random ViT backbone included)
    method = method_of(cfg)
    model = method.build_model(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, device)
    precision = distributed.shared_precision(resolve_precision(cfg.train.precision, device), dist_info)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    train_loader, sampler, val_loader = build_loaders(cfg, dist_info)
    run = Run(
        cfg, run_dir, dist_info, method, model, forward_model=model, params=params, optimizer=optimizer,
        scaler=scaler, precision=precision, train_loader=train_loader, sampler=sampler, val_loader=val_loader,
    )  # fmt: skip
    if resume is not None:
        restore(run, resume)
    else:
        seed_everything(cfg.train.seed + dist_info.rank)  # each rank draws its own noise
    if is_main:
        save_config(cfg, run_dir / CONFIG_FILE_NAME)
        log.info(
            "training on %s, %d rank(s) x batch %d = effective batch %d, %d trainable parameters, dias %s",
            device, dist_info.world_size, cfg.data.batch_size, cfg.data.batch_size * dist_info.world_size,
            sum(p.numel() for p in params), __version__,
        )  # fmt: skip
    if dist_info.enabled:  # gradients are averaged over the ranks in backward
        run.forward_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:  # the compiled wrapper shares the parameters; checkpoints keep the plain names
        run.forward_model = torch.compile(run.forward_model)
    return run


def begin(run: Run, *, fresh: bool, max_steps: int | None, time_limit: float | None, progress: bool) -> Session:
    """This call's bookkeeping, from the run's step on; `fresh` (a new run) starts metrics.jsonl empty."""
    cfg, is_main = run.cfg, run.dist_info.is_main
    logger = MetricsLogger(run.run_dir, cfg, enabled=is_main, fresh=fresh)
    result = TrainResult(run.model, run.step, "done", best_fg_ari=run.best)
    stop_at = cfg.train.total_steps if max_steps is None else min(cfg.train.total_steps, max_steps)
    # a time budget ends the run before train.total_steps: the bar then counts steps against the clock
    total, desc = (stop_at, "train") if time_limit is None else (None, f"train ({time_limit / 60:.3g} min)")
    bar = tqdm(total=total, initial=run.step, disable=not (progress and is_main), desc=desc)
    start_time = time.monotonic()
    return Session(
        stop_at=stop_at, time_limit=time_limit, validate_every=val_every(cfg), warmup=warmup_steps(cfg),
        window=StatsWindow(
            run.method.stat_names, first_step=run.step, loss_scaled=run.precision.scaled, precision=run.precision.name
        ),
        logger=logger, bar=bar, result=result, start_time=start_time, window_time=start_time,
    )  # fmt: skip


def train_steps(run: Run, session: Session) -> None:
    """The loop: data -> schedules -> step -> window read -> log -> eval -> checkpoint, to stop_at or a signal."""
    cfg, optim = run.cfg, run.cfg.optim
    if _validation_missed(run, session):  # a signal stopped the validation of the step a resume starts from
        log.info("step %d: validating, as the run stopped before its validation of this step was done", run.step)
        _validate_and_keep_best(run, session)
    run.model.train()
    data = batches(run.train_loader, run.sampler, run.epoch, run.consumed)
    # A signal only sets stop.status; the loop looks at it here, between steps, so the weights, optimizer,
    # step count, data position and RNG it saves all belong to the same step. Under torchrun the ranks
    # may see a signal at different steps, so they agree on it at the next window read instead (below).
    while run.step < session.stop_at and (session.stop.status is None or run.dist_info.enabled):
        # data: data.skip_corrupt drops corrupt records, and counts them aloud
        batch, next_epoch, next_consumed = next(data)
        if batch.get("num_skipped"):
            _count_skipped(run, session, batch["num_skipped"])
        if "index" not in batch:  # every record of the batch was corrupt and skipped
            run.epoch, run.consumed = next_epoch, next_consumed
            continue
        # images (B, 3, H, W) uint8 or cached features (B, N, C); clips (B, T, 3, H, W) and boxes (B, T, K, 4)
        inputs = batch_inputs(batch, run.dist_info.device, boxes=getattr(run.model, "conditional", False))

        # schedules: set before the step, so step 0 trains with lr 0 (as in the release); the method's plan
        # holds its loss weights and forward options (DIAS: the distillation ramp, the re-initialization coin)
        lr = lr_at(run.step, optim.lr, session.warmup, cfg.train.total_steps, optim.lr * optim.final_lr_ratio)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        plan = run.method.plan(cfg, run.step)

        # step: forward, objective, backward, clip, Adam; no host sync
        stats = optimisation_step(
            run.forward_model, inputs, method=run.method, plan=plan, cfg=cfg, optimizer=run.optimizer,
            scaler=run.scaler, params=run.params, precision=run.precision,
        )  # fmt: skip
        session.window.add(stats)
        run.step += 1
        run.epoch, run.consumed = next_epoch, next_consumed
        session.bar.update()
        step = run.step

        # window read: the window's one sync, before anything is logged or saved
        val_due = step % session.validate_every == 0 or step == cfg.train.total_steps
        log_due = step % cfg.log.every == 0 or step == session.stop_at
        if log_due or val_due or step % cfg.train.checkpoint_every == 0:
            _read_window(run, session)

        # log
        if session.window.num_read and (step % cfg.log.every == 0 or step == session.stop_at):
            _log_window(run, session, logged=plan.logged, lr=lr)

        # eval
        if val_due:
            _validate_and_keep_best(run, session)

        # checkpoint
        if step % cfg.train.checkpoint_every == 0 or step == session.stop_at:
            run.checkpoint(LAST)


def finish(run: Run, session: Session) -> None:
    """The result's status and step; after a signal, last.pt of this step and how to continue, in words."""
    result, stopped = session.result, session.stop.status
    result.status = stopped or ("done" if run.step >= run.cfg.train.total_steps else "stopped")
    if stopped is not None and run.step < session.stop_at:  # one process, stopped early: last.pt is not yet this step's
        result.losses.extend(session.window.read(None)[0])  # the steps since the last read: NaN-free or raise
        log.warning("%s at step %d; saving %s", result.status, run.step, run.run_dir / LAST)
        run.checkpoint(LAST)
    elif stopped is not None:
        log.warning("%s at step %d; saved %s", result.status, run.step, run.run_dir / LAST)
    if stopped is not None and run.dist_info.is_main:
        log.warning("continue with `dias train --resume %s`", run.run_dir)
    result.step, result.best_fg_ari = run.step, run.best


def _count_skipped(run: Run, session: Session, num_skipped: int) -> None:
    session.result.num_skipped += num_skipped
    log.warning(
        "step %d: skipped %d corrupt records of this batch (data.skip_corrupt=true); %d so far",
        run.step, num_skipped, session.result.num_skipped,
    )  # fmt: skip


def _read_window(run: Run, session: Session) -> None:
    """The window's one host sync: NaN check of loss and gradient (raises), losses kept, time limit, signals."""
    timed_out = session.time_limit is not None and time.monotonic() - session.start_time > session.time_limit
    losses, timed_out = session.window.read(run.dist_info, timed_out=timed_out)
    session.result.losses.extend(losses)
    if timed_out:
        session.stop_at = run.step  # the time limit: log, checkpoint and stop now
    if run.dist_info.enabled and distributed.all_reduce_any(session.stop.status is not None, run.dist_info):
        session.stop.status = session.stop.status or STOP_STATUSES[signal.SIGTERM]  # a signal reached another rank
        session.stop_at = run.step  # every rank checkpoints this step together, then stops


def _log_window(run: Run, session: Session, *, logged: dict[str, float], lr: float) -> None:
    """The means of the steps read since the last log, the plan's logged values, lr and speed."""
    now = time.monotonic()
    count = session.window.num_read
    metrics = {**session.window.take_means(), **logged, "lr": lr}
    metrics["steps_per_s"] = count / (now - session.window_time)
    session.logger.log(metrics, run.step)
    session.bar.set_postfix(loss=f"{metrics['loss']:.4f}", steps_per_s=f"{metrics['steps_per_s']:.2f}")
    session.window_time = now


def _validation_missed(run: Run, session: Session) -> bool:
    """Whether the step a resumed run starts from was due a validation that metrics.jsonl does not hold."""
    step = run.step
    due = step % session.validate_every == 0 or step == run.cfg.train.total_steps
    if step == 0 or not due or not (run.run_dir / METRICS_FILE_NAME).is_file():
        return False
    return not any(r["step"] == step and VAL_SCORE_KEY in r for r in read_metrics(run.run_dir))


def _validate_and_keep_best(run: Run, session: Session) -> None:
    """Validate on rank 0 and log it; every rank saves best.pt together when FG-ARI improved."""
    cfg, is_main, step = run.cfg, run.dist_info.is_main, run.step
    val = None
    if is_main:  # a signal stops validation between batches (val None): the checkpoint comes first
        val = validate(
            run.model, run.val_loader, mask_source=cfg.eval.mask_source, seed=cfg.eval.seed,
            device=run.dist_info.device, precision=cfg.eval.precision, baselines=session.val_baselines,
            should_stop=lambda: session.stop.status is not None,
        )  # fmt: skip
    if val is not None:
        session.result.val = val
        session.val_baselines = baseline_part(val)  # the same at every validation: scored once
        session.logger.log({f"val/{k}": v for k, v in val.items()}, step)
        log.info("step %d validation: %s", step, _format(val))
    elif is_main:
        log.warning("step %d: validation stopped part-way by %s; not scored", step, session.stop.status)
    improved = val is not None and val.get("fg_ari", -math.inf) > run.best
    if distributed.all_reduce_any(improved, run.dist_info):
        run.best = session.result.val["fg_ari"] if is_main else run.best
        run.checkpoint(BEST)
    distributed.barrier(run.dist_info)


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
