"""ClevrTex, COCO and VOC converters on tiny fake raw trees in each dataset's own layout."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from dias.data import convert_coco
from dias.data.codec import IGNORE_ID, decode_image_bytes
from dias.data.convert_clevrtex import prepare_clevrtex
from dias.data.convert_coco import prepare_coco, rasterize
from dias.data.convert_voc import prepare_voc
from dias.data.records import LmdbReader, load_header, partial_path
from dias.errors import DiasError

H, W = 12, 16


def read_all(path):
    with LmdbReader(path) as reader:
        return (
            reader.header,
            [reader.read(i) for i in range(len(reader))],
            [reader.read_bytes(i) for i in range(len(reader))],
        )


def image_array(seed):
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def save_jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_array(seed)).save(path, format="JPEG", quality=90)
    return path.read_bytes()


# --- ClevrTex ------------------------------------------------------------------------------------------


# The generator's flat-mask palette (clevrtex-gen/img_utils.py): raw index k is the JSON object with index k.
CLEVRTEX_PALETTE = [(0, 0, 0), (255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 255, 0)]
CLEVRTEX_BOXES = {1: (slice(1, 4), slice(1, 5)), 2: (slice(1, 4), slice(8, 12)), 3: (slice(6, 9), slice(1, 5)),
                  4: (slice(6, 9), slice(8, 12))}  # fmt: skip
# Our ids follow the RGB codes r + 256g + 65536b: red 255 < green 32768 < yellow 65535 < blue 16711680.
CLEVRTEX_ID_ORDER = (1, 2, 4, 3)  # the JSON index of our ids 1..4
CLEVRTEX_SHAPES = {"full": ("cube", "sphere", "cylinder", "monkey"), "outd": ("cone", "icosahedron", "torus", "teapot")}
CLEVRTEX_MATERIALS = {"full": ("poliigonbricks01", "whitemarble"), "outd": ("whitemarble", "poliigonbrickoldred001")}


def clevrtex_object(variant, image, index):
    """The attributes of JSON object `index` of fake scene `image`."""
    return {
        "shape": CLEVRTEX_SHAPES[variant][(image + index) % 4],
        "material": CLEVRTEX_MATERIALS[variant][(image * index) % 2],
        "color": ("red", "blue", "gray", "yellow")[index - 1],
        "size": ("large", "small", "medium", "large")[index - 1],
    }


def make_clevrtex(raw, variant, count, scenes=True):
    """A fake release folder: four objects per scene, palette flat masks and (optionally) scene JSONs."""
    masks = []
    for image in range(count):
        folder = raw / f"clevrtex_{variant}" / str(image // 2)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"CLEVRTEX_{variant}_{image:06d}"
        rgba = np.concatenate([image_array(image), np.full((H, W, 1), 255, np.uint8)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(folder / f"{stem}.png")
        indices = np.zeros((H, W), np.uint8)  # palette index 0: the black background
        expected = np.zeros((H, W), np.uint16)
        for index, box in CLEVRTEX_BOXES.items():
            indices[box] = index
            expected[box] = CLEVRTEX_ID_ORDER.index(index) + 1
        flat = Image.fromarray(indices, "P")
        flat.putpalette([channel for colour in CLEVRTEX_PALETTE for channel in colour])
        flat.save(folder / f"{stem}_flat.png")
        Image.fromarray(np.zeros((H, W), np.uint8)).save(folder / f"{stem}_depth_0001.png")
        objects = [{"index": k, "rotation": 0.5, **clevrtex_object(variant, image, k)} for k in CLEVRTEX_BOXES]
        if image % 2:
            objects.reverse()  # the objects are found by `index`, not by their place in the list
        if scenes:
            scene = {"num_objects": len(objects), "ground_material": "whitemarble", "objects": objects}
            (folder / f"{stem}.json").write_text(json.dumps(scene))
        masks.append(expected)
    return masks


def test_clevrtex_ids_follow_colour_codes_and_attributes_follow_the_ids(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    masks = make_clevrtex(raw, "full", 3)
    make_clevrtex(raw, "outd", 2)
    summary = prepare_clevrtex(raw, out, num_workers=1, progress=False)
    assert summary["train"]["num_records"] == 3 and summary["val"]["num_records"] == 2
    header, records, _ = read_all(out / "train.lmdb")
    assert header["dataset"] == "clevrtex" and header["image_format"] == "png"
    assert header["info"]["source"] == "clevrtex_full"
    for image, record in enumerate(records):
        np.testing.assert_array_equal(record.image, image_array(image))  # RGBA -> RGB, lossless
        np.testing.assert_array_equal(record.mask, masks[image])
        objects = [clevrtex_object("full", image, index) for index in CLEVRTEX_ID_ORDER]
        assert record.meta == {
            "id": f"CLEVRTEX_full_{image:06d}", "num_objects": 4,
            "shapes": [o["shape"] for o in objects], "materials": [o["material"] for o in objects],
            "colors": [o["color"] for o in objects], "sizes": [o["size"] for o in objects],
        }  # fmt: skip
    assert header["info"]["classes"] == {
        "shape": ["cube", "cylinder", "monkey", "sphere"], "material": ["poliigonbricks01", "whitemarble"],
        "color": ["blue", "gray", "red", "yellow"], "size": ["large", "medium", "small"],
    }  # fmt: skip
    val = load_header(out / "val.lmdb")["info"]
    assert val["source"] == "clevrtex_outd" and val["classes"]["shape"] == ["cone", "icosahedron", "teapot", "torus"]


def test_clevrtex_without_scene_jsons_converts_without_attributes(tmp_path):
    masks = make_clevrtex(tmp_path / "raw", "full", 2, scenes=False)
    prepare_clevrtex(tmp_path / "raw", tmp_path / "out", splits=("train",), num_workers=1, progress=False)
    header, records, _ = read_all(tmp_path / "out" / "train.lmdb")
    assert "classes" not in header["info"]
    for image, record in enumerate(records):
        np.testing.assert_array_equal(record.mask, masks[image])
        assert record.meta == {"id": f"CLEVRTEX_full_{image:06d}", "num_objects": 4}


@pytest.mark.parametrize("damage", ["missing", "unreadable", "object not listed", "not a palette png"])
def test_clevrtex_scene_that_does_not_fit_is_one_error_naming_the_file(tmp_path, damage):
    raw = tmp_path / "raw"
    make_clevrtex(raw, "full", 3)
    stem = raw / "clevrtex_full" / "0" / "CLEVRTEX_full_000001"
    scene_file = stem.with_name(stem.name + ".json")
    if damage == "missing":
        scene_file.unlink()
    elif damage == "unreadable":
        scene_file.write_text('{"objects": [')
    elif damage == "object not listed":
        scene = json.loads(scene_file.read_text())
        scene["objects"] = [o for o in scene["objects"] if o["index"] != 3]
        scene_file.write_text(json.dumps(scene))
    else:
        flat = stem.with_name(stem.name + "_flat.png")
        with Image.open(flat) as picture:
            picture.convert("RGB").save(flat)
    with pytest.raises(DiasError, match="CLEVRTEX_full_000001") as error:
        prepare_clevrtex(raw, tmp_path / "out", splits=("train",), num_workers=1, progress=False)
    assert "\n" not in str(error.value)
    if damage == "object not listed":
        assert "palette index 3" in str(error.value)


def test_clevrtex_missing_split_names_the_folder(tmp_path):
    make_clevrtex(tmp_path / "raw", "full", 1)
    with pytest.raises(FileNotFoundError, match="clevrtex_camo"):
        prepare_clevrtex(tmp_path / "raw", tmp_path / "out", splits=("camo",), num_workers=1, progress=False)


# --- COCO ----------------------------------------------------------------------------------------------

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person", "isthing": 1},
    {"id": 3, "name": "car", "supercategory": "vehicle", "isthing": 1},
    {"id": 184, "name": "sky", "supercategory": "sky", "isthing": 0},
]


def panoptic_png(segments):
    """RGB PNG whose pixels encode segment ids as R + 256 G + 65536 B."""
    ids = np.zeros((H, W), np.int64)
    for segment_id, (rows, cols) in segments.items():
        ids[rows, cols] = segment_id
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def make_coco(raw, split):
    """Two images; segment ids chosen so that sorting by id differs from listing order."""
    layout = {
        10: [
            (300, 1, (slice(0, 4), slice(0, 4))),
            (70000, 3, (slice(5, 9), slice(5, 9))),
            (5, 184, (slice(10, 12), slice(None))),
        ],
        20: [(8, 184, (slice(0, 6), slice(None)))],  # stuff only
    }
    images, annotations, instances = [], [], []
    jpeg_bytes = {}
    for image_id, segments in layout.items():
        file_name = f"{image_id:012d}.jpg"
        jpeg_bytes[image_id] = save_jpeg(raw / f"{split}2017" / file_name, image_id)
        png_dir = raw / "annotations" / f"panoptic_{split}2017"
        png_dir.mkdir(parents=True, exist_ok=True)
        png_name = f"{image_id:012d}.png"
        (png_dir / png_name).write_bytes(panoptic_png({s: region for s, _, region in segments}))
        images.append({"id": image_id, "file_name": file_name, "height": H, "width": W})
        annotations.append(
            {
                "image_id": image_id,
                "file_name": png_name,
                "segments_info": [
                    {"id": s, "category_id": c, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]} for s, c, _ in segments
                ],
            }
        )
    panoptic = {"images": images, "annotations": annotations[::-1], "categories": CATEGORIES}
    (raw / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(panoptic))
    # Instance annotations for image 10: a polygon, an overlapping smaller box, and a crowd RLE.
    crowd = np.zeros((H, W), bool)
    crowd[10:12, 0:6] = True
    runs, current, count = [], False, 0
    for value in crowd.T.reshape(-1):  # column-major uncompressed RLE
        if value != current:
            runs.append(count)
            current, count = value, 0
        count += 1
    runs.append(count)
    instances = [
        {
            "id": 7,
            "image_id": 10,
            "category_id": 1,
            "iscrowd": 0,
            "area": 64.0,
            "segmentation": [[0, 0, 8, 0, 8, 8, 0, 8]],
        },
        {
            "id": 5,
            "image_id": 10,
            "category_id": 3,
            "iscrowd": 0,
            "area": 4.0,
            "segmentation": [[2, 2, 3, 2, 3, 3, 2, 3]],
        },
        {
            "id": 9,
            "image_id": 10,
            "category_id": 1,
            "iscrowd": 1,
            "area": 12.0,
            "segmentation": {"counts": runs, "size": [H, W]},
        },
    ]
    data = {"images": images, "annotations": instances, "categories": CATEGORIES}
    (raw / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return jpeg_bytes


def test_coco_panoptic_things_stuff_and_unannotated(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    jpeg_bytes = make_coco(raw, "val")
    summary = prepare_coco(raw, out, splits=("val",), num_workers=1, progress=False)
    assert summary["val"]["num_records"] == 2
    header, records, raw_values = read_all(out / "val.lmdb")
    assert header["image_format"] == "jpeg" and header["info"]["mode"] == "panoptic"
    first, second = records
    assert first.meta["id"] == 10 and second.meta["id"] == 20  # ascending image id
    expected = np.full((H, W), IGNORE_ID, np.uint16)
    expected[0:4, 0:4] = 1  # segment 300 (person): the smaller thing id
    expected[5:9, 5:9] = 2  # segment 70000 (car)
    expected[10:12, :] = 0  # sky: stuff -> background
    np.testing.assert_array_equal(first.mask, expected)
    assert first.meta["categories"] == [1, 3] and first.meta["num_objects"] == 2
    assert second.meta["num_objects"] == 0
    assert set(np.unique(second.mask)) == {0, IGNORE_ID}
    # The JPEG is stored byte for byte.
    assert jpeg_bytes[10] in raw_values[0]
    np.testing.assert_array_equal(first.image, decode_image_bytes(jpeg_bytes[10]))


def test_coco_instance_mode(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_coco(raw, "val")
    prepare_coco(raw, out, splits=("val",), mode="instance", num_workers=1, progress=False)
    _, records, _ = read_all(out / "val.lmdb")
    mask = records[0].mask
    assert records[0].meta["categories"] == [3, 1]  # annotation ids 5, 7
    assert mask[2, 2] == 1  # the small box stays on top of the large polygon
    assert mask[6, 6] == 2 and mask[11, 2] == IGNORE_ID and mask[11, 10] == 0
    assert records[1].meta["num_objects"] == 0 and not records[1].mask.any()


def test_coco_compressed_rle_without_pycocotools_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pycocotools", None)
    with pytest.raises(ImportError, match=r"dias\[coco\]"):
        rasterize({"counts": "abc", "size": [H, W]}, H, W)


def test_coco_resumes_after_an_interruption(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_coco(raw, "val")
    original = convert_coco.encode_panoptic
    calls = []

    def failing(job):
        calls.append(job[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(job)

    monkeypatch.setattr(convert_coco, "encode_panoptic", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_coco(raw, out, splits=("val",), num_workers=1, progress=False)
    assert partial_path(out / "val.lmdb").exists() and not (out / "val.lmdb").exists()
    monkeypatch.setattr(convert_coco, "encode_panoptic", original)
    summary = prepare_coco(raw, out, splits=("val",), num_workers=1, progress=False)
    assert summary["val"]["num_resumed"] == 1 and summary["val"]["num_records"] == 2
    _, records, _ = read_all(out / "val.lmdb")
    assert [r.meta["id"] for r in records] == [10, 20]


# --- VOC -----------------------------------------------------------------------------------------------


def make_voc(devkit, year, names, lists):
    root = devkit / f"VOC{year}"
    (root / "SegmentationObject").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]
    for seed, name in enumerate(names):
        save_jpeg(root / "JPEGImages" / f"{name}.jpg", seed)
        index = np.zeros((H, W), np.uint8)
        index[2:6, 2:6] = 1
        index[7:10, 8:12] = 2
        index[1, :] = 255  # void boundary
        png = Image.fromarray(index, "P")
        png.putpalette(palette)
        png.save(root / "SegmentationObject" / f"{name}.png")
    for list_name, ids in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{list_name}.txt").write_text("\n".join(ids) + "\n")


def test_voc_train_2012_val_2007_with_void_ignored(tmp_path):
    devkit = tmp_path / "raw" / "VOCdevkit"
    make_voc(devkit, 2012, ["2007_000032", "2007_000033"], {"train": ["2007_000032", "2007_000033"]})
    make_voc(devkit, 2007, ["000032", "000033", "000042"], {})
    summary = prepare_voc(tmp_path / "raw", tmp_path / "out", num_workers=1, progress=False)
    assert summary["val"]["year"] == 2007 and summary["val"]["num_records"] == 3
    header, records, _ = read_all(tmp_path / "out" / "train.lmdb")
    assert header["info"]["year"] == 2012 and header["image_format"] == "jpeg"
    mask = records[0].mask
    assert mask[3, 3] == 1 and mask[8, 9] == 2 and mask[0, 0] == 0 and (mask[1] == IGNORE_ID).all()
    assert records[0].meta == {"id": "2007_000032", "year": 2012, "num_objects": 2}
    assert load_header(tmp_path / "out" / "val.lmdb")["info"]["year"] == 2007


def test_voc_stores_each_objects_class_from_segmentation_class(tmp_path):
    devkit = tmp_path / "raw" / "VOCdevkit"
    make_voc(devkit, 2012, ["a", "b"], {"train": ["a", "b"], "val": ["a", "b"]})
    classes = np.zeros((H, W), np.uint8)
    classes[2:6, 2:6] = 15  # object 1: a person
    classes[7:10, 8:12] = 12  # object 2: a dog ...
    classes[7, 8] = 7  # ... with one stray car pixel: the most common class wins
    classes[1, :] = 255
    (devkit / "VOC2012" / "SegmentationClass").mkdir()
    png = Image.fromarray(classes, "P")
    png.putpalette([value for index in range(256) for value in (index, 255 - index, index // 2)])
    png.save(devkit / "VOC2012" / "SegmentationClass" / "a.png")  # b has none
    prepare_voc(tmp_path / "raw", tmp_path / "out", val_year=2012, num_workers=1, progress=False)
    _, records, _ = read_all(tmp_path / "out" / "train.lmdb")
    assert records[0].meta["categories"] == [15, 12]
    assert "categories" not in records[1].meta  # no SegmentationClass PNG: no labels (the probe says so)


def test_voc_trainaug_skips_images_without_object_masks(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    make_voc(devkit, 2012, ["a", "b"], {"trainaug": ["a", "b", "c"], "val": ["b"]})
    summary = prepare_voc(devkit, tmp_path / "out", train_list="trainaug", num_workers=1, progress=False)
    assert summary["val"]["year"] == 2012  # no VOC2007: falls back
    header = load_header(tmp_path / "out" / "train.lmdb")
    assert header["num_records"] == 2 and header["info"]["num_skipped_unannotated"] == 1


def test_cli_prepare_voc_in_worker_processes(tmp_path, capsys):
    from dias.cli import main

    make_voc(tmp_path / "VOCdevkit", 2012, ["a", "b", "c"], {"train": ["a", "b", "c"], "val": ["c"]})
    args = ["prepare", "voc", "--raw", str(tmp_path), "--out", str(tmp_path / "out"), "--workers", "2"]
    assert main(args) == 0
    _, records, _ = read_all(tmp_path / "out" / "train.lmdb")
    assert [r.meta["id"] for r in records] == ["a", "b", "c"]  # job order, whatever the workers
    assert main(args) == 0  # finished splits with the same settings are kept
    assert "'num_records': 3" in capsys.readouterr().out
