import subprocess
from pathlib import Path

import pytest
from tiny import TINY_DATA

from dias.config import load_config
from dias.data.synthetic import prepare_synthetic
from dias.data.synthetic_video import prepare_synthetic_video
from dias.weights import sources, store

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
SMALL_DEMO = [
    "model.initializer=normal_shared",  # sampled slots: any K, and pinned initial slots
    "model.num_slots=7",  # what the tests of the small model are written for (the demo itself has 10)
    "model.slot_dim=32",
    "model.slot_attention.mlp_dim=64",
    "model.decoder.num_layers=1",
    "data.image_size=64",
]


@pytest.fixture(autouse=True)
def no_weights_fetched(request, monkeypatch, tmp_path_factory):
    """No test reaches for real backbone weights by accident: the weights store is an empty folder, the hub
    is offline and pip has no index, as on a machine that reaches neither (a test may set them otherwise).
    Slow tests are left alone: one of them downloads the real wheel on purpose."""
    if request.node.get_closest_marker("slow") is not None:
        return
    monkeypatch.setenv(store.HOME_ENV, str(tmp_path_factory.mktemp("dias-home")))
    monkeypatch.setenv(sources.HUB_OFFLINE_ENV, "1")
    monkeypatch.setenv("PIP_NO_INDEX", "1")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny generated dataset: 24 training and 6 validation images of 48 px. Do not modify it."""
    root = tmp_path_factory.mktemp("synthetic")
    prepare_synthetic(root, num_train=24, num_val=6, size=48, seed=5, num_workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The dataset of the tiny runs (tests/tiny.py): 16 training and 4 validation images of 32 px. Do not modify it."""
    root = tmp_path_factory.mktemp("tiny")
    prepare_synthetic(root, **TINY_DATA, num_workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_video_root(tmp_path_factory) -> Path:
    """A tiny synthetic-video dataset: 4 training and 2 validation videos of 4 frames of 32 px. Do not modify it."""
    root = tmp_path_factory.mktemp("tiny-video")
    prepare_synthetic_video(root, num_train=4, num_val=2, num_frames=4, size=32, seed=3, num_workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def small_demo_config():
    """load_config(*overrides) of a small demo model (64 px, one decoder layer, sampled slots)."""
    return lambda *overrides: load_config(DEMO_CONFIG, [*SMALL_DEMO, *overrides])


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A real 4 MiB filesystem (tmpfs) to fill up; skipped where this process may not mount one (needs root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip() or done.returncode}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)
