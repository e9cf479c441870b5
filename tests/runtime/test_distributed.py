"""DDP on CPU: two gloo processes started by torchrun train a few steps and end with equal weights."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY, TINY_VIDEO

from dias.runtime.device import Precision
from dias.runtime.distributed import DistInfo, all_reduce_sum_, init_distributed, shared_precision
from dias.train.log import read_metrics

REPO = Path(__file__).resolve().parents[2]

WORKER = """import logging
logging.basicConfig(level=logging.INFO)
import sys, torch
from dias.config import load_config
from dias.train.loop import train
root, run_dir, out = sys.argv[1:4]
TINY = TINY_OVERRIDES
overrides = [*TINY, "data.batch_size=2", "train.total_steps=3", "optim.warmup_steps=1", "train.val_every=100",
             f"data.root={root}", *sys.argv[5:]]
result = train(load_config(sys.argv[4], overrides), run_dir, progress=False)
rank = __import__("os").environ["RANK"]
torch.save({k: v for k, v in result.model.state_dict().items()}, f"{out}/rank{rank}.pt")
"""


def _run_two_ranks(
    worker: str, root, tmp_path, extra: tuple[str, ...] = (), config: str = "demo.yaml"
) -> subprocess.CompletedProcess:
    """torchrun `worker` (argv: data root, run folder, output folder, `config`, `extra`) on two gloo ranks."""
    script = tmp_path / "worker.py"
    script.write_text(worker.replace("TINY_OVERRIDES", repr(TINY)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [str(script), str(root), str(tmp_path / "run"), str(tmp_path), str(REPO / "configs" / config), *extra]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=180)


def test_single_process_helpers_are_no_ops():
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, torch.device("cpu")) and info.is_main and not info.enabled
    assert all_reduce_sum_(torch.tensor([2.0]), info).tolist() == [2.0]
    assert shared_precision(Precision("bf16", "cpu"), info) == Precision("bf16", "cpu")


def test_ranks_whose_bf16_probes_disagree_all_train_in_fp32(tiny_root, tmp_path):
    """Rank 0's probe finds bf16 fast, rank 1's does not: both train in fp32, with one warning."""
    patch = "import os, dias.runtime.device as d\nd.cpu_has_fast_bf16 = lambda: os.environ['RANK'] == '0'\n"
    result = _run_two_ranks(patch + WORKER, tiny_root, tmp_path, ("train.precision=auto",))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 resolved bf16, another rank fp32: every rank trains in fp32" in result.stderr
    assert "rank 1 resolved" not in result.stderr


SMOOTHSA = ("model.method=smoothsa", "model.initializer=preheated", "model.slot_attention.truncate=bi-level", "loss={}")


@pytest.mark.parametrize("method", [(), SMOOTHSA], ids=["dias", "smoothsa"])
def test_two_gloo_ranks_end_with_equal_weights(method, tiny_root, tmp_path):
    result = _run_two_ranks(WORKER, tiny_root, tmp_path, method)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "effective batch 4" in result.stderr
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r] == [1, 2, 3]  # rank 0 logs once


def test_two_gloo_ranks_train_a_video_method_to_equal_weights(tiny_video_root, tmp_path):
    extra = (*TINY_VIDEO, "data.batch_size=2", "data.eval_clip_length=2")  # after the worker's image overrides
    result = _run_two_ranks(WORKER, tiny_video_root, tmp_path, extra, config="randsfq-ytvis.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "effective batch 4" in result.stderr
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert "transitioner.time_embed.weight" in rank0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


SIGTERM_WORKER = """import os, signal, sys, torch
from dias.config import load_config
from dias.train import loop as train_module
root, run_dir, out = sys.argv[1:4]
TINY = TINY_OVERRIDES
overrides = [*TINY, "data.batch_size=2", "train.total_steps=12", "log.every=4", "optim.warmup_steps=1",
             "train.val_every=100", "train.checkpoint_every=100", f"data.root={root}"]
step_function = train_module.optimisation_step
calls = []

def step_then_signal(*args, **kwargs):  # rank 0 alone is signalled, after its second step
    stats = step_function(*args, **kwargs)
    calls.append(1)
    if os.environ["RANK"] == "0" and len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return stats

train_module.optimisation_step = step_then_signal
result = train_module.train(load_config(sys.argv[4], overrides), run_dir, progress=False)
torch.save({"status": result.status, "step": result.step}, f"{out}/rank{os.environ['RANK']}.pt")
"""


def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(tiny_root, tmp_path):
    result = _run_two_ranks(SIGTERM_WORKER, tiny_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]  # no rank hangs in a collective the other left
    ends = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ends == [{"status": "terminated", "step": 4}] * 2  # agreed at the window read of step 4
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 4 and len(checkpoint["rng"]) == 2  # both ranks' RNG states: an exact resume
