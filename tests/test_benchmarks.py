"""Every harness in benchmarks/ runs, at a tiny size, and prints or writes its table.

Each runs as a user runs it (`python benchmarks/NAME.py ...` in a subprocess), except where only the
measured function is cheap enough for the default run (train_step's `measure`, imported). A harness that
needs something from outside the repository reads its path from an environment variable, and its test is
skipped without it.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_config

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES
from dias.data.synthetic import prepare_synthetic
from dias.train.loop import train

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "CUDA_VISIBLE_DEVICES": ""}
SMOOTHSA_OFFICIAL_ENV = "DIAS_SMOOTHSA_OFFICIAL"  # benchmarks/smoothsa_trajectory.py reads the same
# the coco config (a ViT backbone) made small; the demo-based tests/tiny.py does not apply to it
BENCHMARK_MODEL = [
    "data.image_size=32",
    "model.slot_dim=32",
    "model.slot_attention.mlp_dim=64",
    "model.decoder.num_layers=1",
]
# the demo config made small: 32 px, a 4x4 token grid
SMALL_DEMO = [
    "data.image_size=32",
    "model.backbone.patch_size=8",
    "model.slot_dim=32",
    "model.slot_attention.mlp_dim=64",
    "model.decoder.num_layers=1",
]


def _overrides(items: list[str]) -> list[str]:
    return [argument for item in items for argument in ("--override", item)]


def _benchmark(name: str, *argv: str, timeout: int = 600, returncode: int = 0) -> subprocess.CompletedProcess:
    """Run benchmarks/NAME with argv; it must exit with `returncode` (0: it succeeds)."""
    command = [sys.executable, str(BENCHMARKS / name), *argv]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=ENV, timeout=timeout, check=False)
    assert result.returncode == returncode, result.stderr[-3000:]
    return result


def test_gpu_without_a_gpu_says_so_and_exits_0(tmp_path):
    result = _benchmark("gpu.py", "--out", str(tmp_path / "gpu.md"))
    assert "no GPU present" in result.stdout and not (tmp_path / "gpu.md").exists()


@pytest.mark.slow
def test_gpu_smoke_runs_every_path_and_refuses_the_cuda_only_ones(tmp_path):
    """--smoke without a GPU: each path once at a tiny size on the CPU (a few minutes: it compiles one step)."""
    out = tmp_path / "gpu.md"
    _benchmark("gpu.py", "--smoke", "--out", str(out))
    text = out.read_text()
    for row in (
        "| dias fp32 features eager | ",
        "| dias bf16 features compiled | ",
        "| 0 | ",
        "`dias eval`, cached tokens",
    ):
        assert row in text
    for cuda_only in ("tf32 features eager", "fp16 features eager", "fp16 features compiled", "fp16 backbone eager"):
        assert f"| dias {cuda_only} | n/a: no CUDA |" in text
    assert text.count("| dias |") == 2  # the video step of both methods
    assert "failed" not in text and "Error" not in text


@pytest.fixture
def train_step(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("train_step")


@pytest.mark.parametrize("variant", ["baseline fp32", "dias fp32", "dias fp32 + backbone"])
def test_train_step_measures_the_package_step_and_the_plain_baseline(train_step, variant):
    row = train_step.measure(variant, str(REPO / "configs" / "demo.yaml"), SMALL_DEMO, batch_size=2, steps=1)
    assert row["variant"] == variant and row["ms"] > 0 and row["gflop"] > 0


@pytest.mark.slow
def test_train_step_prints_its_table(tmp_path):
    result = _benchmark(
        "train_step.py", "--config", str(REPO / "configs" / "demo.yaml"), *_overrides(SMALL_DEMO), "--batch-sizes",
        "2", "--steps", "1", "--rounds", "1", "--gemm-size", "64", "--variants", "baseline fp32", "dias fp32",
        "dias bf16",
    )  # fmt: skip
    rows = {line.split(" | ")[0].strip("| "): line for line in result.stdout.splitlines() if line.startswith("| ")}
    for variant in ("baseline fp32", "dias fp32", "dias bf16"):
        assert rows[variant].startswith(f"| {variant} | 2 |")
    # as each command runs: the package's rows with malloc keeping freed memory, the plain baseline without
    assert rows["dias fp32"].endswith("| kept |") and rows["dias bf16"].endswith("| kept |")
    assert rows["baseline fp32"].endswith("| default |")
    assert "--malloc as-run" in result.stdout and "failed" not in result.stdout


@pytest.mark.slow
def test_train_step_paired_runs_each_variant_with_both_malloc_settings():
    result = _benchmark(
        "train_step.py", "--config", str(REPO / "configs" / "demo.yaml"), *_overrides(SMALL_DEMO), "--batch-sizes",
        "2", "--steps", "1", "--rounds", "1", "--gemm-size", "64", "--variants", "baseline fp32", "dias fp32",
        "--malloc", "paired",
    )  # fmt: skip
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| baseline fp32 |", "| dias fp32 |"))]
    assert [row.split(" | ")[0] + " " + row.split(" | ")[-1] for row in rows] == [
        "| baseline fp32 kept |", "| baseline fp32 default |", "| dias fp32 kept |", "| dias fp32 default |",
    ]  # fmt: skip
    # the ratio is to the baseline as a user runs it, with the C library's malloc
    assert rows[1].split(" | ")[4] == "1.00x" and "failed" not in result.stdout


def test_metrics_prints_a_row_per_metric():
    result = _benchmark(
        "metrics.py", "--num-images", "8", "--batch-size", "4", "--size", "32", "--num-slots", "3",
        "--model-images", "0",
    )  # fmt: skip
    for row in ("| ARI |", "| FG-ARI |", "| mBO |", "| mIoU |", "| all four, `score` (one table) |"):
        assert row in result.stdout


def test_prepare_synthetic_prints_its_rate():
    result = _benchmark("prepare_synthetic.py", "--num-images", "4", "--size", "32", "--workers", "1")
    assert "| 4 | 32 |" in result.stdout


def test_features_cache_measures_build_and_evaluation_rates(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    features_cache = importlib.import_module("features_cache")
    config = str(REPO / "configs" / "demo.yaml")
    rates = features_cache.measure(config, num_images=4, views=1, batch_size=4, overrides=tuple(SMALL_DEMO))
    assert set(rates) == {"build", "live backbone", "cached tokens"} and min(rates.values()) > 0


@pytest.mark.slow
def test_features_cache_prints_its_table():
    result = _benchmark(
        "features_cache.py", "--config", str(REPO / "configs" / "demo.yaml"), *_overrides(SMALL_DEMO),
        "--num-images", "4", "--batch-size", "4",
    )  # fmt: skip
    for row in ("| cache build", "| evaluation, live backbone |", "| evaluation, cached tokens |"):
        assert row in result.stdout


def test_demo_model_curves_reads_the_bundled_logs(tmp_path):
    out = tmp_path / "curves.md"
    result = _benchmark("demo_model_curves.py", "--out", str(out))
    text = out.read_text()
    assert text == result.stdout
    assert text.startswith("# The demo model's runs (the bundled colour model's logs) against their baselines")
    assert "| 30,000 |" in text and "**+" in text  # the bundled model's mean meets the target at its end
    assert "seed 42 30,000, seed 43 30,000, seed 44 30,000" in text


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory) -> Path:
    """A few scenes at the demo's 128 px, for the harnesses that score the bundled demo model."""
    root = tmp_path_factory.mktemp("synthetic128")
    prepare_synthetic(root, num_train=8, num_val=4, size=128, seed=5, num_workers=1, progress=False)
    return root


def test_probe_demo_writes_its_table(tmp_path, small_synthetic):
    out = tmp_path / "probe.md"
    _benchmark(
        "probe_demo.py", "--steps", "1", "--data", str(small_synthetic), "--out", str(out), "--override",
        "probe.batch_size=4",
    )  # fmt: skip
    text = out.read_text()
    assert "# The recognition probe on the bundled colour demo model" in text and "probe steps" in text


def test_eval_speed_times_each_part_of_evaluation(tmp_path, small_synthetic):
    out = tmp_path / "eval_speed.md"
    _benchmark(
        "eval_speed.py", "--data", str(small_synthetic), "--images", "4", "--batch-size", "2", "--rounds", "1",
        "--precisions", "fp32", "--out", str(out),
    )  # fmt: skip
    rows = [line for line in out.read_text().splitlines() if line.startswith("| images")]
    assert [row.split(" | ")[2] for row in rows] == ["model + baselines", "model only"]
    for row in rows:
        cells = [float(cell) for cell in row.strip("| ").split(" | ")[3:]]
        assert cells[0] > 0 and all(value >= 0 for value in cells[1:6])  # images/s; to device .. baseline partitions
    only = [float(cell) for cell in rows[1].strip("| ").split(" | ")[3:]]
    assert only[5] == 0  # the model alone draws no baseline partition


def test_precision_auto_checks_a_run_against_each_pair_of_fp32_seeds(tmp_path):
    """The bundled seed-42 log as the 'bf16' run: it is one of the reference runs, so it follows all three."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REPO / "src" / "dias" / "demo_model_dinov2" / "log-seed42.jsonl", run / "metrics.jsonl")
    out = tmp_path / "precision_auto.md"
    _benchmark("precision_auto.py", str(run), "--out", str(out))
    text = out.read_text()
    assert text.count("| bf16 |") == 3 and text.count("| fp32 seed") == 6  # 3 pairs x 2 runs, then 3 last scores
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| seed 43, seed 44 |")]
    assert [row[1] for row in rows] == ["fp32 seed 42", "bf16"] and rows[0][2:] == rows[1][2:]  # the same log
    assert "as `dias demo` checks): 60/60 · 60/60 · 60/60, follows." in text  # against itself among others: all in


def test_precision_auto_takes_fp32_run_folders_as_its_reference(tmp_path):
    """Three fp32 runs from folders (the bundled logs copied), the bf16 run a fourth copy of one of them."""
    logs = REPO / "src" / "dias" / "demo_model_dinov2"
    runs = []
    for name, seed in (("a", 42), ("b", 43), ("c", 44), ("bf16", 43)):
        (tmp_path / name).mkdir()
        shutil.copy(logs / f"log-seed{seed}.jsonl", tmp_path / name / "metrics.jsonl")
        runs.append(str(tmp_path / name))
    out = tmp_path / "precision.md"
    _benchmark("precision_auto.py", runs[3], "--reference", *runs[:3], "--title", "three folders", "--out", str(out))
    text = out.read_text()
    assert text.startswith("# bf16 training against fp32: three folders, 6,000 of 6,000 steps")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| a, c |")]
    assert [row[1] for row in rows] == ["fp32 b", "bf16"] and rows[0][2:] == rows[1][2:]  # bf16 is b's log
    assert "All 3 fp32 runs as the reference (as `dias demo` checks): 60/60 · 60/60 · 60/60, follows." in text
    result = _benchmark("precision_auto.py", runs[3], "--reference", *runs[:2], timeout=120, returncode=2)
    assert "needs three fp32 runs or more" in result.stderr


def test_precision_video_trains_three_fp32_seeds_and_a_bf16_run_then_compares_them(tmp_path):
    """The whole check at a tiny size: 4 + 2 videos of 32 px, the colour-code backbone, 2 steps per run."""
    out = tmp_path / "precision_video.md"
    tiny = [
        "model.backbone.name=colour_codes", "model.backbone.weights=null", "model.backbone.patch_size=8",
        "model.slot_dim=32", "model.slot_attention.mlp_dim=64", "model.decoder.num_layers=1",
    ]  # fmt: skip
    argv = [
        "precision_video.py", "--method", "randsfq", "--steps", "2", "--workdir", str(tmp_path / "work"),
        "--num-train", "4", "--num-val", "2", "--size", "32", "--out", str(out), *_overrides(tiny),
    ]  # fmt: skip
    _benchmark(*argv)
    text = out.read_text()
    assert text.startswith("# bf16 training against fp32: RandSF.Q on synthetic video")
    assert text.count("| bf16 |") == 3 and "| fp32 seed 42 | 2 |" in text and "| bf16 (seed 42) | 2 |" in text
    runs = tmp_path / "work" / "runs" / "randsfq"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["bf16-42", "fp32-42", "fp32-43", "fp32-44"]
    before = (runs / "fp32-43" / "metrics.jsonl").stat().st_mtime_ns
    _benchmark(*argv)  # finished runs are kept, not trained again
    assert (runs / "fp32-43" / "metrics.jsonl").stat().st_mtime_ns == before


@pytest.mark.slow
def test_ablation_prints_every_method_and_the_baselines_and_reuses_kept_runs(tiny_root, tmp_path):
    argv = [
        "ablation.py", "--steps", "2", "--seeds", "42", "--val-batches", "1", "--data", str(tiny_root),
        "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
        *_overrides([*SMALL_DEMO, "data.batch_size=4", "data.num_workers=0", "model.num_slots=4"]),
    ]  # fmt: skip
    result = _benchmark(*argv, "--methods", "dias-r")
    assert "| dias_r (release) |" in result.stdout and "| SmoothSA | not run yet |" in result.stdout
    kept = sorted(p.name for p in (tmp_path / "results" / "ablation").iterdir())
    assert kept == ["dias-r-42.json"]
    kept_path = tmp_path / "results" / "ablation" / "dias-r-42.json"
    record = json.loads(kept_path.read_text())
    assert record["config"] == "src/dias/configs/demo.yaml"  # the packaged default, named without this machine's path
    assert 0 <= record["scores"]["spread"] <= 2  # a cosine distance
    del record["scores"]["spread"]  # as a run kept before the spread was measured
    kept_path.write_text(json.dumps(record))
    result = _benchmark(*argv)  # the dias_r run is kept, the other three are trained
    assert "dias_r (release), seed 42" not in result.stdout and "SmoothSA, seed 42" in result.stdout
    assert 0 <= json.loads(kept_path.read_text())["scores"]["spread"] <= 2  # measured from its checkpoint
    assert "slot spread |" in result.stdout
    for row in ("| slot attention (no distillation) |", "| dias_r (release) |", "| full DIAS", "| SmoothSA |"):
        assert row in (tmp_path / "results" / "ablation.md").read_text()
    assert "k-means" in result.stdout.lower()


def test_prune_at_inference_scores_a_run_as_trained_and_pruned(tmp_path, tiny_root):
    run = tmp_path / "run"
    train(tiny_config(tiny_root, "train.total_steps=2", "train.val_every=2"), run, progress=False)
    out = tmp_path / "prune.md"
    _benchmark(
        "prune_at_inference.py", str(run), "--thresholds", "0", "0.05", "2.0", "--min-clusters", "1", "--out", str(out)
    )
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:] for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| setting")}  # fmt: skip
    assert list(rows) == [
        "as trained", "re-initialized iteration at inference, threshold 0 (nothing merges)",
        "pruned at inference, threshold 0.05", "pruned at inference, threshold 2",
        *(BASELINE_TITLES[name] for name in BASELINE_NAMES),
    ]  # fmt: skip
    for cells in rows.values():
        assert 0 <= float(cells[0].split(" ± ")[0]) <= 100 and 0 <= float(cells[1].split(" ± ")[0]) <= 100
    assert rows["pruned at inference, threshold 2"][2] == "1.00"  # every slot merged into one
    assert float(rows["as trained"][2]) > 1


def test_slot_usage_and_curves_read_a_finished_run(tmp_path, tiny_root):
    run = tmp_path / "run-42"
    train(tiny_config(tiny_root, "train.total_steps=2", "train.val_every=2"), run, progress=False)
    out = tmp_path / "usage.md"
    _benchmark("slot_usage.py", str(run), "--val-batches", "1", "--out", str(out))
    row = next(line for line in out.read_text().splitlines() if line.startswith(f"| {run} |"))
    cells = row.strip("| ").split(" | ")
    assert cells[1] == "2"  # the step of the last validation
    for pair in cells[2:5]:  # the model's, the grid's and k-means' FG-ARI / mBO
        assert all(0 <= float(value) <= 100 for value in pair.split(" / "))
    active, segments = (float(value) for value in cells[5].split(" / "))
    assert 1 <= active <= 7 and segments >= 1
    assert 0 <= float(cells[6]) <= 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _benchmark("slot_usage.py", str(empty), timeout=120, returncode=1)
    assert "has no last.pt" in result.stderr
    unvalidated = tmp_path / "unvalidated"  # a checkpoint whose log has no validation record
    unvalidated.mkdir()
    shutil.copy(run / "last.pt", unvalidated / "last.pt")
    records = (run / "metrics.jsonl").read_text().splitlines()
    (unvalidated / "metrics.jsonl").write_text("".join(f"{r}\n" for r in records if "val/fg_ari" not in r))
    result = _benchmark("slot_usage.py", str(unvalidated), "--out", str(tmp_path / "none.md"), returncode=1)
    assert "logged no validation" in result.stderr and not (tmp_path / "none.md").exists()
    curves = tmp_path / "curves.md"
    _benchmark(
        "demo_model_curves.py", "--runs", str(tmp_path / "run"), "--seeds", "42", "--every", "1", "--out", str(curves)
    )
    text = curves.read_text()
    assert text.startswith(f"# Training runs {tmp_path / 'run'}-SEED against their baselines")
    assert "| 2 |" in text and "seed 42 2." in text


def test_demo_run_times_dias_demo_in_a_fresh_clone(tmp_path, small_synthetic):
    out = tmp_path / "demo_run.md"
    _benchmark(
        "demo_run.py", "--out", str(out), "--", "--train-only", "--minutes", "0.05", "--data", str(small_synthetic)
    )
    text = out.read_text()
    assert "in a fresh clone" in text and "Wall time:" in text


@pytest.mark.skipif(not os.environ.get(SMOOTHSA_OFFICIAL_ENV), reason=f"set {SMOOTHSA_OFFICIAL_ENV} to a checkout")
def test_smoothsa_trajectory_replays_the_official_steps(tmp_path):
    out = tmp_path / "trajectory.md"
    _benchmark(
        "smoothsa_trajectory.py", "--steps", "2", "--batch-size", "2", "--record-to", str(tmp_path / "record.pt"),
        "--out", str(out),
    )  # fmt: skip
    assert "training steps of the package against the official release" in out.read_text()


def test_video_step_times_both_video_methods(tmp_path):
    """One clip of 2 frames; the official rows only where DIAS_SMOOTHSA_OFFICIAL / DIAS_RANDSFQ_OFFICIAL are set."""
    out = tmp_path / "video_step.md"
    _benchmark(
        "video_step.py", "--batch-size", "1", "--frames", "2", "--steps", "1", "--rounds", "1", "--gemm-size", "64",
        "--bf16", "--out", str(out),
    )  # fmt: skip
    text = out.read_text()
    assert text.count("| dias |") == 2 and "### smoothsa-video" in text and "### randsfq" in text
    assert text.count("| dias bf16 |") == 2 and "ours in bf16 autocast" in text
    assert "the same malloc setting (freed memory kept, as the dias command has it" in text
    for env in ("DIAS_SMOOTHSA_OFFICIAL", "DIAS_RANDSFQ_OFFICIAL"):
        assert (f"{env} is not set" in text) != bool(os.environ.get(env))


def test_video_synthetic_writes_both_methods_beside_the_baselines(tmp_path):
    """One step of each video method on 4 + 2 generated videos of 3 frames of 32 px."""
    out = tmp_path / "video_synthetic.md"
    _benchmark(
        "video_synthetic.py", "--steps", "1", "--seeds", "42", "--data", str(tmp_path / "video"), "--num-train", "4",
        "--num-val", "2", "--frames", "3", "--size", "32", "--clip-length", "2", "--batch-size", "2", "--slot-dim",
        "32", "--out", str(out),
    )  # fmt: skip
    text = out.read_text()
    for row in ("| SmoothSA-video |", "| RandSF.Q |", "| fixed grid", "| fixed Voronoi", "| k-means"):
        assert row in text
    assert "VideoSAUR FG-ARI" in text and "per-frame mBO" in text


def test_features_speed_prints_a_row_per_precision_and_batch_size(tmp_path):
    out = tmp_path / "speed.md"
    result = _benchmark(
        "features_speed.py", "--image-size", "28", "--batch-sizes", "1", "2", "--rounds", "1", "--out", str(out)
    )
    assert "| fp32 | 1 |" in result.stdout and "| fp32 | 2 |" in result.stdout and "2 x 2 x 384 tokens" in result.stdout
    assert out.read_text() == result.stdout


def test_step_profile_writes_a_row_per_part(tmp_path):
    out = tmp_path / "profile.md"
    _benchmark(
        "step_profile.py", "--config", str(REPO / "configs" / "demo.yaml"), *_overrides(SMALL_DEMO), "--batch-sizes",
        "2", "--repeats", "1", "--gemm-size", "64", "--clock", "cpu", "--out", str(out),
    )  # fmt: skip
    text = out.read_text()
    for row in (
        "| encoder projection | forward |",
        "| slot attention: each further iteration (x2) | backward |",
        "| decoder self-attention (x1) | backward |",
        "| decoder MLP (x1) | forward |",
        "| losses | backward |",
        "| Adam step |",
        "| **whole step** |",
    ):
        assert row in text
    assert "furthest from the ceiling:" in text and "malloc kept" in text  # as `dias train` has it


def test_step_profile_splits_a_video_step_by_frame_and_part(tmp_path):
    """SmoothSA-video as configured for MOVi-C (conditional on boxes), made small: 2 clips of 3 frames."""
    out = tmp_path / "profile.md"
    small_video = [
        *SMALL_DEMO, "model.backbone.name=colour_codes", "model.backbone.weights=null", "model.num_slots=3",
        "data.clip_length=3", "data.max_objects=3", "model.initializer.ffn_dim=64",
    ]  # fmt: skip
    _benchmark(
        "step_profile.py", "--config", str(REPO / "configs" / "smoothsa-video-movi-c.yaml"), *_overrides(small_video),
        "--batch-sizes", "2", "--repeats", "1", "--gemm-size", "64", "--clock", "cpu", "--malloc", "system", "--out",
        str(out),
    )  # fmt: skip
    text = out.read_text()
    assert "## Batch 2 clips x 3 frames" in text and "malloc default" in text
    for row in (
        "| encoder projection (3 frames) | forward |",
        "| slot attention: frame 0 (3 iterations) | backward |",
        "| slot attention: each later frame (x2, 1 iteration) | forward |",
        "| transitioner: each later frame (x2) | backward |",
        "| decoder cross-attention (x1) | backward |",
        "| losses | backward |",
        "| **whole step** |",
    ):
        assert row in text


def test_precision_rule_writes_a_row_per_onednn_cap(tmp_path):
    """The small demo model's step under two caps; below bf16's instructions the probe is skipped and auto is fp32."""
    out = tmp_path / "rule.md"
    _benchmark(
        "precision_rule.py", "--caps", "ALL", "AVX512_CORE", "--config", str(REPO / "configs" / "demo.yaml"),
        *_overrides(SMALL_DEMO), "--batch-size", "2", "--steps", "1", "--rounds", "1", "--threads", "1",
        "--out", str(out),
    )  # fmt: skip
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith(("| ALL ", "| AVX512"))]
    assert [row[0] for row in rows] == ["| ALL", "| AVX512_CORE"]
    capped = rows[1]
    assert capped[1:3] == ["no bf16 instructions", "fp32"] and float(capped[3]) > 0 and float(capped[4]) > 0
    assert capped[6] == ("yes |" if float(capped[4]) > float(capped[3]) else "**no** |")  # auto vs the faster one


def test_benchmarks_name_an_instruction_set_cap(monkeypatch):
    """A figure measured with capped instruction sets says so in its header."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    machine = importlib.import_module("machine")
    for name in machine.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    plain = machine.cpu_name()
    assert "capped" not in plain
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert machine.cpu_name() == f"{plain}, capped: MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"


def test_flop_counter_counts_the_cpu_attention_kernel(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    flops = importlib.import_module("flops")
    q = torch.randn(2, 4, 16, 8, requires_grad=True)
    with flops.flop_counter() as counter:
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == 4 * 2 * 4 * 16 * 16 * 8  # q k^T and attn v: 2 products of 2 N^2 d each
    with flops.flop_counter() as counter:
        out.sum().backward()
    assert counter.get_total_flops() > 0
