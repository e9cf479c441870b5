import subprocess
import sys

import pytest
import yaml

from dias.cli import main
from dias.data.dataset import LmdbDataset


def test_python_m_dias_version():
    result = subprocess.run([sys.executable, "-m", "dias", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("dias ")


def test_config_command_prints_resolved_config(capsys):
    assert main(["config", "--config", "configs/dias-voc.yaml", "model.num_slots=9"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["num_slots"] == 9
    assert shown["data"]["name"] == "voc"


def test_config_command_reports_bad_key(capsys):
    assert main(["config", "model.num_slot=9"]) == 1
    assert "did you mean model.num_slots" in capsys.readouterr().err


def test_prepare_synthetic_writes_a_readable_dataset(tmp_path):
    out = tmp_path / "synthetic"
    args = ["prepare", "synthetic", "--out", str(out), "--num-train", "12", "--num-val", "5"]
    assert main([*args, "--size", "64", "--seed", "3", "--workers", "1"]) == 0
    train, val = LmdbDataset(out / "train.lmdb"), LmdbDataset(out / "val.lmdb")
    assert (len(train), len(val)) == (12, 5)
    sample = train[11]
    assert tuple(sample["image"].shape) == (3, 64, 64)
    assert 2 <= int(sample["mask"].max()) <= 6
    # A finished split is not silently replaced.
    assert main([*args, "--size", "64", "--workers", "1"]) == 1


def test_user_errors_are_one_line_and_debug_shows_their_traceback(capsys):
    assert main(["eval", "--checkpoint", "missing.pt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dias: error: checkpoint not found at missing.pt") and "Traceback" not in err
    assert main(["--debug", "eval", "--checkpoint", "missing.pt"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointError" in err and "dias: error: checkpoint not found" in err


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a programming error, not the user's")

    monkeypatch.setattr("dias.engine.report.run_report", broken)
    with pytest.raises(ValueError, match="programming error"):
        main(["report", "anywhere"])


def test_every_user_facing_error_is_a_dias_error():
    from dias.config import ConfigError
    from dias.data.codec import CorruptRecordError, LmdbFormatError
    from dias.data.feature_cache import FeatureCacheError
    from dias.data.records import CorruptSplitError
    from dias.data.safe_pickle import UnsafePickleError
    from dias.engine.checkpoint import CheckpointError
    from dias.engine.device import DeviceError
    from dias.engine.window import NonFiniteLossError
    from dias.errors import DiasError, FileInTheWayError, MissingFileError, MissingPackageError, UsageError, WriteError
    from dias.io import WeightsMismatchError
    from dias.lock import FolderInUseError

    kinds = (ConfigError, CorruptRecordError, LmdbFormatError, CorruptSplitError, FeatureCacheError, UnsafePickleError)
    kinds += (CheckpointError, FolderInUseError, NonFiniteLossError, MissingFileError, FileInTheWayError, WriteError)
    kinds += (WeightsMismatchError, UsageError, DeviceError, MissingPackageError)
    assert all(issubclass(kind, DiasError) for kind in kinds)
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.decoder.num_heads=7", "model.decoder.num_heads = 7 must divide"),
        ("data.crop_scale=[0.9,0.5]", "data.crop_scale = [0.9, 0.5] is invalid"),
        ("data.batch_size=100000", "do not fill one batch"),
    ],
)
def test_config_mistakes_found_when_a_run_starts_are_one_line_errors(
    override, message, synthetic_root, tmp_path, capsys
):
    args = ["train", "--config", "configs/demo.yaml", "--out", str(tmp_path / "run"), f"data.root={synthetic_root}"]
    assert main([*args, "data.num_workers=0", override]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "last.pt").exists()
