"""Label-free validators: each against an independent formula (numpy loops on tiny inputs), never reading a target
label, changing no training number, recorded in the protocol only away from its default, selectable by name."""

import math
import random

import numpy as np
import pytest
import torch
from helpers import crafted_suite, write_run
from torch import nn

from udabench.analysis.records import load_records
from udabench.engine.identity import suite_identity
from udabench.engine.rows import protocol
from udabench.engine.validate import ImagesOnly, score_validators, validator_sample
from udabench.errors import UdabenchError
from udabench.models.deeplabv2 import SegOutput
from udabench.selection import SELECTIONS, get_selection, select
from udabench.validators import (
    VALIDATORS,
    batch_nuclear_norm,
    discriminator_accuracy,
    information_maximization,
    mean_entropy,
    sample_pixels,
    soft_neighbourhood_density,
)


def probs(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).mul(2).softmax(1)


def test_mean_entropy_is_the_mean_of_normalised_pixel_entropies():
    p = probs(2, 3, 2, 4).numpy()
    total, count = 0.0, 0
    for n in range(2):
        for h in range(2):
            for w in range(4):
                total += -sum(p[n, c, h, w] * math.log(p[n, c, h, w]) for c in range(3)) / math.log(3)
                count += 1
    assert mean_entropy(torch.from_numpy(p)) == pytest.approx(total / count, rel=1e-9)


def test_information_maximisation_is_entropy_of_the_mean_minus_mean_entropy():
    p = probs(2, 4, 3, 3).numpy()
    columns = [p[n, :, h, w] for n in range(2) for h in range(3) for w in range(3)]
    mean = [sum(col[c] for col in columns) / len(columns) for c in range(4)]
    h_mean = -sum(m * math.log(m) for m in mean)
    mean_h = sum(-sum(x * math.log(x) for x in col) for col in columns) / len(columns)
    assert information_maximization(torch.from_numpy(p)) == pytest.approx((h_mean - mean_h) / math.log(4), rel=1e-9)
    confident_diverse = torch.eye(4)[None, :, :, None].expand(1, 4, 4, 1)   # one class per pixel, all classes
    assert information_maximization(confident_diverse) == pytest.approx(1.0, abs=1e-9)


def test_bnm_is_the_sum_of_singular_values_over_the_rows():
    a = probs(3, 5, 4).transpose(1, 2).numpy()            # 3 images × 4 pixels × 5 classes
    flat = a.reshape(-1, 5)
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(flat.T @ flat), 0, None))   # not an SVD: eigenvalues of AᵀA
    assert batch_nuclear_norm(torch.from_numpy(a)) == pytest.approx(singular.sum() / 12, rel=1e-9)


def test_snd_is_the_mean_entropy_of_soft_neighbourhoods_per_image():
    a = probs(2, 3, 5, seed=3).transpose(1, 2).numpy()     # 2 images × 5 pixels × 3 classes
    t, rows = 0.05, []
    for img in a:
        unit = [v / math.sqrt(sum(x * x for x in v)) for v in img]
        for i in range(5):
            logits = [sum(unit[i][c] * unit[j][c] for c in range(3)) / t for j in range(5)]
            top = max(logits)
            e = [math.exp(v - top) for v in logits]
            s = [v / sum(e) for v in e]
            rows.append(-sum(v * math.log(v) for v in s if v > 0))
    assert soft_neighbourhood_density(torch.from_numpy(a), t) == pytest.approx(sum(rows) / len(rows), rel=1e-9)


def test_discriminator_accuracy_is_balanced_over_domains():
    source, target = torch.tensor([-1.0, -2.0, 3.0, -0.5]), torch.tensor([2.0, -1.0])
    right_source = sum(1 for v in source.tolist() if v <= 0) / 4
    right_target = sum(1 for v in target.tolist() if v > 0) / 2
    assert discriminator_accuracy(source, target) == pytest.approx((right_source + right_target) / 2)


def test_pixel_draws_are_fixed_by_the_generator_without_replacement_and_leave_the_global_rng():
    p = probs(2, 3, 4, 5)
    state = torch.get_rng_state()
    a = sample_pixels(p, 7, torch.Generator().manual_seed(1))
    b = sample_pixels(p, 7, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == (2, 7, 3)
    for n in range(2):   # 7 distinct pixels of image n
        pixels = {tuple(p[n, :, h, w].tolist()) for h in range(4) for w in range(5)}
        drawn = {tuple(v) for v in a[n].tolist()}
        assert len(drawn) == 7 and drawn <= pixels


class TinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3, padding=1, stride=2)

    def forward(self, x):
        return SegOutput(self.head(x), None, x[:, :2])


class TinyAdversarial:
    def __init__(self):
        self.d = nn.Conv2d(2, 1, 1)

    def domain_logits(self, out, image):
        return self.d(out.features)


class Items(torch.utils.data.Dataset):
    def __init__(self, n, seed, poison=False):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, 16, 24, generator=g)
        self.poison = poison

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        label = torch.full((16, 24), 255 if self.poison else i % 4, dtype=torch.int64)
        return {"image": self.images[i], "label": label, "name": f"img{i}"}


def scored(poison: bool) -> dict:
    torch.manual_seed(0)
    model, method = TinySeg().eval(), TinyAdversarial()
    suite = crafted_suite(settings={"validators.images": 5, "validators.pixels": 10})
    sample = validator_sample(suite, Items(9, 1, poison), Items(7, 2))
    row = score_validators(model, method, sample, suite, torch.device("cpu"))
    row.pop("validator_seconds")
    return row


def test_validators_never_read_target_labels():
    clean, poisoned = scored(False), scored(True)
    assert clean == poisoned
    assert set(clean) == {"validator_entropy", "validator_im", "validator_bnm", "validator_snd", "validator_disc_acc"}
    assert all(math.isfinite(v) for v in clean.values())
    assert set(ImagesOnly(Items(3, 1), [0, 2])[1]) == {"image"}   # what a validator is handed: the image alone


def test_validators_draw_nothing_from_the_global_generators():
    model, method = TinySeg().eval(), TinyAdversarial()
    suite = crafted_suite(settings={"validators.images": 5})
    sample = validator_sample(suite, Items(9, 1), Items(7, 2))
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    score_validators(model, method, sample, suite, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])


def test_default_validators_leave_ids_and_protocol_alone_and_others_are_recorded():
    default, other = crafted_suite(), crafted_suite(settings={"validators.images": 4})
    assert "validators" not in suite_identity(default) and "validators" not in protocol(default, 0)
    assert suite_identity(other)["validators"]["images"] == 4
    assert protocol(other, 0)["validators"]["images"] == 4
    off = crafted_suite(settings={"validators.images": 0})
    assert validator_sample(off, Items(3, 1)) is None


# step -> (mIoU, validators): each validator's pick by hand
HISTORY = {100: (50.0, {"validator_entropy": 0.5, "validator_im": 0.1, "validator_bnm": 0.2, "validator_snd": 3.0,
                        "validator_disc_acc": 0.8}),
           200: (40.0, {"validator_entropy": 0.2, "validator_im": 0.3, "validator_bnm": 0.1, "validator_snd": 3.5,
                        "validator_disc_acc": 0.7}),
           300: (45.0, {"validator_entropy": 0.3, "validator_im": 0.2, "validator_bnm": 0.4, "validator_snd": 3.1,
                        "validator_disc_acc": 0.6}),
           400: (30.0, {"validator_entropy": 0.4, "validator_im": 0.3, "validator_bnm": 0.3, "validator_snd": 2.0,
                        "validator_disc_acc": 0.9})}
PICKS = {"entropy": 200, "info-max": 400, "bnm": 300, "snd": 200, "disc-acc": 300}   # info-max: tie -> later


@pytest.mark.parametrize("name", list(PICKS))
def test_selection_by_a_validator_is_the_hand_computed_pick(tmp_path, name):
    write_run(tmp_path, "advent", "AdvEnt", 0, [(s, [m, m], v) for s, (m, v) in HISTORY.items()])
    assert select(load_records(tmp_path), name)["step"].tolist() == [PICKS[name]]
    assert not get_selection(name).leaks_target_labels


def test_every_validator_has_a_protocol_and_a_clear_hint_when_rows_lack_it(tmp_path):
    assert {v.selection for v in VALIDATORS.values()} <= set(SELECTIONS)
    write_run(tmp_path, "minent", "MinEnt", 0, [(100, [1.0, 1.0]), (200, [2.0, 2.0])])
    with pytest.raises(UdabenchError, match="validator_disc_acc.*AdvEnt, FADA"):
        select(load_records(tmp_path), "disc-acc")
