from pathlib import Path

import pytest

from dias.data.synthetic import prepare_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny generated dataset: 24 training and 6 validation images of 48 px. Do not modify it."""
    root = tmp_path_factory.mktemp("synthetic")
    prepare_synthetic(root, num_train=24, num_val=6, size=48, seed=5, num_workers=1, progress=False)
    return root
