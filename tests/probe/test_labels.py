"""Probe labels of ClevrTex: attributes of converted fake scenes, classes from the train split's header."""

import importlib.util
from pathlib import Path

import pytest
import torch

from dias.data.convert_clevrtex import prepare_clevrtex
from dias.data.records import LmdbReader, load_header
from dias.probe.labels import UNSEEN_CLASS, ProbeLabelError, label_vocabulary, object_classes
from dias.probe.probe import top_k_correct

TESTS = Path(__file__).resolve().parents[1]
SHAPE_MATERIAL_COLOR = ("shape", "material", "color")


def _convert_tests():
    spec = importlib.util.spec_from_file_location("convert_tests", TESTS / "data" / "test_convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metas(path):
    with LmdbReader(path) as reader:
        return [reader.read(i).meta for i in range(len(reader))]


@pytest.fixture(scope="module")
def clevrtex(tmp_path_factory):
    """(root of a converted fake release: train = full, val = outd; the fake's module)."""
    convert, folder = _convert_tests(), tmp_path_factory.mktemp("clevrtex")
    convert.make_clevrtex(folder / "raw", "full", 3)
    convert.make_clevrtex(folder / "raw", "outd", 2)
    prepare_clevrtex(folder / "raw", folder / "data", num_workers=1, progress=False)
    return folder / "data", convert


@pytest.mark.parametrize("attribute", ["shape", "material", "color", "size"])
def test_clevrtex_classes_are_the_train_splits_names_in_mask_id_order(clevrtex, attribute):
    root, convert = clevrtex
    vocabulary = label_vocabulary("clevrtex", attribute, train_info=load_header(root / "train.lmdb")["info"])
    names = {convert.clevrtex_object("full", image, index)[attribute] for image in range(3) for index in range(1, 5)}
    assert vocabulary == tuple(sorted(names))
    for image, meta in enumerate(_metas(root / "train.lmdb")):
        objects = [convert.clevrtex_object("full", image, index) for index in convert.CLEVRTEX_ID_ORDER]
        expected = [vocabulary.index(o[attribute]) for o in objects]  # object i has mask id i + 1
        assert object_classes(meta, "clevrtex", attribute, vocabulary=vocabulary) == expected


def test_a_val_class_the_train_split_never_has_is_unseen_and_never_counted_right(clevrtex):
    root, _ = clevrtex
    info = load_header(root / "train.lmdb")["info"]
    shapes, materials, colors = (label_vocabulary("clevrtex", a, train_info=info) for a in SHAPE_MATERIAL_COLOR)
    assert shapes == ("cube", "cylinder", "monkey", "sphere")  # the val split's cone, torus, ... are not classes
    for meta in _metas(root / "val.lmdb"):
        assert object_classes(meta, "clevrtex", "shape", vocabulary=shapes) == [UNSEEN_CLASS] * 4
        assert UNSEEN_CLASS not in object_classes(meta, "clevrtex", "color", vocabulary=colors)
        expected = [materials.index(m) if m in materials else UNSEEN_CLASS for m in meta["materials"]]
        assert object_classes(meta, "clevrtex", "material", vocabulary=materials) == expected
    assert UNSEEN_CLASS in expected and any(c != UNSEEN_CLASS for c in expected)  # whitemarble is shared
    logits = torch.randn(5, len(shapes))
    assert not top_k_correct(logits, torch.full((5,), UNSEEN_CLASS), 3).any()


def test_clevrtex_without_attributes_is_refused_naming_the_reconversion(tmp_path):
    _convert_tests().make_clevrtex(tmp_path / "raw", "full", 1, scenes=False)
    prepare_clevrtex(tmp_path / "raw", tmp_path / "data", splits=("train",), num_workers=1, progress=False)
    info = load_header(tmp_path / "data" / "train.lmdb")["info"]
    with pytest.raises(ProbeLabelError, match=r"no object attributes .*`dias prepare clevrtex .*--overwrite`"):
        label_vocabulary("clevrtex", "shape", train_info=info)
    (meta,) = _metas(tmp_path / "data" / "train.lmdb")
    with pytest.raises(ProbeLabelError, match=r"CLEVRTEX_full_000000 has no object attributes .*--overwrite"):
        object_classes(meta, "clevrtex", "shape", vocabulary=("cube",))


def test_clevrtex_refuses_an_attribute_it_lacks_naming_the_four_it_has():
    with pytest.raises(ProbeLabelError, match="probe.attribute=category .*shape, material, color, size"):
        label_vocabulary("clevrtex", "category", train_info={})
