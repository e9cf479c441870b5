import torch

from dias.viz.clips import (
    MAX_FRAMES,
    ClipItem,
    clip_length_text,
    render_clip_panel,
    sample_frames,
    video_scores_table,
)
from dias.viz.gallery import PANEL_GAP, TILE_GAP
from dias.viz.panels import PALETTE
from dias.viz.tables import to_markdown


def moving_square_clip(num_frames: int, num_slots: int = 3, size: int = 16) -> ClipItem:
    """A black clip where slot 1 (and object 1) is a 4x4 square moving right by 2 px a frame; slot 0 the rest."""
    labels = torch.zeros(num_frames, size, size, dtype=torch.long)
    for t in range(num_frames):
        labels[t, 4:8, 2 * t : 2 * t + 4] = 1
    grid = 4
    masks = torch.rand(num_frames, num_slots, grid * grid).softmax(dim=1)
    return ClipItem(
        number=0, index=5, start=2, video=torch.zeros(num_frames, 3, size, size, dtype=torch.uint8),
        gt=labels, pred=labels, masks=masks, mask_source="decoder",
    )  # fmt: skip


def test_sample_frames_keeps_short_clips_and_spreads_long_ones():
    assert sample_frames(3) == [0, 1, 2]
    frames = sample_frames(24, max_frames=8)
    assert len(frames) == 8 and frames[0] == 0 and frames[-1] == 23 and frames == sorted(frames)


def test_clip_panel_has_a_row_per_frame_and_a_tile_per_slot():
    num_frames, num_slots, size = 4, 3, 32
    panel = render_clip_panel(moving_square_clip(num_frames, num_slots), frame_size=size)
    caption_height = 15
    key_height = caption_height + size // 4
    row_height = caption_height + size
    assert panel.dtype == torch.uint8
    assert panel.shape[1] == key_height + num_frames * (PANEL_GAP + row_height)
    strip_width = num_slots * size + (num_slots - 1) * TILE_GAP
    assert panel.shape[2] == 3 * (size + PANEL_GAP) + strip_width
    long_clip = render_clip_panel(moving_square_clip(20, num_slots), frame_size=size)
    assert long_clip.shape[1] == key_height + MAX_FRAMES * (PANEL_GAP + row_height)


def test_a_slot_keeps_its_colour_across_frames():
    num_frames, size = 4, 32
    panel = render_clip_panel(moving_square_clip(num_frames), frame_size=size)
    scale = size // 16
    prediction_x = 2 * (size + PANEL_GAP)  # the third column
    colours = []
    for t in range(num_frames):
        top = 15 + size // 4 + PANEL_GAP + t * (PANEL_GAP + 15 + size) + 15  # below the key and the row's caption
        y, x = top + 6 * scale, prediction_x + (2 * t + 2) * scale  # inside the square (off its boundary)
        colours.append(panel[:, y, x])
    expected = (PALETTE[1].float() * 0.5).round().to(torch.uint8)  # half palette over a black frame
    assert all(torch.equal(colour, expected) for colour in colours)
    # the key over the strips shows slot 1 in that colour, above its tile column
    strip_x = 3 * (size + PANEL_GAP) + size + TILE_GAP + 1
    assert torch.equal(panel[:, 15 + 1, strip_x], PALETTE[1])


def test_video_scores_table_labels_the_conventions_and_the_clip_length():
    metrics = {"ari": 0.5, "fg_ari": 0.6, "mbo": 0.4, "miou": 0.3, "videosaur/fg_ari": 0.6, "videosaur/mbo": 0.2}
    metrics |= {"frame/ari": 0.7, "frame/fg_ari": 0.8, "frame/mbo": 0.5, "frame/miou": 0.4}
    table = to_markdown(video_scores_table(metrics, {"grid": {**metrics, "ari": 0.1}}))
    assert "| video | model | 50.0 | 60.0 | 40.0 | 30.0 |" in table
    assert "| video | fixed grid (image-blind) | 10.0 | 60.0 |" in table
    assert "| VideoSAUR | model | – | 60.0 | 20.0 | – |" in table
    assert "| per frame | model | 70.0 | 80.0 | 50.0 | 40.0 |" in table
    assert clip_length_text({"eval_clip_length": 2, "clip_frames": [2]}) == "2-frame clips"
    assert clip_length_text({"eval_clip_length": None, "clip_frames": [6, 8]}) == "whole videos (6, 8 frames)"
