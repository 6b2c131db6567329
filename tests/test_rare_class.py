"""DAFormer's rare-class sampling (engine/rare_class.py) against MIC's ``uda_dataset.py`` restated: the class
probabilities, the images a class is drawn from, resumable draws, and a run that trains with it."""

import json

import numpy as np
import pytest
import torch

from udabench.engine.rare_class import RareClassSampler, rare_class_probs
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
    drawn = np.bincount([i for i, _ in first], minlength=3) / len(first)
    # class 2 (rarest) is drawn most and only image 1 has it above 3000 pixels
    assert drawn[1] > 0.4 and drawn[1] == pytest.approx(rare_class_probs(COUNTS, 0.01)[1][2], abs=0.08)
    with pytest.raises(ConfigError, match="rcs_min_pixels"):
        RareClassSampler(COUNTS, 0.01, 20000, seed=0)


def test_a_run_trains_with_rare_class_sampling(write_suite, tmp_path):
    from udabench.config import load_suite
    from udabench.engine.runner import run_suite

    suite = load_suite(write_suite(iterations=2), ["train.source_sampler=rare_class", "train.rcs_min_pixels=0"])
    outcome = run_suite(suite, tmp_path, methods=["source_only"])[0]
    assert outcome.status == "trained"
    assert outcome.spec.rundir.rows()[-1]["protocol"]["source_sampler"] == "rare_class"
