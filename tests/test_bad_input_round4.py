"""Bad input, round four: each damaged file or contradictory option ends as one clear line, and nothing is lost.

Each test names the fault it guards against; the fix is where the input enters (the reference loader, the
probe's resume, the config schema, the official importer, the Python API).
"""

import json
import shutil

import pytest

from dias.cli import main
from dias.demo.reference import WEIGHTS_FILE_NAME, bundled_reference_dir, load_reference


@pytest.fixture
def reference_copy(tmp_path):
    """A copy of the bundled demo reference, to damage."""
    copy = tmp_path / "reference"
    shutil.copytree(bundled_reference_dir(), copy)
    return copy


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("dias: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- the demo reference checks what it vouches for --------------------------------------------------------


def test_bundled_weights_with_flipped_bytes_are_refused(reference_copy, tmp_path, capsys):
    with open(reference_copy / WEIGHTS_FILE_NAME, "r+b") as f:
        f.seek(700_000)
        f.write(b"\x7f" * 16)
    args = ["demo", "--eval-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    assert "SHA-256" in _one_line_error(capsys)
    assert not (tmp_path / "out" / "bundled").exists()  # nothing scored


def test_the_bundled_reference_loads_with_its_weights_checked():
    assert load_reference().weights.is_file()


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "..", "sub/log.jsonl"])
def test_a_card_log_name_outside_the_reference_folder_is_refused(reference_copy, tmp_path, capsys, name):
    card_path = reference_copy / "card.json"
    card = json.loads(card_path.read_text())
    card["runs"][1]["log"] = name
    card_path.write_text(json.dumps(card))
    args = ["demo", "--train-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    assert "leads out of that folder" in _one_line_error(capsys)


def test_a_card_log_symlinked_out_of_the_reference_folder_is_refused(reference_copy, tmp_path, capsys):
    log = reference_copy / "log-seed43.jsonl"
    log.unlink()
    log.symlink_to("/etc/passwd")
    assert main(["demo", "--train-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]) == 1
    assert "leads out of that folder" in _one_line_error(capsys)


def test_a_damaged_reference_log_or_card_is_one_line(reference_copy, tmp_path, capsys):
    args = ["demo", "--train-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]
    with open(reference_copy / "log-seed43.jsonl", "a") as f:
        f.write('{"step": 100, "loss": ')
    assert main(args) == 1
    assert "log-seed43.jsonl is damaged at line" in _one_line_error(capsys)
    (reference_copy / "card.json").write_text('{"runs": 3')
    assert main(args) == 1
    assert "card.json is damaged" in _one_line_error(capsys)
    (reference_copy / "card.json").write_text('{"runs": [{"seed": 1}]}')
    assert main(args) == 1
    assert "card.json is damaged" in _one_line_error(capsys)
