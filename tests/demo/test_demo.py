"""`dias demo`: the bundled model is scored, and the fresh-training check says "follows" or "does not", rightly."""

import json
import logging
import math
import re
import shutil
from pathlib import Path

import pytest
from tiny import signal_after_adam, tiny_config

import dias.demo.run as demo_run
import dias.methods.dias.method as dias_method
from dias.cli import main
from dias.config import load_config
from dias.demo.follow import compare_to_reference
from dias.demo.reference import bundled_reference_dir, load_reference, package_reference
from dias.demo.run import (
    AUTO_MINUTES,
    BUNDLED_DIR_NAME,
    CHECK_FILE_NAME,
    FRESH_DIR_NAME,
    MARKER_FILE_NAME,
    demo_config_path,
    run_demo,
)
from dias.errors import MissingFileError, UsageError
from dias.io import file_sha256
from dias.train.checkpoint import LAST, CheckpointError, load_checkpoint
from dias.train.log import MetricsLogError, read_metrics
from dias.train.loop import train
from dias.viz.gallery import REPORT_FILE_NAME

REPO = Path(__file__).resolve().parents[2]
# The tiny reference: three seeds of a 30-step run whose loss clearly falls (short warm-up, high LR).
REFERENCE_RUN = ["train.total_steps=30", "optim.warmup_steps=2", "optim.lr=2e-3", "train.val_every=15"]
REFERENCE_RUN += ["eval.batch_size=4"]
REFERENCE_SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def tiny_reference(tiny_root, tmp_path_factory):
    """A reference folder packaged from three tiny runs (seeds 1, 2, 3), the first one scored."""
    base = tmp_path_factory.mktemp("reference")
    runs = []
    for seed in REFERENCE_SEEDS:
        run = base / f"run-{seed}"
        train(tiny_config(tiny_root, *REFERENCE_RUN, f"train.seed={seed}"), run, progress=False)
        runs.append(run)
    assert main(["eval", "--checkpoint", str(runs[0] / LAST), "--out", str(runs[0] / "eval-val")]) == 0
    package_reference(runs, base / "reference")
    return base / "reference"


def _fresh(tmp_path, tiny_root, tiny_reference, *overrides):
    return run_demo(
        tmp_path / "demo", None, list(overrides), mode="train", data_dir=tiny_root, reference=tiny_reference,
        progress=False,
    )  # fmt: skip


def test_a_correct_training_with_another_seed_follows_the_reference(tmp_path, tiny_root, tiny_reference):
    summary = _fresh(tmp_path, tiny_root, tiny_reference, "train.seed=4")
    check = summary["check"]
    assert check.follows is True, check.table()
    assert check.verdict.startswith("your training follows the reference run")
    assert {p.key for p in check.points} == {"loss", "val/fg_ari", "val/mbo"}
    assert max(p.step for p in check.points) == 30 and summary["bundled"] is None
    saved = json.loads((tmp_path / "demo" / FRESH_DIR_NAME / CHECK_FILE_NAME).read_text())
    assert saved["follows"] is True and len(saved["points"]) == len(check.points)


def test_a_demo_whose_first_steps_took_long_trains_less_and_says_so(
    tmp_path, tiny_root, tiny_reference, monkeypatch, caplog
):
    monkeypatch.setattr(demo_run, "DEMO_MINUTES", 2.5)  # as if the weights, data and tokens took 7.5 minutes
    with caplog.at_level(logging.WARNING, logger="dias.demo.run"):
        run_demo(
            tmp_path / "demo", AUTO_MINUTES, mode="train", data_dir=tiny_root, reference=tiny_reference, progress=False
        )
    assert re.search(r"it trains for 1\.\d instead of 7, so that the demo ends within 2", caplog.text), caplog.text


def test_a_learning_rate_a_million_times_too_small_does_not_follow(tmp_path, tiny_root, tiny_reference):
    check = _fresh(tmp_path, tiny_root, tiny_reference, "optim.lr=2e-9")["check"]
    assert check.follows is False
    assert check.verdict.startswith("it does not: step ") and ", loss " in check.verdict and " ± " in check.verdict


def test_a_training_with_the_loss_sign_flipped_does_not_follow(tmp_path, tiny_root, tiny_reference, monkeypatch):
    real = dias_method.reconstruction_loss
    monkeypatch.setattr(dias_method, "reconstruction_loss", lambda recon, features: -real(recon, features))
    check = _fresh(tmp_path, tiny_root, tiny_reference)["check"]
    assert check.follows is False and check.failure.key == "loss"
    assert check.failure.value < check.failure.reference - check.failure.tolerance  # the loss went the wrong way


def test_a_diverging_training_gets_a_verdict_and_exit_3(tmp_path, tiny_root, tiny_reference, monkeypatch, capsys):
    real = dias_method.reconstruction_loss
    monkeypatch.setattr(dias_method, "reconstruction_loss", lambda recon, features: real(recon, features) * math.nan)
    out = tmp_path / "demo"
    demo = ["demo", "--train-only", "--out", str(out), "--data", str(tiny_root), "--reference", str(tiny_reference)]
    assert main(demo) == 3
    printed = capsys.readouterr()
    assert "it does not: the training diverged (loss is nan at step 0" in printed.out
    assert "train.precision=fp32" not in printed.out  # the tiny run is in fp32 already
    assert json.loads((out / FRESH_DIR_NAME / CHECK_FILE_NAME).read_text())["follows"] is False
    monkeypatch.undo()
    assert main([*demo, "train.total_steps=2"]) in (0, 3)  # the demo's own run: replaced, not refused


def test_a_time_budget_that_ends_before_the_first_comparison_trains_on_to_it(
    tmp_path, tiny_root, tiny_reference, caplog, capsys
):
    summary = run_demo(
        tmp_path / "demo", 1e-6, mode="train", data_dir=tiny_root, reference=tiny_reference, progress=True
    )  # a budget of a few microseconds: a machine far too slow
    check = summary["check"]
    assert check.follows is not None and summary["fresh"]["step"] == check.first_comparable_step
    assert "slower or busier than the demo expects" in caplog.text
    assert f"/{REFERENCE_RUN[0].split('=')[1]}" not in capsys.readouterr().err  # no bar counting to total_steps


def test_a_run_shorter_than_one_block_has_no_verdict(tiny_reference):
    check = compare_to_reference([{"step": 1, "loss": 1.0}], load_reference(tiny_reference).logs)
    assert check.follows is None and check.verdict.startswith("too few steps to compare")


def test_a_resumed_reference_log_counts_the_later_record_of_a_step(tiny_reference):
    """A resumed run logs the steps after its last checkpoint twice; the repeated windows must not void a block."""
    logs = load_reference(tiny_reference).logs
    resumed = {seed: [*log[:3], *log] for seed, log in logs.items()}  # the first windows logged twice
    fresh = logs[REFERENCE_SEEDS[0]]
    assert compare_to_reference(fresh, resumed).points == compare_to_reference(fresh, logs).points


def test_cli_demo_prints_both_tables_and_exits_3_when_the_training_does_not_follow(
    tmp_path, tiny_root, tiny_reference, capsys
):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--data", str(tiny_root), "--reference", str(tiny_reference), "--minutes", "0"]
    assert main([*args, "optim.lr=2e-9"]) == 3
    printed = capsys.readouterr().out
    assert "bundled demo model, val split" in printed and "k-means on the backbone tokens" in printed
    assert "| step | quantity | your run |" in printed and "it does not: step" in printed
    assert (out / BUNDLED_DIR_NAME / REPORT_FILE_NAME).is_file()
    assert main([*args, "--train-only", "train.seed=4"]) == 0
    assert "your training follows the reference run" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()  # the data folder given was used; nothing written outside --out


def test_the_bundled_model_scores_with_its_baselines_and_report(tmp_path, tiny_root):
    """The model shipped in the package loads and is scored (here on the tiny split, upscaled)."""
    summary = run_demo(tmp_path / "demo", mode="eval", data_dir=tiny_root, progress=False)
    bundled = summary["bundled"]
    assert set(bundled["metrics"]) == {"ari", "fg_ari", "mbo", "miou"}
    assert set(bundled["baselines"]) == {"grid", "voronoi", "kmeans"}
    assert bundled["report"].endswith(REPORT_FILE_NAME) and summary["check"] is None


def test_the_bundled_reference_is_the_demo_config_with_three_seeds():
    reference = load_reference()
    assert sorted(reference.logs) == [42, 43, 44]
    assert reference.card["weights"]["sha256"] == file_sha256(reference.weights)
    shipped = load_config(demo_config_path(), ["log.tensorboard=false", "train.out_dir=runs/demo"])
    assert load_config(demo_config_path()).train.total_steps == reference.config.train.total_steps
    assert reference.config.model == shipped.model and reference.config.optim == shipped.optim
    size = sum(path.stat().st_size for path in bundled_reference_dir().iterdir())
    assert size <= 20 * 2**20
    runs = reference.card["runs"]
    assert [run["step"] for run in runs] == [reference.config.train.total_steps] * 3  # every seed ran to its end
    mean = reference.card["mean_over_scored_runs"]
    assert mean["num_runs"] == 3
    for name, value in mean["metrics"].items():
        assert value == pytest.approx(sum(run["eval"]["metrics"][name] for run in runs) / 3)


def test_packaging_refuses_runs_of_different_configs(tiny_root, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    train(tiny_config(tiny_root, "train.total_steps=1"), runs[0], progress=False)
    train(tiny_config(tiny_root, "train.total_steps=1", "train.seed=2", "optim.lr=1e-3"), runs[1], progress=False)
    with pytest.raises(UsageError, match=r"optim\.lr"):
        package_reference(runs, tmp_path / "reference")


def test_packaging_that_fails_leaves_the_reference_as_it_was(tiny_reference, tmp_path):
    """A run without a checkpoint (still starting) is refused before any file of the old reference changes."""
    out = tmp_path / "reference"
    shutil.copytree(tiny_reference, out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    started = tmp_path / "started"
    started.mkdir()
    shutil.copyfile(tiny_reference / "config.yaml", started / "config.yaml")
    (started / "config.yaml").write_text(
        (started / "config.yaml").read_text(encoding="utf-8").replace("seed: 1", "seed: 9"), encoding="utf-8"
    )
    (started / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n', encoding="utf-8")
    with pytest.raises(CheckpointError, match="last.pt"):
        package_reference([tiny_reference.parent / "run-2", started], out)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_run_still_writing_its_log_packages_whole_records(tiny_reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_reference.parent / "run-1", run)
    whole = read_metrics(run)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 99, "lo')  # a record half written by the training
    assert read_metrics(run) == whole
    package_reference([run], tmp_path / "reference")
    assert load_reference(tmp_path / "reference").logs[1] == whole


def test_a_damaged_log_line_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(MetricsLogError, match="line 2"):
        read_metrics(tmp_path)


def test_a_missing_reference_file_is_named(tmp_path):
    with pytest.raises(MissingFileError, match="model.safetensors.*--reference"):
        load_reference(tmp_path)


def test_packaged_demo_config_matches_the_repository_copy():
    assert demo_config_path().read_bytes() == (REPO / "configs" / "demo.yaml").read_bytes()


def test_demo_never_replaces_a_run_it_did_not_make(tiny_root, tiny_reference, tmp_path, capsys):
    out = tmp_path / "demo"
    run = out / FRESH_DIR_NAME
    train(tiny_config(tiny_root, "train.total_steps=1", "train.val_every=100"), run, progress=False)
    before = {name: (run / name).read_bytes() for name in (LAST, "metrics.jsonl")}
    demo = ["demo", "--train-only", "--out", str(out), "--data", str(tiny_root), "--reference", str(tiny_reference)]
    demo += ["train.total_steps=2"]
    assert main(demo) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in before} == before
    assert main([*demo, "--overwrite"]) in (0, 3) and load_checkpoint(run / LAST)["step"] == 2
    assert json.loads((run / MARKER_FILE_NAME).read_text())["last_sha256"] == file_sha256(run / LAST)
    assert main(demo) in (0, 3)  # the demo's own, unchanged run is replaced
    assert main(["train", "--resume", str(run), "train.total_steps=3"]) == 0  # now it is no longer the demo's
    assert main(demo) == 1 and load_checkpoint(run / LAST)["step"] == 3


@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143)], ids=["ctrl_c", "sigterm"])
def test_a_fresh_training_stopped_by_a_signal_is_not_checked_and_exits_like_train(
    tiny_root, tiny_reference, tmp_path, monkeypatch, capsys, signum, code
):
    out = tmp_path / "demo"
    demo = ["demo", "--train-only", "--out", str(out), "--data", str(tiny_root), "--reference", str(tiny_reference)]
    signal_after_adam(monkeypatch, [signum], at=0)
    assert main(demo) == code
    assert "not checked" in capsys.readouterr().out
    assert load_checkpoint(out / FRESH_DIR_NAME / LAST)["step"] == 1
    assert json.loads((out / FRESH_DIR_NAME / MARKER_FILE_NAME).read_text())["step"] == 1  # still the demo's run
    assert not (out / FRESH_DIR_NAME / CHECK_FILE_NAME).exists()
    monkeypatch.undo()
    assert main([*demo, "--minutes", "0", "train.total_steps=2"]) in (0, 3)  # the next demo starts it afresh
    assert load_checkpoint(out / FRESH_DIR_NAME / LAST)["step"] == 2


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(UsageError, match="mode"):
        run_demo(tmp_path, mode="both")


def test_overrides_reach_the_fresh_training_and_the_reference_config_the_rest(tmp_path, tiny_root, tiny_reference):
    summary = _fresh(tmp_path, tiny_root, tiny_reference, "train.total_steps=10")
    assert summary["fresh"]["step"] == 10 and summary["fresh"]["status"] == "done"
    saved = load_config(tmp_path / "demo" / FRESH_DIR_NAME / "config.yaml")
    assert saved.optim.lr == 2e-3 and saved.model.slot_dim == 32 and saved.data.root == str(tiny_root)


def test_the_dinov2_models_fresh_training_takes_bf16_where_faster_unless_told(
    tmp_path, tiny_root, tiny_reference, monkeypatch
):
    """FRESH_SETTINGS: train.precision=auto for the DINOv2 model (bf16 on a CPU with bf16 instructions), fp32
    for the colour-code one, and the user's override wins."""
    monkeypatch.setattr(demo_run, "choose_reference", lambda reference, model: (model, load_reference(tiny_reference)))
    for model, overrides, expected in [
        ("dinov2", [], "auto"), ("dinov2", ["train.precision=fp32"], "fp32"), ("colour", [], "fp32")
    ]:  # fmt: skip
        out = tmp_path / f"{model}-{len(overrides)}"
        run_demo(
            out, None, [*overrides, "train.total_steps=2"], mode="train", model=model, data_dir=tiny_root,
            progress=False,
        )  # fmt: skip
        assert load_config(out / FRESH_DIR_NAME / "config.yaml").train.precision == expected
