"""The README's set-up commands are the ones CI runs, and every Python block in it runs as written."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dias.methods.dias.model import build_model
from dias.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start)


def test_quick_start_has_exactly_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _readme_commands()[1] in ci_lines


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_blocks():
    blocks = _python_blocks()
    assert len(blocks) >= 2 and any("dias.load(" in b for b in blocks) and any(".eval()" in b for b in blocks)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_every_readme_python_block_runs_as_written(index, tmp_path, monkeypatch, small_demo_config):
    """Each block runs in a folder holding what it names: configs/, a tiny demo run and a photo."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    torch.manual_seed(0)
    cfg = small_demo_config()
    save_checkpoint(tmp_path / "runs" / "demo" / "fresh" / "last.pt", build_model(cfg), cfg, step=0)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[index], f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
