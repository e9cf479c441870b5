import torch

from dias.data.transforms import EvalTransform, TrainTransform, center_square, random_crop_box, resize_mask


def _sample(height, width):
    # Mask ids in vertical bands; the image's red channel repeats the id, so we can check alignment.
    mask = (torch.arange(width) * 4 // width).expand(height, width).clone()
    mask[0, 0] = 65535
    image = torch.stack([mask.clamp(max=3) * 60, torch.zeros_like(mask), torch.zeros_like(mask)]).to(torch.uint8)
    return {"image": image, "mask": mask, "index": 0}


def test_eval_transform_center_crops_and_resizes():
    out = EvalTransform(32)(_sample(40, 80))
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.uint8
    assert out["mask"].shape == (32, 32) and out["mask"].dtype == torch.int64
    # The centred 40x40 square of an 80-wide band image holds bands 1 and 2 only.
    assert set(out["mask"].unique().tolist()) == {1, 2}
    assert center_square(40, 80) == (0, 20, 40, 40)


def test_masks_keep_exact_ids():
    mask = torch.randint(0, 5, (16, 16))
    mask[mask == 4] = 65535
    resized = resize_mask(mask, 37)
    assert set(resized.unique().tolist()) <= {0, 1, 2, 3, 65535}


def test_train_transform_moves_image_and_mask_together():
    torch.manual_seed(0)
    transform = TrainTransform(24, crop_scale=(0.5, 1.0), flip=True)
    flipped = 0
    for _ in range(20):
        out = transform(_sample(30, 50))
        assert out["image"].shape == (3, 24, 24) and out["mask"].shape == (24, 24)
        ids = out["mask"].clamp(max=3)
        # Away from band edges, the red channel equals 60 * id.
        inside = (ids[:, 1:-1] == ids[:, :-2]) & (ids[:, 1:-1] == ids[:, 2:])
        red = out["image"][0, :, 1:-1].long()
        assert torch.equal(red[inside], 60 * ids[:, 1:-1][inside])
        flipped += int(ids[5, 0] > ids[5, -1])
    assert 0 < flipped < 20  # both flipped and unflipped crops happen


def test_random_crop_box_respects_scale():
    torch.manual_seed(1)
    for _ in range(100):
        top, left, height, width = random_crop_box(100, 200, (0.75, 1.0))
        assert 0 <= top and top + height <= 100 and 0 <= left and left + width <= 200
        assert 0.7 * 100**2 <= height * width <= 1.05 * 100**2
