"""`dias doctor` on a generated synthetic dataset: a clean run passes, a missing ViT weights file fails."""

from pathlib import Path

from dias.commands.doctor import exit_code, format_checks, run_checks

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_doctor_passes_on_the_demo_config(synthetic_root, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    checks = run_checks(
        CONFIGS / "demo.yaml", [f"data.root={synthetic_root}", "data.image_size=64", "data.batch_size=4"]
    )
    text = format_checks(checks)
    assert exit_code(checks) == 0, text
    by_name = {check.name: check for check in checks}
    assert "24 records" in by_name["data train"].message and "6 records" in by_name["data val"].message
    assert "effective 8 = 4 per rank x 2" in by_name["batch size"].message
    assert {"memory", "step time"} <= set(by_name)
    assert "FAIL" not in text


def test_doctor_fails_on_missing_vit_weights(synthetic_root, tmp_path):
    missing = tmp_path / "dinov2.safetensors"
    overrides = [f"data.root={synthetic_root}", f"model.backbone.weights={missing}"]
    checks = run_checks(CONFIGS / "dias-coco.yaml", overrides, estimate=False)
    failed = [check for check in checks if check.status == "FAIL"]
    assert exit_code(checks) == 1
    assert [check.name for check in failed] == ["backbone"]
    assert "model.backbone.weights" in failed[0].message and str(missing) in failed[0].message
    # The synthetic split is not COCO: a warning, not a failure.
    assert any(check.status == "WARN" and "data.name=coco" in check.message for check in checks)


def test_doctor_fails_on_missing_data_and_bad_config(tmp_path):
    checks = run_checks(CONFIGS / "demo.yaml", [f"data.root={tmp_path}"], estimate=False)
    assert exit_code(checks) == 1
    assert any("dias prepare synthetic" in check.message for check in checks if check.name == "data train")
    checks = run_checks(CONFIGS / "demo.yaml", ["model.num_slotz=3"])
    assert [check.status for check in checks] == ["FAIL"] and "num_slots" in checks[0].message
