"""DAFormer's rare-class sampling (engine/rare_class.py) against MIC's ``uda_dataset.py`` restated: the class
probabilities, the images a class is drawn from, resumable draws, the crop re-drawn until it holds the class, the
settings in run ids and rows, and a run that trains with it."""

import json

import numpy as np
import pytest
import torch

from udabench.config import DomainAugment, load_suite
from udabench.data.base import image_tensor
from udabench.engine.augment import Augmented, augment
from udabench.engine.identity import identity_of, stage_settings, suite_identity
from udabench.engine.rare_class import RareClassSampler, rare_class_probs
from udabench.engine.rows import protocol
from udabench.errors import ConfigError


def mic_rcs_class_probs(sample_class_stats, temperature):
    """``get_rcs_class_probs`` (uda_dataset.py:20-42) on the parsed ``sample_class_stats.json``."""
    overall_class_stats = {}
    for s in sample_class_stats:
        s.pop("file")
        for c, n in s.items():
            c = int(c)
            overall_class_stats[c] = overall_class_stats.get(c, 0) + n
    overall_class_stats = dict(sorted(overall_class_stats.items(), key=lambda item: item[1]))
    freq = torch.tensor(list(overall_class_stats.values()))
    freq = freq / torch.sum(freq)
    freq = 1 - freq
    freq = torch.softmax(freq / temperature, dim=-1)
    return list(overall_class_stats.keys()), freq.numpy()


def stats_json(counts):
    """``sample_class_stats.json`` as tools/convert_datasets/gta.py:41-53 writes it (classes with n > 0)."""
    return json.loads(json.dumps([{**{str(c): int(n) for c, n in enumerate(row) if n > 0}, "file": f"{i}.png"}
                                  for i, row in enumerate(counts)]))


COUNTS = np.array([[500000, 20000, 0, 4000, 0], [400000, 0, 3001, 0, 0], [600000, 30000, 2999, 9000, 0]])


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_class_probabilities_are_mics(temperature):
    classes, probs = rare_class_probs(COUNTS, temperature)
    mic_classes, mic_probs = mic_rcs_class_probs(stats_json(COUNTS), temperature)
    assert dict(zip(classes.tolist(), probs)) == pytest.approx(dict(zip(mic_classes, mic_probs.tolist())), rel=1e-5)
    assert 4 not in classes   # absent from every label: never drawn, as it is absent from MIC's statistics


def test_a_class_is_drawn_from_images_with_more_than_min_pixels_and_draws_resume():
    sampler = RareClassSampler(COUNTS, 0.01, 3000, seed=3)
    assert [m.tolist() for m in sampler.members] == [[0, 1, 2], [0, 2], [1], [0, 2]]   # strictly more (:98)
    stream = iter(sampler)
    first = [next(stream) for _ in range(2000)]
    resumed = iter(RareClassSampler(COUNTS, 0.01, 3000, seed=3, start=1000))
    assert [next(resumed) for _ in range(1000)] == first[1000:]
    assert [p for _, p, _ in first] == list(range(2000))
    assert all(COUNTS[i, c] > 3000 for i, _, c in first)   # the key names the class its image was drawn for
    drawn = np.bincount([i for i, _, _ in first], minlength=3) / len(first)
    # class 2 (rarest) is drawn most and only image 1 has it above 3000 pixels
    assert drawn[1] > 0.4 and drawn[1] == pytest.approx(rare_class_probs(COUNTS, 0.01)[1][2], abs=0.08)
    with pytest.raises(ConfigError, match="rcs_min_pixels"):
        RareClassSampler(COUNTS, 0.01, 20000, seed=0)


def mic_rare_class_crop(read_source_image, c, min_pixels, min_crop_ratio):
    """The re-crop of ``get_rare_class_sample`` (MIC uda_dataset.py:123-138), ``self.source[i1]`` as a callable."""
    s1 = read_source_image()
    if min_crop_ratio > 0:
        for j in range(10):
            n_class = torch.sum(s1["label"] == c)
            if n_class > min_pixels * min_crop_ratio:
                break
            s1 = read_source_image()
    return s1


class OneImage(torch.utils.data.Dataset):
    """A 64×32 label of class 0 with a 10×10 block of class 3 (100 pixels) in its top-left corner."""
    def __init__(self):
        label = np.zeros((32, 64), dtype=np.int64)
        label[:10, :10] = 3
        self.item = {"image": image_tensor(np.zeros((32, 64, 3), np.uint8)), "label": torch.from_numpy(label)}

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.item


@pytest.mark.parametrize("min_crop_ratio", [0.5, 0.0])
def test_the_crop_is_drawn_again_until_it_holds_the_class_as_mic_does(min_crop_ratio):
    cfg, dataset, min_pixels = DomainAugment(crop=(16, 16), flip=0.5), OneImage(), 20
    threshold = min_crop_ratio * min_pixels if min_crop_ratio > 0 else None   # as engine/rundata.py passes it
    ours = Augmented(dataset, cfg, seed=5, min_class_pixels=threshold)
    holding = []
    for position in range(100):
        rng = np.random.default_rng([5, position])   # MIC's source[i1] re-reads through the same random pipeline
        expected = mic_rare_class_crop(lambda: augment(dataset.item, cfg, rng), 3, min_pixels, min_crop_ratio)
        got = ours[(0, position, 3)]
        assert torch.equal(got["label"], expected["label"])
        holding.append(int((got["label"] == 3).sum()) > 10)
        unkeyed = augment(dataset.item, cfg, np.random.default_rng([5, position]))   # other samplers' keys: one draw
        assert torch.equal(ours[(0, position)]["label"], unkeyed["label"])
    # one crop holds > 10 pixels of the block in 73 of 833 draws (9 %); one of 11 draws: 64 %
    assert np.mean(holding) > 0.45 if min_crop_ratio else np.mean(holding) < 0.2


def test_the_re_crop_is_identity_and_protocol_only_with_rare_class_sampling(write_suite, tmp_path):
    path = write_suite()
    uniform, ratio_set = load_suite(path), load_suite(path, ["train.rcs_min_crop_ratio=0.25"])
    rare, rare_none = (load_suite(path, ["train.source_sampler=rare_class", *o])
                       for o in ([], ["train.rcs_min_crop_ratio=0"]))
    assert suite_identity(uniform) == suite_identity(ratio_set)   # acts on nothing: every other run keeps its id
    assert suite_identity(rare)["train"]["rcs_min_crop_ratio"] == 0.5
    assert suite_identity(rare) != suite_identity(rare_none)
    assert "rcs_min_crop_ratio" not in protocol(uniform, 0) and protocol(rare, 0)["rcs_min_crop_ratio"] == 0.5
    # a stage that turns rare-class sampling on names the re-crop, though it is the suite's value
    assert stage_settings(uniform, rare) == {"train.source_sampler": "rare_class", "train.rcs_min_crop_ratio": 0.5}
    assert stage_settings(rare, rare) == {}
    ids = {identity_of(s, 0, method="source_only", hparams={})["suite"].get("augment") is None
           for s in (uniform, load_suite(path, ["augment.source.cat_max_ratio=1.0"]))}
    assert ids == {True}   # mmseg's crop re-draw off (its default) keeps every earlier run's id
    crop = load_suite(path, ["augment.source.crop=[32,16]"])
    assert "cat_max_ratio" not in suite_identity(crop)["augment"]["source"]
    assert suite_identity(load_suite(path, ["augment.source.crop=[32,16]", "augment.source.cat_max_ratio=0.75"])
                          )["augment"]["source"]["cat_max_ratio"] == 0.75
    with pytest.raises(ConfigError, match="augment.target.cat_max_ratio"):
        load_suite(path, ["augment.target.cat_max_ratio=0.75"])


def test_a_run_trains_with_rare_class_sampling(write_suite, tmp_path):
    from udabench.engine.runner import run_suite

    suite = load_suite(write_suite(iterations=2), ["train.source_sampler=rare_class", "train.rcs_min_pixels=40",
                                                   "augment.source.crop=[32,16]", "augment.source.cat_max_ratio=0.75"])
    outcome = run_suite(suite, tmp_path, methods=["source_only"])[0]   # both re-draws, through the loader
    assert outcome.status == "trained"
    recorded = outcome.spec.rundir.rows()[-1]["protocol"]
    assert recorded["source_sampler"] == "rare_class" and recorded["rcs_min_crop_ratio"] == 0.5
    assert recorded["augment"] == {"source": {"crop": [32, 16], "cat_max_ratio": 0.75}}
