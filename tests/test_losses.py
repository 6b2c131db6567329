"""Losses vs independent float64 references written from the papers' formulas.

The references below are written plainly (numpy, explicit loops over images / classes / pixels) from the
specification of each loss, not from ``udabench/losses.py``; every comparison uses random inputs with
batch size > 1 (and masks / ignored pixels where the loss has them) and a relative tolerance of 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from udabench import losses

RTOL = 1e-6


# ----------------------------------------------------------------------------- helpers

def rand_logits(n, c, h, w, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64) * scale


def rand_prob(n, c, h, w, seed=0, scale=2.0):
    return rand_logits(n, c, h, w, seed, scale).softmax(1)


def assert_close(actual, expected, rtol=RTOL):
    a = np.asarray(actual.detach().cpu().numpy() if torch.is_tensor(actual) else actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    assert np.all(np.isfinite(a)), a
    # relative error, with a tiny floor on the denominator for entries that are exactly 0
    err = np.abs(a - e) / np.maximum(np.abs(e), 1e-12)
    assert np.max(err, initial=0.0) < rtol, f"max rel err {np.max(err)}\nactual={a}\nexpected={e}"


def np64(t):
    return t.detach().cpu().numpy().astype(np.float64)


def xlogx(p):
    """p·log p with the limit 0·log 0 = 0, scalar."""
    return 0.0 if p == 0.0 else p * math.log(p)


# ----------------------------------------------------------------------------- references

def ref_entropy_map(p):
    n_img, c_num, h, w = p.shape
    out = np.zeros((n_img, h, w))
    for n in range(n_img):
        for i in range(h):
            for j in range(w):
                out[n, i, j] = -sum(xlogx(p[n, c, i, j]) for c in range(c_num)) / math.log(c_num)
    return out


def ref_entropy_loss(p, mask=None):
    e = ref_entropy_map(p)
    if mask is None:
        return e.mean()
    vals = [e[idx] for idx in np.ndindex(*e.shape) if mask[idx]]
    return sum(vals) / len(vals)


def ref_self_information(p):
    c_num = p.shape[1]
    out = np.zeros_like(p)
    for idx in np.ndindex(*p.shape):
        out[idx] = -xlogx(p[idx]) / math.log(c_num)
    return out


def ref_class_ratio_prior(p, prior, mu):
    n_img, c_num = p.shape[:2]
    per_image = []
    for n in range(n_img):
        s = 0.0
        for c in range(c_num):
            s += max(0.0, mu * prior[c] - p[n, c].mean())
        per_image.append(s)
    return sum(per_image) / n_img


def ref_maxsquare(p, ignore=None):
    n_img, c_num, h, w = p.shape
    total, count = 0.0, 0
    for n in range(n_img):
        for i in range(h):
            for j in range(w):
                if ignore is not None and ignore[n, i, j]:
                    continue
                total += sum(p[n, c, i, j] ** 2 for c in range(c_num))
                count += 1
    return -total / (2 * count)


def ref_iw_weights(p_img, alpha):
    """Per-class weights w_c = 1 / (max(N^c, 1)^α N^(1−α)) of one C×H×W image, and its argmax map.

    Eq. 13 is undefined at N^c = 0; the specification counts an unpredicted class as N^c = 1."""
    c_num, h, w = p_img.shape
    amax = p_img.argmax(0)
    n_pix = h * w
    weights = np.zeros(c_num)
    for c in range(c_num):
        n_c = int((amax == c).sum())
        weights[c] = 1.0 / (max(n_c, 1) ** alpha * n_pix ** (1 - alpha))
    return weights, amax


def ref_iw_maxsquare(p, alpha, weight_by):
    n_img, c_num, h, w = p.shape
    per_image = []
    for b in range(n_img):
        weights, amax = ref_iw_weights(p[b], alpha)
        s = 0.0
        for i in range(h):
            for j in range(w):
                for c in range(c_num):
                    wc = weights[c] if weight_by == "channel" else weights[amax[i, j]]
                    s += p[b, c, i, j] ** 2 * wc / 2
        per_image.append(-s)
    return sum(per_image) / n_img


def ref_iw_maxsquare_grad(p, alpha, weight_by):
    """d/dp of mean_b L_b with constant weights: −p·w / B."""
    n_img, c_num, h, w = p.shape
    g = np.zeros_like(p)
    for b in range(n_img):
        weights, amax = ref_iw_weights(p[b], alpha)
        for c in range(c_num):
            for i in range(h):
                for j in range(w):
                    wc = weights[c] if weight_by == "channel" else weights[amax[i, j]]
                    g[b, c, i, j] = -p[b, c, i, j] * wc / n_img
    return g


def ref_fada_soft_labels(logits, temperature, clip):
    n_img, c_num, h, w = logits.shape
    out = np.zeros_like(logits)
    for n in range(n_img):
        for i in range(h):
            for j in range(w):
                z = logits[n, :, i, j] / temperature
                e = np.exp(z - z.max())
                s = e / e.sum()
                out[n, :, i, j] = [min(v, clip) for v in s]
    return out


def ref_fine_grained_adv(d_logits, soft, domain):
    n_img, two_k, h, w = d_logits.shape
    k = soft.shape[1]
    assert two_k == 2 * k
    total = 0.0
    for n in range(n_img):
        for i in range(h):
            for j in range(w):
                z = d_logits[n, :, i, j]
                lse = z.max() + math.log(np.exp(z - z.max()).sum())
                log_sm = z - lse
                a = soft[n, :, i, j]
                t = np.concatenate([a, np.zeros(k)]) if domain == "source" else np.concatenate([np.zeros(k), a])
                total += -sum(t[m] * log_sm[m] for m in range(two_k))
    return total / (n_img * h * w)


# ----------------------------------------------------------------------------- golden values

def test_golden_values_two_class_one_pixel():
    p = torch.tensor([0.5, 0.5], dtype=torch.float64).view(1, 2, 1, 1)
    # H = -(0.5·ln 0.5 + 0.5·ln 0.5) / ln 2 = ln 2 / ln 2 = 1
    assert_close(losses.entropy_map(p), np.array([[[1.0]]]))
    assert_close(losses.entropy_loss(p), np.array(1.0))
    # I_c = -0.5·ln 0.5 / ln 2 = 0.5 for each class
    assert_close(losses.self_information(p), np.full((1, 2, 1, 1), 0.5))
    # maxsquare: -(1/(2·1))·(0.25 + 0.25) = -0.25
    assert_close(losses.maxsquare_loss(p), np.array(-0.25))
    # prior (0.9, 0.1), mu = 1: max(0, 0.9 - 0.5) + max(0, 0.1 - 0.5) = 0.4
    prior = torch.tensor([0.9, 0.1], dtype=torch.float64)
    assert_close(losses.class_ratio_prior_loss(p, prior, mu=1.0), np.array(0.4))

    # p = (0.8, 0.2): H = -(0.8·ln 0.8 + 0.2·ln 0.2)/ln 2 = (0.178515 + 0.321888)/0.693147 = 0.7219280949
    q = torch.tensor([0.8, 0.2], dtype=torch.float64).view(1, 2, 1, 1)
    assert_close(losses.entropy_map(q), np.array([[[0.7219280948873623]]]))
    # maxsquare: -(0.64 + 0.04)/2 = -0.34
    assert_close(losses.maxsquare_loss(q), np.array(-0.34))


def test_golden_iw_maxsquare_two_pixels():
    # one image, C = 2, two pixels: p1 = (0.8, 0.2) (argmax 0), p2 = (0.6, 0.4) (argmax 0).
    # N = 2, N^0 = 2, N^1 = 0, alpha = 0.5:
    #   w_0 = 1/(2^0.5·2^0.5) = 1/2;  w_1 = 1/(max(0, 1)^0.5·2^0.5) = 1/√2  (N^c counted as 1)
    p = torch.tensor([[0.8, 0.6], [0.2, 0.4]], dtype=torch.float64).view(1, 2, 1, 2)
    # channel:      -(0.64·½ + 0.36·½ + (0.04 + 0.16)/√2)/2 = -(0.5 + 0.1414213562)/2 = -0.3207106781
    assert_close(losses.iw_maxsquare_loss(p, alpha=0.5, weight_by="channel"), np.array(-0.32071067811865476))
    # pixel_argmax: every channel gets w_0 = ½: -(0.64 + 0.36 + 0.04 + 0.16)·½/2 = -1.2/4 = -0.3
    assert_close(losses.iw_maxsquare_loss(p, alpha=0.5, weight_by="pixel_argmax"), np.array(-0.3))


def test_golden_fada():
    # logits (0, 0), T anything: softmax = (0.5, 0.5); clip 0.9 leaves it.
    soft = losses.fada_soft_labels(torch.zeros(1, 2, 1, 1, dtype=torch.float64))
    assert_close(soft, np.full((1, 2, 1, 1), 0.5))
    # d_logits all 0 over 2K = 4 channels: log_softmax = ln(1/4) each; source target (0.5, 0.5, 0, 0)
    # loss = -(0.5 + 0.5)·ln(0.25) = ln 4 = 1.3862943611198906
    d = torch.zeros(1, 4, 1, 1, dtype=torch.float64)
    for domain in ("source", "target"):
        assert_close(losses.fine_grained_adversarial_loss(d, soft, domain), np.array(1.3862943611198906))


# ----------------------------------------------------------------------------- entropy family

def test_entropy_map_matches_reference():
    p = rand_prob(3, 5, 4, 6, seed=1)
    e = losses.entropy_map(p)
    assert e.shape == (3, 4, 6)
    assert_close(e, ref_entropy_map(np64(p)))
    assert float(e.min()) >= 0.0 and float(e.max()) <= 1.0 + 1e-12


def test_entropy_map_edge_cases():
    c = 7
    uniform = torch.full((2, c, 2, 3), 1.0 / c, dtype=torch.float64)
    assert_close(losses.entropy_map(uniform), np.ones((2, 2, 3)))
    onehot = torch.zeros(2, c, 2, 3, dtype=torch.float64)
    onehot[:, 3] = 1.0
    onehot[1, :, 0, 0] = 0.0
    onehot[1, 5, 0, 0] = 1.0
    e = losses.entropy_map(onehot)
    assert torch.isfinite(e).all()
    assert np.allclose(np64(e), 0.0, atol=1e-9)


def test_entropy_loss_matches_reference_with_and_without_mask():
    p = rand_prob(3, 4, 5, 6, seed=2)
    assert_close(losses.entropy_loss(p), np.array(ref_entropy_loss(np64(p))))
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(3, 5, 6, generator=g) < 0.4
    assert 0 < int(mask.sum()) < mask.numel()
    assert_close(losses.entropy_loss(p, mask), np.array(ref_entropy_loss(np64(p), mask.numpy())))
    # a mask that keeps only one image's pixels gives that image's mean entropy
    only_second = torch.zeros(3, 5, 6, dtype=torch.bool)
    only_second[1] = True
    assert_close(losses.entropy_loss(p, only_second), np.array(ref_entropy_map(np64(p))[1].mean()))


def test_self_information_matches_reference_and_sums_to_entropy():
    p = rand_prob(2, 6, 3, 5, seed=4)
    i = losses.self_information(p)
    assert i.shape == p.shape
    assert_close(i, ref_self_information(np64(p)))
    assert_close(i.sum(1), np64(losses.entropy_map(p)))
    assert_close(i.sum(1), ref_entropy_map(np64(p)))


# ----------------------------------------------------------------------------- entropy ranking

@pytest.mark.parametrize("fraction,h,w,expected_k", [
    (0.3, 4, 5, 6),      # round(0.3·20) = 6
    (0.25, 6, 6, 9),     # round(0.25·36) = 9
    (0.4, 3, 7, 8),      # round(0.4·21) = round(8.4) = 8
    (0.3, 6, 6, 11),     # round(0.3·36) = round(10.8) = 11 (not truncated to 10)
    (0.01, 4, 5, 1),     # round(0.2) = 0 -> at least 1
    (1.0, 3, 3, 9),      # every pixel
])
def test_entropy_ranking_mask(fraction, h, w, expected_k):
    # sizes are chosen so that fraction·H·W is never exactly x.5 (the rounding of ties is unspecified)
    assert expected_k == max(1, round(fraction * h * w))
    p = rand_prob(3, 5, h, w, seed=5)
    ent = ref_entropy_map(np64(p))
    for n in range(3):  # no ties in the inputs
        assert len(np.unique(ent[n])) == h * w
    m = losses.entropy_ranking_mask(p, fraction=fraction)
    assert m.shape == (3, h, w) and m.dtype == torch.bool
    m = m.numpy()
    for n in range(3):
        assert int(m[n].sum()) == expected_k
        sel, unsel = ent[n][m[n]], ent[n][~m[n]]
        if unsel.size:
            assert sel.min() >= unsel.max()
        # exactly the top-k by the reference entropy
        top = np.argsort(-ent[n].ravel())[:expected_k]
        ref_mask = np.zeros(h * w, dtype=bool)
        ref_mask[top] = True
        assert np.array_equal(m[n].ravel(), ref_mask)


def test_entropy_ranking_mask_is_per_image():
    # image 0 is confident everywhere, image 1 uncertain everywhere: a batch-global ranking would
    # pick only image 1's pixels; the per-image ranking picks k pixels in each.
    p0 = rand_prob(1, 4, 4, 5, seed=6, scale=8.0)
    p1 = rand_prob(1, 4, 4, 5, seed=7, scale=0.1)
    p = torch.cat([p0, p1])
    m = losses.entropy_ranking_mask(p, fraction=0.3)
    assert m[0].sum() == 6 and m[1].sum() == 6


# ----------------------------------------------------------------------------- class-ratio prior

@pytest.mark.parametrize("mu", [0.0, 0.5, 1.0])
def test_class_ratio_prior_matches_reference(mu):
    c = 5
    p = rand_prob(3, c, 4, 5, seed=8, scale=1.5)
    g = torch.Generator().manual_seed(9)
    prior = torch.rand(c, generator=g, dtype=torch.float64) ** 3
    prior = prior / prior.sum()
    ref = ref_class_ratio_prior(np64(p), np64(prior), mu)
    out = losses.class_ratio_prior_loss(p, prior, mu=mu)
    if mu == 0.0:
        assert float(out) == 0.0 and ref == 0.0
    else:
        assert ref > 0
        assert_close(out, np.array(ref))


def test_class_ratio_prior_is_mean_over_images():
    c = 4
    p = rand_prob(3, c, 3, 4, seed=10)
    prior = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)
    per_image = [float(losses.class_ratio_prior_loss(p[i:i + 1], prior, mu=0.8)) for i in range(3)]
    assert_close(losses.class_ratio_prior_loss(p, prior, mu=0.8), np.array(np.mean(per_image)))


# ----------------------------------------------------------------------------- maxsquare

def test_maxsquare_matches_reference():
    p = rand_prob(3, 5, 4, 6, seed=11)
    assert_close(losses.maxsquare_loss(p), np.array(ref_maxsquare(np64(p))))
    g = torch.Generator().manual_seed(12)
    ignore = torch.rand(3, 4, 6, generator=g) < 0.35
    ignore[2] = True  # a fully ignored image must not count toward N
    assert 0 < int(ignore.sum()) < ignore.numel()
    assert_close(losses.maxsquare_loss(p, ignore), np.array(ref_maxsquare(np64(p), ignore.numpy())))


# ----------------------------------------------------------------------------- IW maxsquare

@pytest.mark.parametrize("weight_by", ["channel", "pixel_argmax"])
@pytest.mark.parametrize("alpha", [0.2, 0.7])
def test_iw_maxsquare_matches_reference(weight_by, alpha):
    # class-dependent logit biases make the argmax class counts very unequal
    bias = torch.tensor([2.0, 1.0, 0.0, -0.5, -3.0], dtype=torch.float64).view(1, 5, 1, 1)
    logits = rand_logits(3, 5, 4, 5, seed=13) + bias
    p = logits.softmax(1)
    p1 = p[:1]
    assert_close(losses.iw_maxsquare_loss(p1, alpha=alpha, weight_by=weight_by),
                 np.array(ref_iw_maxsquare(np64(p1), alpha, weight_by)))
    out3 = losses.iw_maxsquare_loss(p, alpha=alpha, weight_by=weight_by)
    assert out3.dim() == 0
    assert_close(out3, np.array(ref_iw_maxsquare(np64(p), alpha, weight_by)))
    singles = [float(losses.iw_maxsquare_loss(p[i:i + 1], alpha=alpha, weight_by=weight_by)) for i in range(3)]
    assert_close(out3, np.array(np.mean(singles)))


def test_iw_maxsquare_forms_differ():
    bias = torch.tensor([2.0, 0.0, -2.0], dtype=torch.float64).view(1, 3, 1, 1)
    p = (rand_logits(2, 3, 4, 4, seed=14) + bias).softmax(1)
    a = float(losses.iw_maxsquare_loss(p, weight_by="channel"))
    b = float(losses.iw_maxsquare_loss(p, weight_by="pixel_argmax"))
    assert abs(a - b) > 1e-6 * abs(a)


@pytest.mark.parametrize("weight_by", ["channel", "pixel_argmax"])
def test_iw_maxsquare_weight_carries_no_gradient(weight_by):
    alpha = 0.3
    bias = torch.tensor([1.5, 0.5, 0.0, -1.0], dtype=torch.float64).view(1, 4, 1, 1)
    p = (rand_logits(3, 4, 3, 4, seed=15) + bias).softmax(1).detach().requires_grad_(True)
    loss = losses.iw_maxsquare_loss(p, alpha=alpha, weight_by=weight_by)
    (grad,) = torch.autograd.grad(loss, p)
    assert_close(grad, ref_iw_maxsquare_grad(np64(p), alpha, weight_by))


@pytest.mark.parametrize("weight_by", ["channel", "pixel_argmax"])
def test_iw_maxsquare_unpredicted_class_clamped(weight_by):
    # class 3 is never the argmax in either image (its logit is pushed far down): w_3 = 1/(1 · 9^0.8)
    logits = rand_logits(2, 4, 3, 3, seed=16)
    logits[:, 3] -= 10.0
    p = logits.softmax(1)
    assert (p.argmax(1) != 3).all()
    weights, _ = ref_iw_weights(np64(p)[0], 0.2)
    assert weights[3] == pytest.approx(1 / 9 ** 0.8)
    out = losses.iw_maxsquare_loss(p, alpha=0.2, weight_by=weight_by)
    assert torch.isfinite(out)
    assert_close(out, np.array(ref_iw_maxsquare(np64(p), 0.2, weight_by)))


def test_iw_maxsquare_bogus_raises():
    with pytest.raises(ValueError):
        losses.iw_maxsquare_loss(rand_prob(1, 3, 2, 2), weight_by="bogus")


# ----------------------------------------------------------------------------- FADA

def test_fada_soft_labels_matches_reference_and_clips():
    logits = rand_logits(2, 4, 3, 4, seed=17)
    logits[0, 1, 0, 0] = 30.0   # confident pixels: softmax(·/T) > 0.9 before clipping
    logits[1, 2, 2, 3] = 25.0
    logits = logits.requires_grad_(True)
    for t, clip in [(1.8, 0.9), (1.0, 0.6)]:
        soft = losses.fada_soft_labels(logits, temperature=t, clip=clip)
        assert soft.shape == logits.shape
        assert not soft.requires_grad
        assert_close(soft, ref_fada_soft_labels(np64(logits), t, clip))
        assert float(soft.max()) <= clip
        sums = soft.sum(1)
        assert float(sums[0, 0, 0]) < 1.0 and float(sums[1, 2, 3]) < 1.0
        # unclipped pixels keep the plain tempered softmax (sum 1)
        unclipped = (np64(soft) < clip).all(1)
        assert unclipped.any()
        assert np.allclose(np64(sums)[unclipped], 1.0)
    # defaults are T = 1.8, clip = 0.9
    assert_close(losses.fada_soft_labels(logits), ref_fada_soft_labels(np64(logits), 1.8, 0.9))


@pytest.mark.parametrize("domain", ["source", "target"])
def test_fine_grained_adversarial_loss_matches_reference(domain):
    k = 3
    d_logits = rand_logits(3, 2 * k, 3, 4, seed=18)
    soft = losses.fada_soft_labels(rand_logits(3, k, 3, 4, seed=19, scale=3.0))
    out = losses.fine_grained_adversarial_loss(d_logits, soft, domain)
    assert out.dim() == 0
    assert_close(out, np.array(ref_fine_grained_adv(np64(d_logits), np64(soft), domain)))


def test_fine_grained_adversarial_domains_differ_and_bad_domain_raises():
    k = 2
    d_logits = rand_logits(2, 2 * k, 2, 2, seed=20)
    soft = losses.fada_soft_labels(rand_logits(2, k, 2, 2, seed=21))
    s = float(losses.fine_grained_adversarial_loss(d_logits, soft, "source"))
    t = float(losses.fine_grained_adversarial_loss(d_logits, soft, "target"))
    assert abs(s - t) > 1e-6
    with pytest.raises(ValueError):
        losses.fine_grained_adversarial_loss(d_logits, soft, "other")
