"""benchmarks/gpu.py: on a CPU-only machine it says so and exits 0; with --allow-cpu every section runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "CUDA_VISIBLE_DEVICES": ""}
# the coco config (a ViT backbone) made small; the demo-based tests/tiny.py does not apply to it
BENCHMARK_MODEL = [
    "data.image_size=32",
    "model.slot_dim=32",
    "model.slot_attention.mlp_dim=64",
    "model.decoder.num_layers=1",
]


def _gpu_benchmark(*argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), *argv]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600, check=False)


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    result = _gpu_benchmark("--out", str(tmp_path / "gpu.md"))
    assert result.returncode == 0, result.stderr
    assert "no GPU present" in result.stdout and not (tmp_path / "gpu.md").exists()


@pytest.mark.slow
def test_every_section_runs_on_the_cpu_when_allowed(tmp_path):
    overrides = [item for override in BENCHMARK_MODEL for item in ("--override", override)]
    out = tmp_path / "gpu.md"
    result = _gpu_benchmark(
        "--allow-cpu", "--config", str(REPO / "configs" / "demo.yaml"), *overrides, "--batch-size", "2",
        "--steps", "1", "--rounds", "1", "--images", "8", "--cache-images", "4", "--workers", "0",
        "--precisions", "fp32", "--modes", "eager", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    for row in ("| dias fp32 features eager |", "| dias fp32 backbone eager |", "| 0 |", "`dias eval`, cached tokens"):
        assert row in text
    assert "failed" not in text and "official step was skipped" in text
