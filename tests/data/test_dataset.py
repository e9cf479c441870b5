import logging
import pickle
import shutil

import lmdb
import pytest
import torch
from torch.utils.data import DataLoader

from dias.data.codec import CorruptRecordError, record_key
from dias.data.dataset import LmdbDataset, LmdbReader, collate


def test_dataset_sample_shapes(synthetic_root):
    dataset = LmdbDataset(synthetic_root / "val.lmdb")
    assert len(dataset) == 6
    sample = dataset[5]
    assert sample["image"].shape == (3, 48, 48) and sample["image"].dtype == torch.uint8
    assert sample["mask"].shape == (48, 48) and sample["mask"].dtype == torch.int64
    assert sample["index"] == 5
    assert 2 <= int(sample["mask"].max()) <= 6
    with pytest.raises(IndexError):
        dataset[6]


def test_dataset_is_picklable_and_opens_lazily(synthetic_root):
    dataset = LmdbDataset(synthetic_root / "val.lmdb")
    assert not dataset._lmdb.is_open
    dataset[0]
    assert dataset._lmdb.is_open
    copy = pickle.loads(pickle.dumps(dataset))
    assert not copy._lmdb.is_open
    assert torch.equal(copy[0]["image"], dataset[0]["image"])


def test_loader_with_workers_returns_every_index_once(synthetic_root):
    dataset = LmdbDataset(synthetic_root / "train.lmdb")
    loader = DataLoader(dataset, batch_size=5, shuffle=True, num_workers=2, collate_fn=collate)
    seen = []
    for batch in loader:
        batch_size = len(batch["index"])
        assert batch["image"].shape == (batch_size, 3, 48, 48) and batch["image"].dtype == torch.uint8
        assert batch["mask"].shape == (batch_size, 48, 48) and batch["mask"].dtype == torch.int64
        assert batch["num_skipped"] == 0
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(24))


def test_transform_is_applied(synthetic_root):
    def flip(sample):
        return {**sample, "image": sample["image"].flip(-1), "name": "flipped"}

    plain = LmdbDataset(synthetic_root / "val.lmdb")[2]
    flipped = LmdbDataset(synthetic_root / "val.lmdb", transform=flip)[2]
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    batch = collate([flipped, flipped])
    assert batch["name"] == ["flipped", "flipped"] and batch["index"].dtype == torch.int64


@pytest.fixture
def corrupt_copy(synthetic_root, tmp_path):
    """A copy of the training split with record 3 damaged."""
    path = tmp_path / "train.lmdb"
    shutil.copy(synthetic_root / "train.lmdb", path)
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(record_key(3)))
        value[-3] ^= 0xFF
        txn.put(record_key(3), bytes(value))
    env.close()
    return path


def test_corrupt_record_raises_with_file_and_key(corrupt_copy):
    dataset = LmdbDataset(corrupt_copy)
    with pytest.raises(CorruptRecordError) as info:
        dataset[3]
    assert str(corrupt_copy) in str(info.value) and "00000003" in str(info.value)


def test_skip_corrupt_counts_across_workers(corrupt_copy, caplog):
    dataset = LmdbDataset(corrupt_copy, skip_corrupt=True)
    with caplog.at_level(logging.WARNING, logger="dias.data.dataset"):
        assert dataset[3] is None
        assert dataset[3] is None
    assert len([r for r in caplog.records if "00000003" in r.getMessage()]) == 1
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert sum(batch["num_skipped"] for batch in batches) == 1
    seen = sorted(index for batch in batches for index in batch["index"].tolist())
    assert seen == [index for index in range(24) if index != 3]


def test_collate_rejects_mixed_sizes_and_handles_all_skipped():
    small = {"image": torch.zeros(3, 8, 8, dtype=torch.uint8), "mask": torch.zeros(8, 8), "index": 0}
    large = {"image": torch.zeros(3, 9, 9, dtype=torch.uint8), "mask": torch.zeros(9, 9), "index": 1}
    with pytest.raises(ValueError, match="different shapes"):
        collate([small, large])
    assert collate([None, None]) == {"num_skipped": 2}


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        LmdbDataset(tmp_path / "train.lmdb")
    assert str(tmp_path / "train.lmdb") in str(info.value) and "dias prepare" in str(info.value)
    with pytest.raises(FileNotFoundError, match="is a folder"):
        LmdbReader(tmp_path)


def test_two_readers_share_one_file(synthetic_root):
    # LMDB refuses a second open of one file per process; readers share the environment instead.
    first, second = LmdbDataset(synthetic_root / "val.lmdb"), LmdbDataset(synthetic_root / "val.lmdb")
    assert torch.equal(first[1]["mask"], second[1]["mask"])
    with LmdbReader(synthetic_root / "val.lmdb") as reader:
        assert len(reader) == 6
    assert torch.equal(first[2]["image"], second[2]["image"])
