"""A full disk, on a real small filesystem: one line naming the disk and what is left, then a clean resume."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from tiny import TINY

from dias.cli import main
from dias.data.records import LmdbReader, partial_path, split_path
from dias.io import atomic_write, atomic_write_bytes
from dias.train.checkpoint import load_checkpoint

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def fill(folder: Path, leave: int = 0) -> Path:
    """Write zeros into FOLDER/filler until its disk is full, then free `leave` bytes; delete it to free all."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(bytes(1 << 12))
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size - leave))
    return filler


def one_line(capsys) -> str:
    """The one error line on stderr (progress bars may be there too), and no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("dias: error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


def test_an_atomic_write_torch_save_onto_a_full_disk_keeps_the_old_file(small_disk):
    path = atomic_write_bytes(small_disk / "state.pt", b"old")
    fill(small_disk)
    # torch.save reports ENOSPC as a RuntimeError from its zip writer, with the OSError as its context.
    with pytest.raises(OSError, match=r"no space left on the disk holding .*; the previous state.pt is intact"):
        atomic_write(path, lambda f: torch.save({"weights": torch.zeros(1 << 20)}, f))
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "state.pt"]


def test_a_checkpoint_save_onto_a_full_disk_is_one_line_and_keeps_last_pt(tiny_root, small_disk, capsys):
    run = small_disk / "run"
    args = ["train", "--config", str(DEMO_CONFIG), "--out", str(run), *TINY, f"data.root={tiny_root}"]
    assert main([*args, "train.total_steps=2", "train.val_every=100"]) == 0
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    fill(small_disk, leave=len(before) // 2)  # room for the log, not for a checkpoint
    assert main(["train", "--resume", str(run), "train.total_steps=4"]) == 1
    err = one_line(capsys)
    assert "could not save the step 4 checkpoint" in err and "no space left on the disk holding" in err
    assert "is intact" in err
    assert (run / "last.pt").read_bytes() == before and load_checkpoint(run / "last.pt")["step"] == 2


def test_a_new_run_onto_a_full_disk_is_one_line(tiny_root, small_disk, capsys):
    fill(small_disk)
    args = ["train", "--config", str(DEMO_CONFIG), "--out", str(small_disk / "run"), *TINY, f"data.root={tiny_root}"]
    assert main([*args, "train.total_steps=2"]) == 1
    assert "no space left on the disk holding" in one_line(capsys)


def test_prepare_onto_a_full_disk_is_one_line_and_a_rerun_resumes(small_disk, capsys):
    filler = fill(small_disk, leave=64 << 10)  # the train split's records take about 0.2 MiB
    out = small_disk / "data"
    args = ["prepare", "synthetic", "--out", str(out), "--workers", "1", "--num-train", "64", "--num-val", "4"]
    assert main([*args, "--size", "32"]) == 1
    err = one_line(capsys)
    assert f"could not write {partial_path(split_path(out, 'train'))}: no space left on the disk holding" in err
    assert "the same command run again resumes" in err
    filler.unlink()
    assert main([*args, "--size", "32"]) == 0
    with LmdbReader(split_path(out, "train")) as reader:
        assert len(reader) == 64


def test_features_onto_a_full_disk_is_one_line(tiny_root, small_disk, capsys):
    fill(small_disk)
    args = ["features", "--config", str(DEMO_CONFIG), "--out", str(small_disk / "cache"), "--device", "cpu"]
    assert main([*args, *TINY, f"data.root={tiny_root}"]) == 1
    assert "no space left on the disk holding" in one_line(capsys)
