import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny import TINY

from dias.cli import main
from dias.data.dataset import LmdbDataset
from dias.data.records import partial_path, split_path
from dias.runtime.lock import MIXED_DATASET, FolderLock

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


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

    monkeypatch.setattr("dias.commands.report.run_report", broken)
    with pytest.raises(ValueError, match="programming error"):
        main(["report", "anywhere"])


def test_every_user_facing_error_is_a_dias_error():
    from dias.config import ConfigError
    from dias.data.codec import CorruptRecordError, LmdbFormatError
    from dias.data.feature_cache import FeatureCacheError
    from dias.data.records import CorruptSplitError
    from dias.data.safe_pickle import UnsafePickleError
    from dias.errors import DiasError, FileInTheWayError, MissingFileError, MissingPackageError, UsageError, WriteError
    from dias.io import WeightsMismatchError
    from dias.runtime.device import DeviceError
    from dias.runtime.lock import FolderInUseError
    from dias.train.checkpoint import CheckpointError
    from dias.train.window import NonFiniteLossError

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
        ("data.batch_size=4000", "do not fill one batch"),
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


@pytest.mark.parametrize(
    ("signum", "code", "status"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_prepare_stopped_by_a_signal_is_one_line_keeps_its_partial_split_and_quiet_workers(
    tmp_path, signum, code, status
):
    out = tmp_path / "data"
    args = ["prepare", "synthetic", "--out", str(out), "--num-train", "100000", "--num-val", "4", "--size", "32"]
    child = subprocess.Popen(
        [sys.executable, "-m", "dias", *args, "--workers", "2"],
        env=SUBPROCESS_ENV, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job's SIGINT is ignored
    )  # fmt: skip
    try:
        partial = partial_path(split_path(out, "train"))
        deadline = time.monotonic() + 60
        while not partial.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the workers are busy encoding
        # Ctrl-C reaches the whole foreground group, workers included; SIGTERM only the main process
        if signum == signal.SIGINT:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == code
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"dias: {status}; the same command run again resumes where it stopped"
    assert partial.exists() and not split_path(out, "train").exists()
    with FolderLock(out, why=MIXED_DATASET):  # released: a re-run may write the folder
        pass


@pytest.mark.parametrize("command", ["eval", "features", "infer"])
def test_ctrl_c_in_other_commands_is_one_line(command, monkeypatch, tmp_path, capsys):
    targets = {"eval": "dias.commands.evaluate.run_eval", "features": "dias.commands.features.build_feature_cache",
               "infer": "dias.commands.infer.load"}  # fmt: skip

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(targets[command], ctrl_c)
    argv = {
        "eval": ["eval", "--checkpoint", str(tmp_path / "last.pt")],
        "features": ["features", "--config", "configs/demo.yaml", "--out", str(tmp_path / "cache")],
        "infer": ["infer", str(tmp_path), "--checkpoint", str(tmp_path / "last.pt"), "--out", str(tmp_path / "o")],
    }[command]
    assert main(argv) == 130
    err = capsys.readouterr().err
    resumes = "; the same command run again resumes where it stopped" if command == "features" else ""
    assert "Traceback" not in err and err.strip() == f"dias: interrupted{resumes}"


@pytest.mark.parametrize(
    "argv",
    [
        ["infer", "x.png", "--checkpoint", "c.pt", "--out", "o", "--batch-size", "0"],
        ["infer", "x.png", "--checkpoint", "c.pt", "--out", "o", "--batch-size", "-2"],
        ["features", "--config", "c.yaml", "--out", "o", "--batch-size", "0"],
        ["prepare", "synthetic", "--out", "o", "--workers", "0"],
        ["prepare", "coco", "--raw", "r", "--out", "o", "--workers", "-1"],
    ],
    ids=lambda argv: " ".join(argv[:1] + argv[-2:]),
)
def test_counts_below_one_are_refused_at_parse_time(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_a_negative_number_of_feature_views_is_refused_at_parse_time(capsys):
    with pytest.raises(SystemExit) as info:
        main(["features", "--config", "c.yaml", "--out", "o", "--views", "-1"])
    assert info.value.code == 2 and "must be 0 or more" in capsys.readouterr().err


def test_train_with_unreadable_backbone_weights_is_one_line(tiny_root, tmp_path, capsys):
    garbage = tmp_path / "dinov2.pth"
    garbage.write_bytes(b"\x00" * 100)
    args = ["train", "--config", "configs/demo.yaml", "--out", str(tmp_path / "run"), *TINY, f"data.root={tiny_root}"]
    vit = [
        "model.backbone.name=vit_small_patch14_reg4_dinov2",
        f"model.backbone.weights={garbage}",
        "data.image_size=64",
    ]
    assert main([*args, *vit, "train.total_steps=1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"cannot read {garbage}" in err and "model.backbone.weights=PATH" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "configs/demo.yaml", "--out", "{file}"],
        ["prepare", "synthetic", "--out", "{file}"],
        ["features", "--config", "configs/demo.yaml", "--out", "{file}"],
        ["demo", "--out", "{file}", "--eval-only"],
        ["eval", "--checkpoint", "{checkpoint}", "--out", "{file}"],
        ["probe", "--checkpoint", "{checkpoint}", "--out", "{file}", "probe.attribute=shape"],
    ],
    ids=lambda argv: argv[0],
)
def test_out_naming_an_existing_file_is_one_line_and_the_file_stays(argv, tiny_root, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    checkpoint = tmp_path / "run" / "last.pt"
    if "{checkpoint}" in argv:
        train_args = ["train", "--config", "configs/demo.yaml", "--out", str(checkpoint.parent), *TINY]
        assert main([*train_args, f"data.root={tiny_root}", "train.total_steps=1", "train.val_every=100"]) == 0
        capsys.readouterr()
    argv = [arg.format(file=file, checkpoint=checkpoint) for arg in argv]
    extra = [f"data.root={tiny_root}", *TINY] if argv[0] in ("train", "features") else []
    assert main([*argv, *extra]) == 1
    err = capsys.readouterr().err
    assert f"{file} is a file; --out must name a folder" in err and "Traceback" not in err
    assert file.read_text() == "keep me"


def test_a_second_prepare_into_a_folder_being_written_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["prepare", "synthetic", "--out", str(out), "--num-train", "6", "--num-val", "2", "--size", "32"]
    assert main([*args, "--seed", "1", "--workers", "1"]) == 0
    before = {name: (out / name).read_bytes() for name in ("train.lmdb", "val.lmdb")}
    holder = subprocess.Popen(  # as a first `dias prepare` still writing the folder
        [sys.executable, "-c", "from dias.runtime.lock import MIXED_DATASET, FolderLock\n"
         f"with FolderLock({str(out)!r}, why=MIXED_DATASET):\n    print('locked', flush=True)\n    input()"],
        env=SUBPROCESS_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main([*args, "--seed", "2", "--workers", "1", "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert f"{out} is in use by another dias process (PID {holder.pid}); two writers would mix" in err
    finally:
        holder.communicate("\n", timeout=60)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert main([*args, "--seed", "2", "--workers", "1", "--overwrite"]) == 0  # free once the first one ends
