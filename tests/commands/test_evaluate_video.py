import json
from pathlib import Path

from tiny import TINY_VIDEO

from dias.cli import main
from dias.config import load_config
from dias.train.loop import train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "randsfq-ytvis.yaml"


def test_eval_viz_on_a_video_run_writes_clip_panels_and_a_report_with_the_conventions(
    tiny_video_root, tmp_path, capsys
):
    overrides = [*TINY_VIDEO, f"data.root={tiny_video_root}", "train.total_steps=2", "data.eval_clip_length=2"]
    assert train(load_config(CONFIG, overrides), tmp_path / "run", progress=False).status == "done"
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(out), "--viz", "2"]) == 0
    pngs = sorted(path.name for path in (out / "viz").glob("*.png"))
    assert len(pngs) == 2 and all(name.startswith("clip-") for name in pngs)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<figure>") == 2 and "data:image/png;base64," in page
    assert "Scored on 2-frame clips" in page
    for label in ("<td>video</td>", "<td>VideoSAUR</td>", "<td>per frame</td>", "k-means on the backbone tokens"):
        assert label in page
    assert json.loads((out / "metrics.json").read_text())["card"]["eval_clip_length"] == 2
    printed = capsys.readouterr().out  # the console table labels the three conventions too
    assert all(f"| {label} | model |" in printed for label in ("video", "VideoSAUR", "per frame"))
