import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dias.data.codec import IGNORE_ID
from dias.metrics import ari, fg_ari, mbo, miou, nanmean, score


def _random_case(rng, size=12):
    num_pred = int(rng.integers(1, 6))
    num_gt = int(rng.integers(1, 6))
    pred = rng.integers(0, num_pred, (size, size))
    gt = rng.integers(0, num_gt, (size, size))
    if rng.random() < 0.5:  # some ignored pixels
        gt[rng.random((size, size)) < 0.2] = IGNORE_ID
    return pred, gt


def test_ari_equals_sklearn_on_random_labelings():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pred, gt = _random_case(rng)
        counted = gt != IGNORE_ID
        expected = adjusted_rand_score(gt[counted], pred[counted]) if counted.any() else np.nan
        got = ari(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
        np.testing.assert_allclose(got.numpy(), [expected], atol=1e-10)


def test_fg_ari_equals_sklearn_on_foreground_pixels():
    rng = np.random.default_rng(1)
    for _ in range(300):
        pred, gt = _random_case(rng)
        counted = (gt != IGNORE_ID) & (gt != 0)
        expected = adjusted_rand_score(gt[counted], pred[counted]) if counted.any() else np.nan
        got = fg_ari(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
        np.testing.assert_allclose(got.numpy(), [expected], atol=1e-10)


def test_batched_equals_per_image():
    rng = np.random.default_rng(2)
    cases = [_random_case(rng) for _ in range(16)]
    pred = torch.stack([torch.from_numpy(p) for p, _ in cases])
    gt = torch.stack([torch.from_numpy(g) for _, g in cases])
    for metric in (ari, fg_ari, mbo, miou):
        batched = metric(pred, gt)
        single = torch.cat([metric(pred[i : i + 1], gt[i : i + 1]) for i in range(len(cases))])
        torch.testing.assert_close(batched, single, equal_nan=True)
        torch.testing.assert_close(score(pred, gt)[metric.__name__], batched, equal_nan=True)


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ([[0, 0], [0, 0]], [[1, 1], [1, 1]], 1.0),  # one cluster on both sides
        ([[0, 1], [2, 3]], [[1, 2], [3, 4]], 1.0),  # all singletons
        ([[0, 0], [0, 0]], [[1, 1], [2, 2]], 0.0),  # one predicted cluster for two objects
        ([[0, 0], [1, 1]], [[1, 1], [1, 1]], 0.0),  # split of a single object
    ],
)
def test_ari_degenerate_cases(pred, gt, expected):
    got = ari(torch.tensor([pred]), torch.tensor([gt]))
    assert got.item() == pytest.approx(expected)
    np.testing.assert_allclose(got.item(), adjusted_rand_score(np.ravel(gt), np.ravel(pred)), atol=1e-12)


def test_images_without_ground_truth_are_nan_and_skipped_by_the_mean():
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    gt = torch.full((2, 4, 4), IGNORE_ID)
    gt[1] = 0  # only background: FG-ARI has nothing to score
    assert torch.isnan(ari(pred, gt)[0]) and ari(pred, gt)[1] == 1.0
    assert torch.isnan(fg_ari(pred, gt)).all()
    assert torch.isnan(mbo(pred, gt)[0]) and torch.isnan(miou(pred, gt)[0])
    assert nanmean(torch.tensor([float("nan"), 0.5, 1.0])) == pytest.approx(0.75)


def test_mbo_and_miou_hand_made():
    # GT: background (0) on the left half, object 1 top-right, object 2 bottom-right.
    gt = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
    # Prediction: label 5 covers the background and object 1; label 7 is object 2 exactly.
    pred = torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 7, 7], [5, 5, 7, 7]])
    # IoU(5, bg) = 8/12, IoU(5, obj1) = 4/12, IoU(7, obj2) = 1.
    assert mbo(pred[None], gt[None]).item() == pytest.approx((8 / 12 + 4 / 12 + 1) / 3)
    # One-to-one: label 5 can only match the background, so object 1 gets 0.
    assert miou(pred[None], gt[None]).item() == pytest.approx((8 / 12 + 0 + 1) / 3)


def test_ignored_pixels_count_in_the_predicted_union():
    gt = torch.tensor([[1, 1, IGNORE_ID, IGNORE_ID]])
    pred = torch.tensor([[0, 0, 0, 0]])
    # The predicted mask covers 4 pixels, the object 2: IoU 0.5 (official protocol).
    assert mbo(pred[None], gt[None]).item() == pytest.approx(0.5)
    assert ari(pred[None], gt[None]).item() == pytest.approx(1.0)


def test_miou_with_more_objects_than_predictions():
    gt = torch.tensor([[1, 2, 3, 4]])
    pred = torch.tensor([[0, 0, 1, 1]])
    # Two objects are matched with IoU 0.5 each; two get nothing.
    assert miou(pred[None], gt[None]).item() == pytest.approx((0.5 + 0.5) / 4)
    assert mbo(pred[None], gt[None]).item() == pytest.approx(0.5)


def test_renaming_predicted_labels_changes_nothing():
    rng = np.random.default_rng(3)
    for _ in range(20):
        pred, gt = _random_case(rng)
        renamed = rng.permutation(50)[pred] + 100
        for metric in (ari, fg_ari, mbo, miou):
            a = metric(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
            b = metric(torch.from_numpy(renamed)[None], torch.from_numpy(gt)[None])
            torch.testing.assert_close(a, b, equal_nan=True)


def test_bad_inputs():
    with pytest.raises(ValueError, match="one shape"):
        ari(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="argmax"):
        mbo(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
