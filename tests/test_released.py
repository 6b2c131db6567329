"""The papers' network and their released checkpoints: deeplab_resnet101 against the official model,
each released layout converted and loaded, and `udabench eval` against the official evaluations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import CITYSCAPES_TO_19, tiny_suite_dict, write_cityscapes
from PIL import Image
from reference_nets import (
    NARROW,
    VGG_MEAN_BGR,
    OfficialClassifier,
    OfficialDeepLab,
    advent_checkpoint,
    caffe_input,
    fada_checkpoint,
    fada_vgg16,
    maxsquare_checkpoint,
    randomise_,
)

from udabench.cli import CHECKPOINT_FORMATS, main
from udabench.errors import UdabenchError
from udabench.models import DeepLabV2
from udabench.models.released import FORMATS, convert_checkpoint, load_converted


def rgb_batch(h=32, w=64, seed=0) -> tuple[np.ndarray, torch.Tensor]:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rgb, torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1).copy())[None]


def test_deeplab_resnet101_is_the_official_network(tmp_path):
    """Full ResNet-101: ADVENT's model written as ADVENT saves it, read back into deeplab_resnet101."""
    reference = randomise_(OfficialDeepLab(num_classes=19), seed=5)
    converted = convert_checkpoint(str(advent_checkpoint(reference, tmp_path / "GTA2Cityscapes_advent.pth")), "advent")
    assert {"model.backbone=deeplab_resnet101", "model.input_norm=caffe_bgr", "model.multi_level=true",
            "eval.align_corners=true", "eval.label_size=native", "eval.flip=false"} <= set(converted.overrides)
    model = DeepLabV2("deeplab_resnet101", 19, multi_level=True, input_norm="caffe_bgr").eval()
    load_converted(model, converted.state, "GTA2Cityscapes_advent.pth")
    rgb, x = rgb_batch(64, 128)
    with torch.no_grad():
        out = model(x)
        aux, main_ = reference(caffe_input(rgb))
    assert out.main.shape == (1, 19, 9, 17)
    for ours, official in ((out.aux, aux), (out.main, main_), (out.features, reference.features[1])):
        torch.testing.assert_close(ours, official, rtol=1e-4, atol=1e-4 * official.abs().max().item())
    sizes = {}
    for model_ in (model, reference):   # grid sizes of the papers' inputs, on shapes only
        model_.to("meta")
        for w, h in ((1024, 512), (1280, 720)):
            outputs = model_(torch.empty(1, 3, h, w, device="meta"))
            main_map = outputs.main if isinstance(outputs, tuple) and hasattr(outputs, "main") else outputs[1]
            sizes.setdefault(type(model_).__name__, []).append(tuple(main_map.shape[-2:]))
    assert sizes == {"DeepLabV2": [(65, 129), (91, 161)], "OfficialDeepLab": [(65, 129), (91, 161)]}


@pytest.fixture(scope="module")
def narrow_reference():
    return randomise_(OfficialDeepLab(num_classes=19, **NARROW), seed=5)


@pytest.fixture(scope="module")
def narrow_maxsquare():
    return randomise_(OfficialDeepLab(num_classes=19, maxsquare_bug=True, **NARROW), seed=8)


def test_maxsquare_checkpoint_runs_its_two_effective_branches(narrow_maxsquare, tmp_path, narrow_deeplab):
    converted = convert_checkpoint(str(maxsquare_checkpoint(narrow_maxsquare, tmp_path / "gta52city_best.pth")),
                                   "maxsquare")
    assert converted.step == 29760
    assert {"model.aspp_dilations=[6, 12]", "eval.flip=true", "eval.label_size=input"} <= set(converted.overrides)
    model = DeepLabV2("deeplab_resnet101", 19, dilations=(6, 12), input_norm="caffe_bgr").eval()
    load_converted(model, converted.state, "best.pth")
    rgb, x = rgb_batch()
    with torch.no_grad():
        out = model(x)
        aux, main_ = narrow_maxsquare(caffe_input(rgb))
    torch.testing.assert_close(out.main, main_, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.aux, aux, rtol=1e-5, atol=1e-5)


def test_fada_resnet_checkpoint_loads_into_timm_resnet(tmp_path):
    """FADA's torchvision trunk with FrozenBatchNorm2d (no BN counters) -> timm's trunk of the same depth
    (ResNet-50 here for speed; the names are the same at every depth)."""
    torchvision = pytest.importorskip("torchvision")
    trunk = randomise_(torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]), 8)
    head = randomise_(OfficialClassifier(2048, 19), 9)
    state = {k: v for k, v in trunk.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}
    converted = convert_checkpoint(str(fada_checkpoint(state, head, tmp_path / "model_iter040000.pth")), "fada")
    assert converted.step == 40000 and "model.backbone=resnet101" in converted.overrides
    model = DeepLabV2("resnet50", 19, multi_level=False, input_norm="imagenet").eval()
    load_converted(model, converted.state, "model_iter040000.pth")
    rgb, x = rgb_batch()
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255                  # FADA: ToTensor, Normalize
    t = (t - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        layer4 = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(t))))))))
        torch.testing.assert_close(model(x).main, head(layer4), rtol=1e-4, atol=1e-4)


def test_fada_vgg_checkpoint_loads_into_udabench_vgg16(tmp_path):
    pytest.importorskip("torchvision")
    backbone, head = fada_vgg16()
    randomise_(backbone, 10), randomise_(head, 11)
    converted = convert_checkpoint(str(fada_checkpoint(backbone.state_dict(), head, tmp_path / "vgg.pth")), "fada")
    assert {"model.backbone=vgg16", "model.input_norm=caffe_bgr_vgg"} <= set(converted.overrides)
    model = DeepLabV2("vgg16", 19, multi_level=False, input_norm="caffe_bgr_vgg").eval()
    load_converted(model, converted.state, "vgg.pth")
    rgb, x = rgb_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x).main, head(backbone(caffe_input(rgb, VGG_MEAN_BGR))), rtol=1e-4, atol=1e-4)


def test_a_checkpoint_of_another_format_is_named(narrow_reference, tmp_path):
    path = str(advent_checkpoint(narrow_reference, tmp_path / "advent.pth"))
    with pytest.raises(UdabenchError, match=r"is not a 'fada' checkpoint \(a dict with 'feature_extractor'.*keys look "
                                            r"like 'conv1\.weight'.*It reads as a 'advent' checkpoint: pass --format advent"):
        convert_checkpoint(path, "fada")
    torch.save({"net": {"w": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(UdabenchError, match=r"keys look like 'net\.w'\. See docs/datasets\.md"):
        convert_checkpoint(str(tmp_path / "other.pth"), "advent")


def test_a_checkpoint_of_other_classes_is_refused_with_the_reason(narrow_reference, tmp_path, narrow_deeplab):
    converted = convert_checkpoint(str(advent_checkpoint(narrow_reference, tmp_path / "a.pth")), "advent")
    with pytest.raises(UdabenchError, match=r"with another shape, e\.g\. head\.branches\.0\.weight \(19, .*model: "
                                            r"\(16, .*the suite's classes"):
        load_converted(DeepLabV2("deeplab_resnet101", 16, input_norm="caffe_bgr"), converted.state, "a.pth")


def test_cli_formats_are_the_converters():
    assert CHECKPOINT_FORMATS == FORMATS


# ---- `udabench eval` against the official evaluations ----------------------------------------------------------

NATIVE = (48, 96)    # native label size (h, w) of the fixture; eval input 64×32


@pytest.fixture
def cityscapes_only(tmp_path):
    """A suite whose eval split exists and whose source, target and init weights do not: eval reads nothing else."""
    root = write_cityscapes(tmp_path / "Cityscapes", {"val": 3}, h=NATIVE[0], w=NATIVE[1], seed=4)
    suite = tiny_suite_dict({"gta5": tmp_path / "no-GTA5", "cityscapes": tmp_path / "no-Cityscapes"})
    suite["data"]["eval"]["root"] = str(root)
    suite["model"]["pretrained"] = str(tmp_path / "no-init.pth")
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path, root


def official_label(file, size=None) -> np.ndarray:
    """labelIds through info.json's label2train, 255 elsewhere (ADVENT cityscapes.py); with ``size``, the
    labelIds image resized (nearest) to it first (MaxSquare cityscapes_Dataset.py:221-223)."""
    table = np.full(256, 255, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_TO_19.items():
        table[label_id] = train_id
    image = Image.open(file)
    return table[np.asarray(image.resize(size, Image.NEAREST) if size else image)]


def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """ADVENT utils/func.py: confusion matrix of labels a (rows) and predictions b."""
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)


def official_pairs(root):
    for image in sorted((root / "leftImg8bit" / "val").glob("*/*.png")):
        label = root / "gtFine" / "val" / image.parent.name / image.name.replace("leftImg8bit", "gtFine_labelIds")
        rgb = np.asarray(Image.open(image).convert("RGB").resize((64, 32), Image.BICUBIC), np.float32)
        yield rgb, label


def eval_row(capsys, results, *args) -> tuple[dict, str]:
    code = main(["eval", *map(str, args), "--results", str(results), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [json.loads(line) for f in results.glob("tiny/released-*/*/metrics.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == 1
    return rows[0], out


def test_eval_advent_gives_advents_confusion_matrix(capsys, tmp_path, cityscapes_only, narrow_reference, narrow_deeplab):
    suite, root = cityscapes_only
    checkpoint = advent_checkpoint(narrow_reference, tmp_path / "GTA2Cityscapes_advent.pth")
    row, out = eval_row(capsys, tmp_path / "res", suite, "--checkpoint", checkpoint, "--format", "advent")

    hist = np.zeros((19, 19), dtype=np.int64)            # eval_UDA.py:40-69, written out independently
    with torch.no_grad():
        for rgb, label_file in official_pairs(root):
            label = official_label(label_file)
            pred_main = narrow_reference(caffe_input(rgb))[1]
            output = F.interpolate(pred_main, size=label.shape, mode="bilinear", align_corners=True)
            hist += fast_hist(label.flatten(), output[0].numpy().argmax(0).flatten(), 19)
    assert (hist.sum(0) > 0).sum() >= 3                  # several classes predicted: a matrix worth comparing
    assert np.array_equal(np.array(row["confusion"]), hist)
    iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    assert row["miou"] == pytest.approx(100 * np.nanmean(iou), abs=1e-3)
    assert row["kind"] == "released" and row["format"] == "advent" and row["seed"] == 0
    assert row["protocol"]["backbone"] == "deeplab_resnet101" and row["protocol"]["input_norm"] == "caffe_bgr"
    assert row["protocol"]["eval_align_corners"] is True and row["protocol"]["eval_label_size"] == "native"
    run_dir = next((tmp_path / "res" / "tiny").glob("released-*/*"))
    assert (run_dir / "done").exists() and (run_dir / "config.yaml").exists() and (run_dir / row["eval_file"]).exists()
    assert "GTA2Cityscapes_advent (released, advent): scored, mIoU" in out

    again = main(["eval", str(suite), "--checkpoint", str(checkpoint), "--format", "advent", "--results",
                  str(tmp_path / "res"), "--device", "cpu"])
    assert again == 0 and "already scored" in capsys.readouterr().out
    assert main(["viz", str(run_dir)]) == 2 and "no model of its own" in capsys.readouterr().err
    assert main(["eval", str(suite), "--checkpoint", str(tmp_path / "nope.pth")]) == 2
    assert "--checkpoint: file" in capsys.readouterr().err


def test_eval_maxsquare_averages_flips_at_the_input_size(capsys, tmp_path, cityscapes_only, narrow_maxsquare,
                                                        narrow_deeplab):
    suite, root = cityscapes_only
    checkpoint = maxsquare_checkpoint(narrow_maxsquare, tmp_path / "gta52city_maxsquarebest.pth")
    row, _ = eval_row(capsys, tmp_path / "res", suite, "--checkpoint", checkpoint, "--format", "maxsquare")

    hist = np.zeros((19, 19), dtype=np.int64)            # tools/evaluate.py:105-146 and _val_sync_transform
    with torch.no_grad():
        for rgb, label_file in official_pairs(root):
            label = official_label(label_file, (64, 32))
            x = caffe_input(rgb)
            up = lambda logits: F.interpolate(logits, size=(32, 64), mode="bilinear", align_corners=True)
            pred = F.softmax(up(narrow_maxsquare(x)[1]), dim=1)
            pred_flip = F.softmax(up(narrow_maxsquare(torch.flip(x, [3]))[1]), dim=1).flip(3)
            hist += fast_hist(label.flatten(), ((pred + pred_flip) / 2)[0].numpy().argmax(0).flatten(), 19)
    assert (hist.sum(0) > 0).sum() >= 3
    assert np.array_equal(np.array(row["confusion"]), hist)
    assert (row["protocol"]["eval_flip"], row["protocol"]["eval_label_size"]) == (True, "input")
    assert row["protocol"]["aspp_dilations"] == [6, 12] and row["step"] == 29760


def test_eval_of_a_udabench_run_checkpoint_gives_the_runs_own_last_row(capsys, write_suite, tmp_path):
    suite = write_suite(iterations=2)
    assert main(["run", str(suite), "--methods", "source_only", "--results", str(tmp_path / "runs")]) == 0
    run_dir = next((tmp_path / "runs" / "tiny" / "source_only").iterdir())
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    capsys.readouterr()
    row, _ = eval_row(capsys, tmp_path / "res", suite, "--checkpoint", run_dir / "checkpoints" / "last.pt")
    assert row["confusion"] == last["confusion"] and row["miou"] == last["miou"]
    assert row["kind"] == "released" and row["format"] == "udabench" and row["step"] == 2
    assert row["protocol"]["checkpoint_format"] == "udabench"
