"""Input normalisation in the model, and the official init files loaded as they are (models/weights.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_nets import (
    CAFFE_MEAN_BGR,
    NARROW,
    VGG_MEAN_BGR,
    OfficialDeepLab,
    caffe_input,
    deeplab_init_file,
    fada_vgg16,
    randomise_,
)

from udabench.config import ModelConfig, load_suite
from udabench.engine.rows import protocol
from udabench.errors import ConfigError, UdabenchError
from udabench.models import DeepLabV2, InputNorm, build_model
from udabench.models.weights import resolve_input_norm

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255   # the pipeline's constants before
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


def rgb_images(n=1, h=32, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def as_batch(rgb: np.ndarray) -> torch.Tensor:
    """What the data pipeline yields: float32 RGB 0-255, N×3×H×W."""
    return torch.from_numpy(rgb.astype(np.float32).transpose(0, 3, 1, 2).copy())


def test_imagenet_input_is_bit_identical_to_the_former_pipeline():
    rgb = rgb_images(2)
    former = (rgb.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD           # what items used to hold
    assert np.array_equal(InputNorm("imagenet")(as_batch(rgb)).numpy(), former.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("name, mean", [("caffe_bgr", CAFFE_MEAN_BGR), ("caffe_bgr_vgg", VGG_MEAN_BGR)])
def test_caffe_input_is_the_official_preprocessing_exactly(name, mean):
    rgb = rgb_images(1)
    assert torch.equal(InputNorm(name)(as_batch(rgb)), caffe_input(rgb[0], mean))


def test_normalisation_buffers_are_not_in_the_state_dict():
    model = DeepLabV2("resnet10t", 3, input_norm="caffe_bgr")
    assert not [k for k in model.state_dict() if k.startswith("input_norm")]
    assert model.input_norm.name == "caffe_bgr"


# ---- the DeepLab init files -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference():
    return randomise_(OfficialDeepLab(**NARROW), seed=1)


@pytest.mark.parametrize("classifier, counters, legacy", [(True, False, True), (False, True, False)],
                         ids=["f81d91e8-like", "without-layer5"])
def test_deeplab_init_file_loads_as_is_and_gives_the_official_features(reference, tmp_path, narrow_deeplab,
                                                                       classifier, counters, legacy):
    path = deeplab_init_file(reference, tmp_path / "DeepLab_resnet_pretrained_init-f81d91e8.pth",
                             classifier=classifier, counters=counters, legacy=legacy)
    model = build_model(ModelConfig(backbone="deeplab_resnet101", pretrained=str(path)), num_classes=19).eval()
    assert model.input_norm.name == "caffe_bgr"                               # auto: the file's input
    rgb = rgb_images(1)
    with torch.no_grad():
        layer3, layer4 = model.backbone(model.input_norm(as_batch(rgb)))
        reference(caffe_input(rgb[0]))
    torch.testing.assert_close(layer3, reference.features[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer4, reference.features[1], rtol=1e-5, atol=1e-5)


def test_a_timm_state_dict_is_refused_by_the_deeplab_trunk_with_what_was_tried(reference, tmp_path, narrow_deeplab):
    path = tmp_path / "resnet101_imagenet.pth"
    torch.save({**reference.state_dict(), "fc.weight": torch.zeros(1000, 256)}, path)   # torchvision-like names
    with pytest.raises(UdabenchError) as err:
        DeepLabV2("deeplab_resnet101", 19, pretrained=str(path))
    message = str(err.value)
    assert "fits none of the weight layouts backbone 'deeplab_resnet101' reads (tried deeplab_init" in message
    assert "keys like 'conv1.weight', 'bn1.weight'" in message
    assert "a torchvision/timm ResNet" in message and "backbone 'resnet101'" in message


def test_a_deeplab_init_file_is_refused_by_a_timm_backbone_with_a_pointer(reference, tmp_path):
    path = deeplab_init_file(reference, tmp_path / "DeepLab_resnet_pretrained_imagenet.pth")
    with pytest.raises(UdabenchError, match=r"tried timm: .*keys like 'Scale\.conv1\.weight'.*a DeepLab init file, "
                                            r"which backbone 'deeplab_resnet101' reads"):
        DeepLabV2("resnet10t", 19, pretrained=str(path))


def test_a_truncated_init_file_names_the_missing_tensors(reference, tmp_path, narrow_deeplab):
    path = deeplab_init_file(reference, tmp_path / "init.pth")
    state = torch.load(path, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("Scale.layer4.0.conv2.")}, path)
    with pytest.raises(UdabenchError, match=r"read as a DeepLab init file .* 1 missing, e\.g\. layer4\.0\.conv2\.weight"):
        DeepLabV2("deeplab_resnet101", 19, pretrained=str(path))


# ---- torchvision's ResNet-101 for timm's resnet101 (FADA's init) ------------------------------------------------

def test_torchvision_resnet_file_loads_into_timm_resnet_and_gives_torchvision_features(tmp_path):
    """resnet101-5d3b4d8f.pth's layout (ResNet-50 here for speed: the names are the same at every depth)."""
    torchvision = pytest.importorskip("torchvision")
    tv = randomise_(torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]), 2)
    path = tmp_path / "resnet50-19c8e357.pth"       # written as the 2017 files: no BN counters, legacy format, fc.*
    torch.save({k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}, path,
               _use_new_zipfile_serialization=False)
    model = DeepLabV2("resnet50", 19, pretrained=str(path)).eval()
    assert model.input_norm.name == "imagenet"
    rgb = rgb_images(1)
    x = torch.from_numpy(rgb[0]).permute(2, 0, 1)[None].float() / 255      # FADA: ToTensor, then Normalize
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        torch.testing.assert_close(model(as_batch(rgb)).features, expected, rtol=1e-4, atol=1e-4)


# ---- VGG-16: the caffe conversion and torchvision's -------------------------------------------------------------

def test_caffe_vgg16_file_is_detected_and_gives_fadas_vgg_features(tmp_path):
    pytest.importorskip("torchvision")
    backbone, _ = fada_vgg16()
    randomise_(backbone, 3)
    convs = [i for i, m in enumerate(backbone) if isinstance(m, torch.nn.Conv2d)][:13]
    torchvision_index = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)   # the convs in torchvision's features
    state = {f"features.{t}.{p}": getattr(backbone[i], p) for i, t in zip(convs, torchvision_index)
             for p in ("weight", "bias")}
    # jcjohnson's conversion names the fully connected layers classifier.1/.4/.6 (pytorch-vgg#3); the
    # 100M-parameter tensors are stood in for by small ones: their names are what tells the layout
    state.update({f"classifier.{i}.{p}": torch.zeros(2) for i in (1, 4, 6) for p in ("weight", "bias")})
    path = tmp_path / "vgg16-00b39a1b.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    cfg = ModelConfig(backbone="vgg16", pretrained=str(path), multi_level=False)
    model = build_model(cfg, num_classes=19).eval()
    assert model.input_norm.name == "caffe_bgr_vgg" and resolve_input_norm(cfg) == "caffe_bgr_vgg"
    rgb = rgb_images(1)
    with torch.no_grad():
        ours = model.backbone.features(model.input_norm(as_batch(rgb)))
        expected = backbone[:29](caffe_input(rgb[0], VGG_MEAN_BGR))            # up to conv5_3 + ReLU
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-4)


def test_vgg16_input_follows_its_weights_and_an_explicit_choice_wins(tmp_path):
    assert resolve_input_norm(ModelConfig(backbone="vgg16", pretrained="none")) == "imagenet"
    assert resolve_input_norm(ModelConfig(backbone="vgg16", pretrained="none", input_norm="caffe_bgr_vgg")) == \
        "caffe_bgr_vgg"
    assert resolve_input_norm(ModelConfig(backbone="deeplab_resnet101", pretrained="/not/here.pth")) == "caffe_bgr"
    assert resolve_input_norm(ModelConfig(backbone="resnet101", pretrained="timm")) == "imagenet"
    with pytest.raises(ConfigError, match=r"model\.input_norm: 'auto' follows the weights file.*caffe_bgr_vgg or "
                                          r"imagenet"):
        resolve_input_norm(ModelConfig(backbone="vgg16", pretrained=str(tmp_path / "gone.pth")))


def test_every_row_records_the_input_normalisation_and_eval_options(write_suite):
    suite = load_suite(write_suite(lambda s: s.update(eval={"flip": True, "align_corners": True})))
    row = protocol(suite, 0)
    assert row["input_norm"] == "imagenet"
    assert (row["eval_flip"], row["eval_label_size"], row["eval_align_corners"]) == (True, "native", True)
    assert row["inference"] == "single-scale, flip-averaged softmax, bilinear up-sampling of logits (align_corners)"
    default = protocol(load_suite(write_suite()), 0)
    assert default["inference"] == "single-scale, no flip, bilinear up-sampling of logits"   # as before this option


def test_the_new_settings_at_their_defaults_keep_earlier_run_ids(write_suite):
    from udabench.engine.identity import suite_identity

    default = suite_identity(load_suite(write_suite()))
    assert "eval" not in default and "input_norm" not in default["model"]    # identity as before these settings
    flipped = suite_identity(load_suite(write_suite(lambda s: s.update(eval={"flip": True}))))
    caffe = suite_identity(load_suite(write_suite(lambda s: s["model"].update(input_norm="caffe_bgr"))))
    assert flipped["eval"]["flip"] is True and caffe["model"]["input_norm"] == "caffe_bgr"


def test_a_weights_file_that_would_run_code_is_refused_unrun(tmp_path, narrow_deeplab):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")           # creates the marker if the file is ever executed

    torch.save({"Scale.conv1.weight": torch.zeros(1), "payload": Payload()}, tmp_path / "init.pth")
    with pytest.raises(UdabenchError, match=r"would run code when loaded .*nothing in it was run"):
        DeepLabV2("deeplab_resnet101", 19, pretrained=str(tmp_path / "init.pth"))
    assert not marker.exists()
    (tmp_path / "torn.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UdabenchError, match=r"cannot read .*torn\.pth.* damaged or not a PyTorch file"):
        DeepLabV2("resnet10t", 19, pretrained=str(tmp_path / "torn.pth"))
