"""The training loop: every shipped config trains, exact resume, bad runs stop cleanly, the CLI."""

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest
import torch
from tiny import TINY, signal_after_adam, tiny_config

import dias.methods.dias.method as dias_method
import dias.train.validate as evaluate_module
import dias.train.window as window_module
from dias.baselines import BASELINE_NAMES
from dias.cli import main
from dias.commands.train import run_train
from dias.config import load_config
from dias.data.codec import record_key
from dias.data.sampling import EpochSampler
from dias.methods.dias.method import draw_reinit
from dias.runtime.lock import FolderInUseError
from dias.schema import NAMED_WEIGHTS
from dias.train.checkpoint import LAST, CheckpointError, load_checkpoint
from dias.train.log import read_metrics
from dias.train.loop import train
from dias.train.resume import load_resume
from dias.train.window import NonFiniteLossError

REPO = Path(__file__).resolve().parents[2]
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _resumed(run, overrides=(), **kwargs):
    """train() continuing `run` from its last.pt, read once by load_resume."""
    cfg, checkpoint = load_resume(run, overrides)
    return train(cfg, run, resume=checkpoint, **kwargs)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_trains_two_steps(path, tiny_root, tiny_video_root, tmp_path):
    vit = ["data.image_size=56", "model.backbone.input_scale=1.0", "data.batch_size=2", "model.decoder.num_layers=1"]
    overrides = [*TINY, f"data.root={tiny_root}", "train.total_steps=2", "train.val_every=2", "optim.warmup_steps=0"]
    if path.name != "demo.yaml":
        overrides = [*overrides, *vit, "model.slot_dim=32", "eval.batch_size=2"]
    if load_config(path).model.method.video:  # synthetic-video: K = 6 objects, 4-frame videos cut into 3 and 2
        video = ["data.name=synthetic_video", "model.num_slots=6", "data.clip_length=3", "data.eval_clip_length=2"]
        overrides = [*overrides, f"data.root={tiny_video_root}", *video]
    if load_config(path).model.backbone.weights in NAMED_WEIGHTS:  # offline: the same ViT, randomly drawn
        overrides = [*overrides, "model.backbone.weights=null"]
    cfg = load_config(path, overrides)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.status == "done" and result.step == 2
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert set(result.val) >= {"fg_ari", "mbo"}
    checkpoint = load_checkpoint(tmp_path / "run" / LAST)
    assert checkpoint["step"] == 2
    assert not any(k.startswith("backbone.") for k in checkpoint["model"])
    assert (tmp_path / "run" / "config.yaml").is_file()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_run_repeats_the_uninterrupted_losses_exactly(num_workers, tiny_root, tmp_path):
    # 16 images / batch 4: the 6 steps cross an epoch boundary; the resume lands mid-epoch.
    overrides = ["train.total_steps=6", "optim.warmup_steps=2", "train.val_every=100", "train.checkpoint_every=100"]
    cfg = tiny_config(tiny_root, *overrides, f"data.num_workers={num_workers}")
    straight = train(cfg, tmp_path / "straight", progress=False)
    first = train(cfg, tmp_path / "resumed", max_steps=3, progress=False)
    assert first.status == "stopped" and load_checkpoint(tmp_path / "resumed" / LAST)["step"] == 3
    second = _resumed(tmp_path / "resumed", progress=False)
    assert second.step == 6
    assert first.losses + second.losses == straight.losses
    logged = [r["loss"] for r in read_metrics(tmp_path / "resumed") if "loss" in r]
    assert logged == [r["loss"] for r in read_metrics(tmp_path / "straight") if "loss" in r]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


def test_resume_refuses_a_config_with_another_model(tiny_root, tmp_path):
    train(tiny_config(tiny_root, "train.total_steps=1"), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="model.slot_dim"):
        load_resume(tmp_path / "run", ["model.slot_dim=16"])
    assert main(["train", "--resume", str(tmp_path / "run"), "model.num_slots=3"]) == 1
    with pytest.raises(FileExistsError, match="--resume"):
        run_train(REPO / "configs" / "demo.yaml", [*TINY, f"data.root={tiny_root}"], out_dir=tmp_path / "run")


def _poison(monkeypatch, *, nan_at: int | None = None, interrupt_at: int | None = None) -> None:
    """Make the reconstruction loss of step `nan_at` NaN, and press Ctrl-C (SIGINT) mid-forward of `interrupt_at`."""
    real = dias_method.reconstruction_loss
    calls = []

    def poisoned(recon, features):
        calls.append(1)
        if len(calls) - 1 == interrupt_at:
            signal.raise_signal(signal.SIGINT)
        loss = real(recon, features)
        return loss * float("nan") if len(calls) - 1 == nan_at else loss

    monkeypatch.setattr(dias_method, "reconstruction_loss", poisoned)


@pytest.mark.parametrize(
    ("log_every", "checkpoint_every", "nan_at", "last_step"),
    [
        (1, 2, 3, 2),  # a sync every step: stops at once
        (4, 2, 3, 2),  # NaN mid-window: the checkpoint due at step 4 is never written with the NaN weights
        (4, 3, 1, None),  # the checkpoint due at step 3 reads the window first: no checkpoint at all
    ],
)
def test_nan_loss_stops_before_a_checkpoint_holds_its_weights(
    tiny_root, tmp_path, monkeypatch, log_every, checkpoint_every, nan_at, last_step
):
    cfg = tiny_config(
        tiny_root, "train.total_steps=8", f"log.every={log_every}", f"train.checkpoint_every={checkpoint_every}",
        "train.val_every=100",
    )  # fmt: skip
    _poison(monkeypatch, nan_at=nan_at)
    with pytest.raises(NonFiniteLossError, match=f"at step {nan_at};"):
        train(cfg, tmp_path / "run", progress=False)
    _assert_last_checkpoint_is_finite(tmp_path / "run", last_step)
    metrics = tmp_path / "run" / "metrics.jsonl"
    logged = [row for row in read_metrics(tmp_path / "run") if "loss" in row] if metrics.exists() else []
    assert all(row["step"] <= nan_at and math.isfinite(row["loss"]) for row in logged)


def _assert_last_checkpoint_is_finite(run, last_step: int | None) -> None:
    """No last.pt when last_step is None; else last.pt is at last_step and holds only finite weights."""
    if last_step is None:
        assert not (run / LAST).exists()
        return
    checkpoint = load_checkpoint(run / LAST)
    assert checkpoint["step"] == last_step
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def _poison_grad(monkeypatch, nan_at: int) -> None:
    """Write NaN into one parameter's gradient at step `nan_at`, after backward: the loss itself stays finite."""
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def poisoned(params, *args, **kwargs):
        params = list(params)
        if len(calls) == nan_at:
            params[0].grad.fill_(float("nan"))
        calls.append(1)
        return real(params, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("nan_at", "last_step"), [(1, None), (2, 2)])
def test_nan_gradient_with_a_finite_loss_stops_before_a_checkpoint_holds_its_weights(
    tiny_root, tmp_path, monkeypatch, precision, nan_at, last_step
):
    cfg = tiny_config(
        tiny_root, "train.total_steps=8", "log.every=4", "train.checkpoint_every=2", "train.val_every=100",
        f"train.precision={precision}",
    )  # fmt: skip
    _poison_grad(monkeypatch, nan_at)
    with pytest.raises(NonFiniteLossError, match=f"gradient norm is nan .*at step {nan_at};"):
        train(cfg, tmp_path / "run", progress=False)
    _assert_last_checkpoint_is_finite(tmp_path / "run", last_step)


def test_ctrl_c_after_a_nan_in_the_window_does_not_save(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_root, "train.total_steps=8", "log.every=5", "train.checkpoint_every=100")
    _poison(monkeypatch, nan_at=1, interrupt_at=3)
    with pytest.raises(NonFiniteLossError, match="at step 1;"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / LAST).exists()


def test_the_host_reads_the_losses_once_per_window(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_config(
        tiny_root, "train.total_steps=10", "log.every=4", "train.checkpoint_every=100", "train.val_every=100"
    )
    reads = []
    real_read = window_module.StatsWindow.read

    def counted(self, dist_info, *, timed_out=False):
        reads.append(self.first_step + len(self._pending))  # steps done at the read
        return real_read(self, dist_info, timed_out=timed_out)

    monkeypatch.setattr(window_module.StatsWindow, "read", counted)
    result = train(cfg, tmp_path / "run", progress=False)
    assert reads == [4, 8, 10]  # log.every, then the last step (log, validation and checkpoint share it)
    assert len(result.losses) == 10 and all(math.isfinite(loss) for loss in result.losses)
    assert [row["step"] for row in read_metrics(tmp_path / "run") if "loss" in row] == [4, 8, 10]


def test_time_limit_is_checked_at_the_window_sync(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, "train.total_steps=20", "log.every=3", "train.val_every=100")
    result = train(cfg, tmp_path / "run", time_limit=0.0, progress=False)
    assert result.status == "stopped" and result.step == 3
    assert load_checkpoint(tmp_path / "run" / LAST)["step"] == 3


def test_ctrl_c_finishes_the_step_saves_a_checkpoint_and_returns(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_root, "train.total_steps=6", "train.checkpoint_every=100", "train.val_every=100")
    _poison(monkeypatch, interrupt_at=2)
    before = signal.getsignal(signal.SIGINT)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.status == "interrupted" and result.step == 3 and len(result.losses) == 3
    checkpoint = load_checkpoint(tmp_path / "run" / LAST)
    assert checkpoint["step"] == 3 and checkpoint["data"] == {"epoch": 0, "batches": 3}
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")], ids=["ctrl_c", "sigterm"]
)
def test_a_stop_between_adam_and_the_step_count_resumes_like_an_uninterrupted_run(
    tiny_root, tmp_path, monkeypatch, signum, status
):
    overrides = ["train.total_steps=6", "optim.warmup_steps=2", "train.val_every=100", "train.checkpoint_every=100"]
    cfg = tiny_config(tiny_root, *overrides)
    straight = train(cfg, tmp_path / "straight", progress=False)
    signal_after_adam(monkeypatch, [signum], at=2)
    first = train(cfg, tmp_path / "stopped", progress=False)
    assert first.status == status and first.step == 3
    checkpoint = load_checkpoint(tmp_path / "stopped" / LAST)
    adam_steps = {int(state["step"]) for state in checkpoint["optimizer"]["state"].values()}
    assert checkpoint["step"] == 3 and adam_steps == {3}  # the step count is the optimizer steps done
    monkeypatch.undo()
    second = _resumed(tmp_path / "stopped", progress=False)
    assert second.status == "done" and second.step == 6
    assert first.losses + second.losses == straight.losses  # no batch trained twice, none skipped
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


def test_a_second_ctrl_c_aborts_at_once(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_root, "train.total_steps=6", "train.checkpoint_every=2", "train.val_every=100")
    signal_after_adam(monkeypatch, [signal.SIGINT, signal.SIGINT], at=2)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / LAST)["step"] == 2  # the last regular checkpoint, intact
    assert signal.getsignal(signal.SIGINT) is before


def test_failed_save_leaves_the_previous_checkpoint_intact(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_root, "train.total_steps=4", "train.checkpoint_every=2", "train.val_every=100")
    real_save = torch.save
    saves = []

    def disk_full(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) >= 2:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        OSError, match="could not save the step 4 checkpoint: could not write .*: no space left on the disk holding"
    ):
        train(cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "run" / LAST)["step"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".tmp") == []


@pytest.mark.slow
def test_loss_decreases_on_a_tiny_set(tiny_root, tmp_path):
    cfg = tiny_config(
        tiny_root,
        "train.total_steps=30",
        "optim.warmup_steps=3",
        "optim.lr=1e-3",
        "model.method.distill_weight=0.0",
        "train.val_every=100",
        "train.checkpoint_every=100",
    )
    losses = train(cfg, tmp_path / "run", progress=False).losses
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


@pytest.mark.slow
def test_compiled_training_follows_the_eager_losses(tiny_root, tmp_path):
    overrides = ["train.total_steps=3", "optim.warmup_steps=1", "train.val_every=100", "train.checkpoint_every=100"]
    eager = train(tiny_config(tiny_root, *overrides), tmp_path / "eager", progress=False)
    # the eager random streams; inductor's own patch (a monkeypatch's undo deletes the key from its config module)
    with torch._inductor.config.patch(fallback_random=True):
        cfg = tiny_config(tiny_root, *overrides, "train.compile=true")
        compiled = train(cfg, tmp_path / "compiled", progress=False)
    assert compiled.step == 3
    torch.testing.assert_close(torch.tensor(compiled.losses), torch.tensor(eager.losses), rtol=1e-4, atol=1e-5)
    assert not any(k.startswith("_orig_mod") for k in load_checkpoint(tmp_path / "compiled" / LAST)["model"])


def test_sampler_splits_ranks_and_resumes_mid_epoch():
    full = list(EpochSampler(10, batch_size=2, seed=1))
    sampler = EpochSampler(10, batch_size=2, seed=1)
    sampler.set_position(0, 3)
    assert list(sampler) == full[6:]
    ranks = [list(EpochSampler(10, 2, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    assert not {i for _, i in ranks[0]} & {i for _, i in ranks[1]}
    with pytest.raises(ValueError, match="batch_size"):
        EpochSampler(3, batch_size=4, seed=0)


def test_cli_train_writes_a_run(tiny_root, tmp_path):
    args = ["train", "--config", str(REPO / "configs" / "demo.yaml"), "--out", str(tmp_path / "run")]
    assert main([*args, *TINY, f"data.root={tiny_root}", "train.total_steps=2"]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r] == [1, 2]
    assert main(["train", "--resume", str(tmp_path / "run"), "train.total_steps=3"]) == 0
    assert load_checkpoint(tmp_path / "run" / LAST)["step"] == 3


def test_sigterm_saves_last_pt_and_the_run_resumes(tiny_root, tmp_path):
    run = tmp_path / "run"
    endless = ["train.total_steps=100000", "train.checkpoint_every=100000", "train.val_every=100000"]
    args = ["train", "--config", str(REPO / "configs" / "demo.yaml"), "--out", str(run), *TINY, *endless]
    argv = [sys.executable, "-m", "dias", *args, f"data.root={tiny_root}", "data.num_workers=2"]
    # A session of its own: the SIGTERM goes to the whole process group, workers included, as SLURM sends it.
    process = subprocess.Popen(argv, env=SUBPROCESS_ENV, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "metrics.jsonl").exists() and len(read_metrics(run)) >= 2):
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGTERM)
        stderr = process.communicate(timeout=120)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, stderr[-2000:]
    assert f"dias train --resume {run}" in stderr
    step = load_checkpoint(run / LAST)["step"]
    assert step >= 2
    resumed = _resumed(run, max_steps=step + 1, progress=False)
    assert resumed.step == step + 1


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(tiny_root, "train.total_steps=1", "train.val_every=100"), run, progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from dias.runtime.lock import FolderLock\nwith FolderLock({str(run)!r}):\n"
         "    print('locked', flush=True)\n    input()"],
        env=SUBPROCESS_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        log_before = (run / "metrics.jsonl").read_bytes()
        with pytest.raises(FolderInUseError, match=f"PID {holder.pid}"):
            _resumed(run, progress=False)
        assert main(["train", "--resume", str(run), "train.total_steps=2"]) == 1
        assert f"in use by another dias process (PID {holder.pid})" in capsys.readouterr().err
        assert (run / "metrics.jsonl").read_bytes() == log_before and load_checkpoint(run / LAST)["step"] == 1
    finally:
        holder.communicate("\n", timeout=60)
    assert main(["train", "--resume", str(run), "train.total_steps=2"]) == 0  # free again once the holder ends


def test_a_new_run_starts_a_clean_log_and_removes_stale_temp_files(tiny_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # What a run killed before its first checkpoint, and killed saves, leave behind.
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 95)))
    stale = [run / ".last.pt.k2j4h5g1.tmp", run / ".best.pt.a1b2c3d4.tmp", run / ".metrics.jsonl.x9y8z7w6.tmp"]
    for path in stale:
        path.write_bytes(b"partial save")
    foreign = run / ".notes.abc.tmp"  # not of our naming pattern: kept
    foreign.write_bytes(b"keep")
    overrides = [*TINY, f"data.root={tiny_root}", "train.total_steps=2", "train.val_every=100"]
    run_train(REPO / "configs" / "demo.yaml", overrides, out_dir=run)
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2]
    assert max(r["step"] for r in read_metrics(run)) == 2
    assert not any(path.exists() for path in stale) and foreign.exists()


def test_resuming_with_other_total_steps_warns_naming_the_schedules(tiny_root, tmp_path, caplog):
    run = tmp_path / "run"
    train(tiny_config(tiny_root, "train.total_steps=2", "train.val_every=100"), run, max_steps=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="dias.train"):
        _resumed(run, max_steps=1, progress=False)
        assert "train.total_steps changes" not in caplog.text
        _resumed(run, ["train.total_steps=5"], max_steps=1, progress=False)
    assert "train.total_steps changes from 2" in caplog.text and "to 5" in caplog.text
    assert "LR schedule" in caplog.text and "the method's schedules" in caplog.text


def test_the_trainer_draws_the_reinit_coin_from_the_scheduled_probability():
    assert draw_reinit(load_config(REPO / "configs" / "dias-coco.yaml"), 0) is None  # no re-initialization
    full = REPO / "configs" / "dias-full-coco.yaml"
    assert draw_reinit(load_config(full, ["model.method.reinit.prob=0.0"]), 10) is False
    assert draw_reinit(
        load_config(full, ["model.method.reinit.prob=1.0", "model.method.reinit.prob_schedule=constant"]), 0
    )
    ramp = load_config(
        full, ["model.method.reinit.prob=1.0", "model.method.reinit.prob_schedule=linear", "train.total_steps=10"]
    )
    torch.manual_seed(0)
    assert not any(draw_reinit(ramp, 0) for _ in range(20))  # the linear ramp starts at 0
    assert sum(draw_reinit(ramp, 5) for _ in range(400)) in range(150, 250)  # p = 0.5 half-way


@pytest.mark.slow
def test_compile_trains_a_full_dias_config(tiny_root, tmp_path):
    """train.compile=true with pruning + re-initialization: the coin is an argument, not drawn in forward."""
    vit = ["data.image_size=56", "model.backbone.input_scale=1.0", "data.batch_size=2", "model.decoder.num_layers=1"]
    overrides = [*TINY, *vit, f"data.root={tiny_root}", "model.slot_dim=32", "train.total_steps=3", "train.val_every=3"]
    overrides += ["eval.batch_size=2", "optim.warmup_steps=0", "model.method.reinit.prob=0.5", "train.compile=true"]
    result = train(load_config(REPO / "configs" / "dias-full-coco.yaml", overrides), tmp_path / "run", progress=False)
    assert result.status == "done" and result.step == 3 and all(map(math.isfinite, result.losses))


def test_skipped_corrupt_records_are_counted_and_warned(tiny_root, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.lmdb", "val.lmdb"):
        shutil.copy(tiny_root / name, data / name)
    env = lmdb.open(str(data / "train.lmdb"), subdir=False, lock=False)
    with env.begin(write=True) as txn:  # flip a payload byte of record 3: its CRC no longer matches
        value = bytearray(txn.get(record_key(3)))
        value[-3] ^= 0xFF
        txn.put(record_key(3), bytes(value))
    env.close()
    cfg = tiny_config(data, "train.total_steps=4", "train.val_every=100", "data.skip_corrupt=true")
    with caplog.at_level(logging.WARNING, logger="dias.train"):
        result = train(cfg, tmp_path / "run", progress=False)  # 4 batches of 4: one epoch, record 3 included
    assert result.status == "done" and result.num_skipped == 1
    assert "skipped 1 corrupt records of this batch (data.skip_corrupt=true); 1 so far" in caplog.text


def test_sigterm_during_validation_stops_it_between_batches(tiny_root, tmp_path, monkeypatch):
    scored = []

    def score_then_sigterm(*args, **kwargs):
        if not scored:
            signal.raise_signal(signal.SIGTERM)
        scored.append(1)
        return real_score(*args, **kwargs)

    real_score = evaluate_module.score
    monkeypatch.setattr(evaluate_module, "score", score_then_sigterm)
    cfg = tiny_config(tiny_root, "train.total_steps=2", "train.val_every=2", "eval.batch_size=1")  # 4 val batches
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.status == "terminated" and result.val == {}
    assert len(scored) == 1 + len(BASELINE_NAMES)  # the first batch only: the model and each baseline
    assert load_checkpoint(tmp_path / "run" / LAST)["step"] == 2
    assert not [r for r in read_metrics(tmp_path / "run") if "val/fg_ari" in r]


def test_resume_names_the_run_folder_when_given_a_file_or_a_folder_without_last_pt(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(tiny_root, "train.total_steps=1", "train.val_every=100"), run, progress=False)
    assert main(["train", "--resume", str(run / LAST)]) == 1
    assert f"--resume takes a run folder, not a file: pass --resume {run}" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 1
    assert f"{tmp_path} holds no last.pt" in capsys.readouterr().err


def test_hand_edits_to_a_runs_config_yaml_are_named_on_resume(tiny_root, tmp_path, caplog):
    run = tmp_path / "run"
    train(tiny_config(tiny_root, "train.total_steps=1", "train.val_every=100"), run, progress=False)
    config = run / "config.yaml"
    text = config.read_text()
    config.write_text(text.replace("lr: 0.0004", "lr: 0.01").replace("every: 1\n", "every: 7\n"))
    with caplog.at_level(logging.WARNING, logger="dias.train"):
        _resumed(run, ["log.every=7", "train.total_steps=2"], progress=False)  # log.every: also an override
    assert "config.yaml was edited by hand (optim.lr=0.01)" in caplog.text
    assert f"`dias train --resume {run} optim.lr=0.01`" in caplog.text
    assert "lr: 0.0004" in config.read_text()


def test_adam_takes_its_fused_kernel_on_the_cpu_with_the_config_s_settings():
    from dias.train.step import build_optimizer

    optim = tiny_config(None, "optim.weight_decay=0.01").optim
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = build_optimizer([param], optim, torch.device("cpu"))
    group = optimizer.param_groups[0]
    assert group["fused"] and group["betas"] == tuple(optim.betas) and group["weight_decay"] == 0.01
    param.grad = torch.ones(3)
    group["lr"] = 0.1
    optimizer.step()  # Adam's first step moves each weight by lr * sign(grad), weight decay aside
    assert torch.allclose(param.detach(), torch.full((3,), 1 - 0.1), atol=2e-3)
