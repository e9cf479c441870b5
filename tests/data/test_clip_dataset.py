import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dias.data import clip_codec
from dias.data.boxes import boxes_from_masks
from dias.data.clip_codec import encode_clip
from dias.data.clip_dataset import ClipDataset, collate_clips, slot_count
from dias.data.clip_transforms import ClipEvalTransform, ClipTrainTransform
from dias.data.records import LmdbWriter
from dias.errors import UsageError

SIZE = 24


def moving_square_clip(num_frames: int, height: int = SIZE, width: int = SIZE + 8):
    """Frame t: a square of id 1 at column 2t, a bar of id 2 on the left edge; the pixel value encodes (t, row, col)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((num_frames, height, width), np.uint16)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    for t in range(num_frames):
        frames[t, ..., 0] = t * 20
        frames[t, ..., 1] = rows * 8
        frames[t, ..., 2] = cols * 6
        masks[t, 4:10, 2 * t : 2 * t + 6] = 1
        masks[t, :, 0:3] = 2
    return frames, masks


@pytest.fixture
def clip_split(tmp_path):
    path = tmp_path / "train.lmdb"
    with LmdbWriter(path, dataset="synthetic_video", split="train", kind="clip") as writer:
        for num_frames in (8, 5):
            frames, masks = moving_square_clip(num_frames)
            classes = np.tile([[3, 7]], (num_frames, 1))
            writer.append(encode_clip(frames, masks, {}, classes=classes))
    return path


def test_train_window_is_cut_before_decoding(clip_split, monkeypatch):
    decoded = []
    original = clip_codec.decode_image_bytes

    def counting(data):
        decoded.append(1)
        return original(data)

    monkeypatch.setattr(clip_codec, "decode_image_bytes", counting)
    dataset = ClipDataset(clip_split, clip_length=3, train=True)
    torch.manual_seed(0)
    starts = set()
    for _ in range(12):
        decoded.clear()
        sample = dataset[0]
        assert len(decoded) == 3  # only the window's frames
        start = sample["start"]
        starts.add(start)
        # the window's frames, in order: the red channel is 20 * frame index
        assert sample["video"][:, 0, 0, 0].tolist() == [20 * t for t in range(start, start + 3)]
    assert len(starts) > 1 and max(starts) <= 5


def test_eval_windows_and_whole_videos(clip_split):
    windows = ClipDataset(clip_split, clip_length=4, train=False)
    assert windows.items == [(0, 0), (0, 4), (1, 0)]  # video 1's 5th frame is a dropped tail
    whole = ClipDataset(clip_split, clip_length=None, train=False)
    assert [whole[i]["video"].shape[0] for i in range(2)] == [8, 5]
    with pytest.raises(UsageError, match="cannot batch clips of"):
        collate_clips([whole[0], whole[1]])
    with pytest.raises(UsageError, match="fewer than the clip length"):
        ClipDataset(clip_split, clip_length=6, train=True)[1]


def test_one_crop_and_one_flip_for_every_frame(clip_split):
    dataset = ClipDataset(clip_split, clip_length=8, train=True, transform=ClipTrainTransform(16, (0.3, 0.6)))
    flipped = 0
    for seed in range(8):
        torch.manual_seed(seed)
        sample = dataset[0]
        video = sample["video"].float()  # (T,3,16,16)
        # green encodes the row and blue the column: identical in every frame iff the same crop and flip
        assert torch.equal(video[:, 1:], video[:1, 1:].expand_as(video[:, 1:]))
        flipped += int(video[0, 2, 0, 0] > video[0, 2, 0, -1])
    assert 0 < flipped < 8


def test_boxes_are_recomputed_from_augmented_masks_and_padded(clip_split):
    dataset = ClipDataset(clip_split, clip_length=8, train=True, transform=ClipTrainTransform(16))
    torch.manual_seed(3)
    sample = dataset[0]
    assert sample["boxes"].shape == (8, slot_count("synthetic_video"), 4)
    torch.testing.assert_close(sample["boxes"], boxes_from_masks(sample["masks"], dataset.num_slots))
    assert sample["boxes"][:, 2:].eq(0).all()  # padding rows
    assert sample["classes"].shape == (8, 6) and sample["classes"][0].tolist() == [3, 7, 0, 0, 0, 0]
    # the square moves right by 2 px a frame in the source; after any flip its box still moves monotonically
    lefts = sample["boxes"][:, 0, 0]
    assert torch.all(lefts.diff() >= 0) or torch.all(lefts.diff() <= 0)


def test_collate_stacks_clips(clip_split):
    dataset = ClipDataset(clip_split, clip_length=4, train=False, transform=ClipEvalTransform(16), max_objects=3)
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_clips)))
    assert batch["video"].shape == (3, 4, 3, 16, 16) and batch["video"].dtype == torch.uint8
    assert batch["masks"].shape == (3, 4, 16, 16) and batch["boxes"].shape == (3, 4, 3, 4)
    assert batch["start"].tolist() == [0, 4, 0] and batch["num_skipped"] == 0


def test_unknown_dataset_needs_max_objects():
    with pytest.raises(UsageError, match="data.max_objects"):
        slot_count("mystery")
    assert slot_count("movi_e") == 24 and slot_count("ytvis") == 7 and slot_count("mystery", 5) == 5
