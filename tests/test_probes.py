"""Probes against independent references: numpy/scipy on small inputs, and
closed forms. Every probe returns one value per seed ([S]); references are
computed seed by seed, directly from the definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from learnscope.probes.geometry import effective_rank, kernel_alignment, neural_collapse
from learnscope.probes.weights import seed_sq_norm

EPS = 1e-7  # effective_rank's smoothing, part of its definition
GEOM_RTOL = 1e-6  # float64 geometry
MODEL_RTOL = 1e-5  # values computed from float32 model outputs


def t64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    return scipy.stats.ortho_group.rvs(n, random_state=rng) if n > 1 else np.ones((1, 1))


# ---------------------------------------------------------------- references


def ref_effective_rank(f: np.ndarray) -> float:
    sigma = scipy.linalg.svdvals(f)
    p = sigma / sigma.sum() + EPS
    return float(np.exp(-np.sum(p * np.log(p))))


def ref_neural_collapse(h: np.ndarray, y: np.ndarray, w: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Papyan, Han & Donoho (2020), directly, over the classes present in y."""
    n, d = h.shape
    present = sorted(set(int(c) for c in y))
    cp = len(present)
    mu_g = h.mean(0)
    mu = {c: h[y == c].mean(0) for c in present}

    sigma_w = np.zeros((d, d))
    for i in range(n):
        r = h[i] - mu[int(y[i])]
        sigma_w += np.outer(r, r)
    sigma_w /= n
    sigma_b = np.zeros((d, d))
    for c in present:
        r = mu[c] - mu_g
        sigma_b += np.outer(r, r)
    sigma_b /= cp
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / cp

    m = np.stack([mu[c] - mu_g for c in present])  # [C', D]
    g = m @ m.T
    etf = (np.eye(cp) - np.ones((cp, cp)) / cp) / np.sqrt(cp - 1)
    nc2 = np.linalg.norm(g / np.linalg.norm(g) - etf)

    wp = w[present]
    nc3 = np.linalg.norm(wp / np.linalg.norm(wp) - m / np.linalg.norm(m)) ** 2

    agree = 0
    for i in range(n):
        dists = [np.linalg.norm(h[i] - mu[c]) for c in present]
        nearest = present[int(np.argmin(dists))]
        agree += int(nearest == int(np.argmax(logits[i])))
    nc4 = agree / n
    return {"nc1": nc1, "nc2": nc2, "nc3": nc3, "nc4": nc4}


def ref_kernel_alignment(f: np.ndarray, y: np.ndarray) -> float:
    n = f.shape[0]
    k, l_ = f @ f.T, y @ y.T
    hc = np.eye(n) - np.ones((n, n)) / n
    hkh, hlh = hc @ k @ hc, hc @ l_ @ hc
    return float(np.sum(hkh * hlh) / (np.linalg.norm(hkh) * np.linalg.norm(hlh)))


def er_bounds(m: int) -> tuple[float, float]:
    """Exact range of effective_rank for min(N, D) = m singular values: the
    smoothed entropy -sum (q+eps) log(q+eps) is concave and symmetric on the
    simplex, so it is smallest at a vertex (rank 1) and largest at uniform q."""
    lo = -(1 + EPS) * np.log1p(EPS) - (m - 1) * EPS * np.log(EPS)
    hi = -m * (1 / m + EPS) * np.log(1 / m + EPS)
    return float(np.exp(lo)), float(np.exp(hi))


def closed_form_er(k: int, m: int) -> float:
    """k equal nonzero singular values out of m."""
    q = 1 / k + EPS
    return float(np.exp(-(k * q * np.log(q) + (m - k) * EPS * np.log(EPS))))


# ---------------------------------------------------------------- effective rank


@pytest.mark.parametrize("n,d", [(7, 4), (4, 9), (6, 6)])
def test_effective_rank_matches_svd_reference(n, d):
    rng = np.random.default_rng(0)
    # columns with very different scales so the value is far from min(n, d)
    f = rng.normal(size=(3, n, d)) * np.logspace(0, -2, d)
    got = effective_rank(t64(f))
    assert got.shape == (3,) and got.dtype == torch.float64
    want = [ref_effective_rank(f[s]) for s in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=GEOM_RTOL)
    # the three seeds really differ: a seed mix-up would be caught
    assert len(set(np.round(want, 6))) == 3


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_effective_rank_k_equal_singular_values(k):
    rng = np.random.default_rng(10 + k)
    n, d = 8, 6
    feats = []
    for scale in (0.5, 3.0, 40.0):
        u, v = orthogonal(n, rng)[:, :k], orthogonal(d, rng)[:, :k]
        feats.append(scale * u @ v.T)  # k singular values equal to `scale`
    got = effective_rank(t64(np.stack(feats))).numpy()
    m = min(n, d)
    np.testing.assert_allclose(got, closed_form_er(k, m), rtol=1e-9)
    # and that closed form is k up to the epsilon: |entropy shift| <= m*eps*|log eps|
    np.testing.assert_allclose(got, k, rtol=m * EPS * -np.log(EPS) * 1.01)


def test_effective_rank_rank_one_outer_product():
    rng = np.random.default_rng(3)
    f = np.stack([np.outer(rng.normal(size=10), rng.normal(size=5)) for _ in range(2)])
    got = effective_rank(t64(f)).numpy()
    assert np.all(np.abs(got - 1) < 5 * EPS * -np.log(EPS))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_effective_rank_properties(shape, data, seed):
    s, n, d = shape
    f = data.draw(
        hnp.arrays(np.float64, shape, elements=st.floats(-10, 10, allow_nan=False, allow_subnormal=False))
    )
    assume(all(np.linalg.norm(f[i]) > 1e-3 for i in range(s)))
    got = effective_rank(t64(f)).numpy()
    lo, hi = er_bounds(min(n, d))
    assert np.all(got >= lo * (1 - 1e-12)) and np.all(got <= hi * (1 + 1e-12)), (got, lo, hi)
    assert np.all(got >= 1 - 2 * EPS) and np.all(got <= min(n, d) * (1 + min(n, d) * EPS))
    # invariant to an orthogonal rotation of the feature space
    q = orthogonal(d, np.random.default_rng(seed))
    rotated = effective_rank(t64(f @ q)).numpy()
    np.testing.assert_allclose(rotated, got, rtol=1e-8)
    np.testing.assert_allclose(got, [ref_effective_rank(f[i]) for i in range(s)], rtol=1e-8)


# ---------------------------------------------------------------- neural collapse


def nc_data(rng, s, n, d, c, spread=0.7, absent=()):
    """Class means in general position plus within-class noise; `absent[s]`
    lists classes that seed s never shows."""
    feats, labels = [], []
    for i in range(s):
        classes = [k for k in range(c) if k not in (absent[i] if absent else ())]
        y = np.array(classes * (n // len(classes) + 1))[:n]
        rng.shuffle(y)
        centers = rng.normal(size=(c, d)) * 2.0
        feats.append(centers[y] + spread * rng.normal(size=(n, d)))
        labels.append(y)
    return np.stack(feats), np.stack(labels)


def run_nc(h, y, w, logits, c):
    out = neural_collapse(t64(h), torch.as_tensor(y, dtype=torch.long), t64(w), t64(logits), c)
    assert set(out) == {"nc1", "nc2", "nc3", "nc4"}
    for v in out.values():
        assert v.shape == (h.shape[0],)
    return {k: v.numpy() for k, v in out.items()}


def assert_nc_matches(got, h, y, w, logits):
    for s in range(h.shape[0]):
        want = ref_neural_collapse(h[s], y[s], w[s], logits[s])
        for key in ("nc1", "nc2", "nc3"):
            np.testing.assert_allclose(got[key][s], want[key], rtol=GEOM_RTOL, err_msg=f"{key} seed {s}")
        assert got["nc4"][s] == pytest.approx(want["nc4"], abs=1e-12), f"nc4 seed {s}"


def test_neural_collapse_matches_direct_reference():
    rng = np.random.default_rng(1)
    s, n, d, c = 3, 40, 6, 4
    h, y = nc_data(rng, s, n, d, c)
    w = rng.normal(size=(s, c, d))
    # logits: noisy nearest-class-mean scores, so nc4 is strictly between 0 and 1
    means = np.stack([[h[i][y[i] == k].mean(0) for k in range(c)] for i in range(s)])
    logits = -np.linalg.norm(h[:, :, None, :] - means[:, None], axis=-1) + rng.normal(size=(s, n, c)) * 2.0
    got = run_nc(h, y, w, logits, c)
    assert_nc_matches(got, h, y, w, logits)
    assert np.all((got["nc4"] > 0) & (got["nc4"] < 1))
    assert np.all(got["nc1"] > 1e-3)


def test_neural_collapse_unbalanced_classes_and_wide_features():
    rng = np.random.default_rng(2)
    s, n, d, c = 2, 33, 9, 3
    h, _ = nc_data(rng, s, n, d, c, spread=1.5)
    # unbalanced counts: mu_G differs from the mean of the class means
    y = np.stack([rng.choice(c, size=n, p=[0.6, 0.3, 0.1]) for _ in range(s)])
    assert all(len(set(row)) == c for row in y)
    centers = rng.normal(size=(s, c, d)) * 2
    h = h + np.take_along_axis(centers, y[:, :, None], 1)
    w = rng.normal(size=(s, c, d))
    logits = h @ w.transpose(0, 2, 1)
    got = run_nc(h, y, w, logits, c)
    assert_nc_matches(got, h, y, w, logits)


def etf_geometry(c, d, scale, rng):
    """Rows: a scaled simplex ETF, padded to d dims and rotated."""
    etf = np.eye(c) - np.ones((c, c)) / c
    means = np.zeros((c, d))
    means[:, :c] = scale * etf
    return means @ orthogonal(d, rng)


@pytest.mark.parametrize("c,d", [(4, 4), (4, 7), (3, 5)])
def test_neural_collapse_at_simplex_etf_collapse(c, d):
    rng = np.random.default_rng(20 + c + d)
    s, per_class = 2, 5
    h, y, w, logits = [], [], [], []
    for i in range(s):
        means = etf_geometry(c, d, scale=1.5 + i, rng=rng)
        # seed 1: a global shift of the features (nc1-nc3 may not depend on it),
        # with the matching bias -offset @ W' in the logits
        offset = rng.normal(size=d) * 3.0 if i == 1 else np.zeros(d)
        lab = np.repeat(np.arange(c), per_class)
        rng.shuffle(lab)
        feats = means[lab] + offset
        readout = means * 0.37  # readout proportional to the centered means
        h.append(feats)
        y.append(lab)
        w.append(readout)
        logits.append(feats @ readout.T - offset @ readout.T)
    h, y, w, logits = np.stack(h), np.stack(y), np.stack(w), np.stack(logits)
    got = run_nc(h, y, w, logits, c)
    for i in range(s):
        assert ref_neural_collapse(h[i], y[i], w[i], logits[i])["nc4"] == 1.0
    assert np.all(np.abs(got["nc1"]) < 1e-20)
    np.testing.assert_allclose(got["nc2"], 0, atol=1e-12)
    np.testing.assert_allclose(got["nc3"], 0, atol=1e-12)
    assert np.all(got["nc4"] == 1.0)


def test_neural_collapse_far_from_etf_is_large():
    """Closed form: two classes' means coincide (C=3, equal counts, means
    a, a, -2a): G/||G|| = [[1,1,-2],[1,1,-2],[-2,-2,4]]/6, and
    nc2 = ||that - (I - 11'/3)/sqrt(2)||_F."""
    rng = np.random.default_rng(4)
    d, c = 5, 3
    a = rng.normal(size=d)
    means = np.stack([a, a, -2 * a])
    y = np.repeat(np.arange(c), 4)
    h = means[y][None]
    w = rng.normal(size=(1, c, d))
    logits = rng.normal(size=(1, len(y), c))
    got = run_nc(h, y[None], w, logits, c)
    g = np.array([[1, 1, -2], [1, 1, -2], [-2, -2, 4]]) / 6
    want = np.linalg.norm(g - (np.eye(3) - 1 / 3) / np.sqrt(2))
    np.testing.assert_allclose(got["nc2"], want, rtol=1e-12)
    m = means - means.mean(0)
    want3 = np.linalg.norm(w[0] / np.linalg.norm(w[0]) - m / np.linalg.norm(m)) ** 2
    np.testing.assert_allclose(got["nc3"], want3, rtol=1e-12)


def test_neural_collapse_absent_classes_left_out():
    """Seed 0 shows all 5 classes, seed 1 lacks class 2, seed 2 lacks 0 and 4:
    each seed equals the reference computed over its present classes only
    (ETF over C' classes, nc3 over the present rows of W)."""
    rng = np.random.default_rng(5)
    s, n, d, c = 3, 30, 7, 5
    absent = [(), (2,), (0, 4)]
    h, y = nc_data(rng, s, n, d, c, absent=absent)
    for i, missing in enumerate(absent):
        assert set(y[i]) == set(range(c)) - set(missing)
    w = rng.normal(size=(s, c, d))
    logits = rng.normal(size=(s, n, c))
    got = run_nc(h, y, w, logits, c)
    assert_nc_matches(got, h, y, w, logits)
    # the absent rows of W really are ignored
    w2 = w.copy()
    w2[1, 2] *= 100.0
    w2[2, [0, 4]] = rng.normal(size=(2, d)) * 50
    got2 = run_nc(h, y, w2, logits, c)
    np.testing.assert_allclose(got2["nc3"], got["nc3"], rtol=1e-12)


def test_neural_collapse_absent_class_at_collapse():
    """ETF over the 3 present classes out of C=4: nc1, nc2, nc3 vanish."""
    rng = np.random.default_rng(6)
    c, d = 4, 5
    means = etf_geometry(3, d, scale=2.0, rng=rng)
    present = [0, 1, 3]
    y = np.repeat(present, 3)
    h = np.zeros((len(y), d))
    for k, cls in enumerate(present):
        h[y == cls] = means[k]
    w = np.zeros((c, d))
    w[present] = means
    w[2] = rng.normal(size=d) * 10  # absent class: must not count
    logits = h @ w[present].T
    full_logits = np.full((len(y), c), -1e9)
    full_logits[:, present] = logits
    got = run_nc(h[None], y[None], w[None], full_logits[None], c)
    assert abs(got["nc1"][0]) < 1e-20
    assert got["nc2"][0] == pytest.approx(0, abs=1e-12)
    assert got["nc3"][0] == pytest.approx(0, abs=1e-12)
    assert got["nc4"][0] == 1.0


def test_neural_collapse_nc4_ignores_absent_class_centers():
    """C=3, class 1 absent. Points near the origin belong to classes 0 and 2;
    their nearest *present* center is their own, and the logits say so: nc4 = 1.
    (An absent class has no center; it must not win the nearest-center vote.)"""
    h = np.array([[5.0, 0.0], [5.0, 1.0], [0.6, 0.0], [-5.0, 0.0], [-5.0, -1.0], [-0.6, 0.0]])
    y = np.array([0, 0, 0, 2, 2, 2])
    logits = np.zeros((6, 3))
    logits[np.arange(6), y] = 1.0
    w = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    got = run_nc(h[None], y[None], w[None], logits[None], 3)
    assert got["nc4"][0] == 1.0
    assert ref_neural_collapse(h, y, w, logits)["nc4"] == 1.0


def test_neural_collapse_translation_invariant():
    """NC1-NC3 depend on features only through centered quantities, and NC4's
    nearest-center rule commutes with a shift: translating the features by a
    constant vector changes nothing."""
    rng = np.random.default_rng(12)
    s, n, d, c = 2, 40, 6, 4
    h, y = nc_data(rng, s, n, d, c, spread=1.5)
    w = rng.normal(size=(s, c, d))
    logits = rng.normal(size=(s, n, c))
    base = run_nc(h, y, w, logits, c)
    shifted = run_nc(h + 1e3 * rng.normal(size=(s, 1, d)), y, w, logits, c)
    for key in ("nc1", "nc2", "nc3"):
        np.testing.assert_allclose(shifted[key], base[key], rtol=GEOM_RTOL, err_msg=key)
    np.testing.assert_array_equal(shifted["nc4"], base["nc4"])


def test_neural_collapse_nc1_large_common_offset():
    """Same data as a well-separated case, shifted by 1e7 in every coordinate:
    the reference (pinv of Sigma_B) still gives the unshifted nc1 (to 1e-8),
    and so must the probe (an uncentred pinv once returned ~7.5e17)."""
    rng = np.random.default_rng(0)
    h, y = nc_data(rng, 1, 60, 6, 4, spread=1.5)
    w = rng.normal(size=(1, 4, 6))
    logits = rng.normal(size=(1, 60, 4))
    base = ref_neural_collapse(h[0], y[0], w[0], logits[0])["nc1"]
    shifted = h + 1e7
    want = ref_neural_collapse(shifted[0], y[0], w[0], logits[0])["nc1"]
    assert want == pytest.approx(base, rel=1e-8)  # the reference is stable here
    got = run_nc(shifted, y, w, logits, 4)["nc1"]
    np.testing.assert_allclose(got, want, rtol=GEOM_RTOL)


def test_neural_collapse_float32_features_match_a_float64_reference():
    """Post-ReLU float32 features of a trained-looking network: balanced classes,
    every feature positive with a common offset. Sigma_B has rank C - 1 < C
    (the weighted class means sum to zero); in float32 that zero direction is
    rounding noise of ~1e-7 relative, above the pseudo-inverse's cut-off, and
    NC1 came out ~1e10. The probe computes in float64 from the float32 values,
    as the reference does."""
    rng = np.random.default_rng(5)
    s, n, d, c = 2, 1000, 64, 10
    y = np.tile(np.arange(c), (s, n // c))
    centers = rng.normal(size=(s, c, d)) * 2
    h = (np.maximum(np.take_along_axis(centers, y[..., None], 1) + rng.normal(size=(s, n, d)), 0) + 5)
    h32 = h.astype(np.float32)
    w = rng.normal(size=(s, c, d)).astype(np.float32)
    logits = rng.normal(size=(s, n, c)).astype(np.float32)
    out = neural_collapse(torch.as_tensor(h32), torch.as_tensor(y), torch.as_tensor(w), torch.as_tensor(logits), c)
    for i in range(s):
        want = ref_neural_collapse(h32[i].astype(np.float64), y[i], w[i].astype(np.float64),
                                   logits[i].astype(np.float64))
        assert 0.01 < want["nc1"] < 10  # the reference is well defined here
        for key in ("nc1", "nc2", "nc3", "nc4"):
            assert out[key].dtype == torch.float64
            np.testing.assert_allclose(out[key][i].item(), want[key], rtol=GEOM_RTOL, err_msg=f"{key} seed {i}")


@pytest.mark.parametrize("call,fragment", [
    (lambda: neural_collapse(torch.ones(2, 5, 3), torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4, 3),
                             torch.ones(2, 5), 4), "logits must be [S, N, C]"),
    (lambda: neural_collapse(torch.ones(2, 5, 3), torch.zeros(2, 5), torch.ones(2, 4, 3), torch.ones(2, 5, 4), 4),
     "labels must hold integers"),
    (lambda: neural_collapse(torch.ones(2, 5, 3), torch.zeros(2, 6, dtype=torch.long), torch.ones(2, 4, 3),
                             torch.ones(2, 5, 4), 4), "labels has N = 6"),
    (lambda: neural_collapse(torch.ones(2, 5, 3), torch.full((2, 5), 4), torch.ones(2, 4, 3),
                             torch.ones(2, 5, 4), 4), "labels must lie in 0..3"),
    (lambda: neural_collapse(torch.ones(2, 5, 3), torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 3, 3),
                             torch.ones(2, 5, 3), 4), "classes = 4"),
    (lambda: effective_rank(torch.ones(5, 3, dtype=torch.long)), "features must be [S, N, D]"),
    (lambda: effective_rank(torch.ones(2, 5, 3, dtype=torch.long)), "features must hold floating-point"),
    (lambda: kernel_alignment(torch.ones(2, 5, 3), torch.ones(3, 5, 2)), "targets has S = 3"),
    (lambda: kernel_alignment(np.ones((2, 5, 3)), torch.ones(2, 5, 2)), "must be a torch.Tensor"),
])
def test_probe_functions_refuse_bad_arguments_in_one_line(call, fragment):
    from learnscope.errors import LearnscopeError

    with pytest.raises(LearnscopeError) as info:
        call()
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_geometry_of_float32_inputs_is_float64():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(2, 30, 5)) * np.logspace(0, -3, 5)
    y = rng.normal(size=(2, 30, 3))
    got = effective_rank(torch.as_tensor(f, dtype=torch.float32))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got, [ref_effective_rank(f[i].astype(np.float32).astype(np.float64)) for i in range(2)],
                               rtol=1e-6)
    got = kernel_alignment(torch.as_tensor(f, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
    want = [ref_kernel_alignment(f[i].astype(np.float32).astype(np.float64), y[i].astype(np.float32).astype(np.float64))
            for i in range(2)]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got, want, rtol=1e-8)


# ---------------------------------------------------------------- kernel alignment


def test_kernel_alignment_matches_nxn_reference():
    rng = np.random.default_rng(7)
    s, n, d, k = 3, 25, 6, 3
    y = rng.normal(size=(s, n, k))
    f = rng.normal(size=(s, n, d)) + y @ rng.normal(size=(k, d)) + 5.0  # uncentered
    got = kernel_alignment(t64(f), t64(y))
    assert got.shape == (s,)
    want = [ref_kernel_alignment(f[i], y[i]) for i in range(s)]
    np.testing.assert_allclose(got.numpy(), want, rtol=GEOM_RTOL)
    assert all(0.05 < v < 0.95 for v in want)


def test_kernel_alignment_one_hot_targets():
    rng = np.random.default_rng(8)
    n, c = 30, 4
    lab = rng.integers(0, c, size=(2, n))
    y = np.eye(c)[lab]
    f = rng.normal(size=(2, n, 5)) + 1.5 * np.eye(c, 5)[lab]
    got = kernel_alignment(t64(f), t64(y)).numpy()
    np.testing.assert_allclose(got, [ref_kernel_alignment(f[i], y[i]) for i in range(2)], rtol=GEOM_RTOL)


def test_kernel_alignment_identical_rotated_scaled_is_one():
    rng = np.random.default_rng(9)
    n, k = 20, 4
    y = rng.normal(size=(3, n, k))
    q = orthogonal(k, rng)
    f = np.stack([y[0], 2.5 * y[1] @ q, 0.1 * y[2] @ q])
    got = kernel_alignment(t64(f), t64(y)).numpy()
    np.testing.assert_allclose(got, 1.0, rtol=1e-12)
    # translating features (per-column constant) changes nothing: centered
    got2 = kernel_alignment(t64(f + rng.normal(size=(3, 1, k)) * 10), t64(y)).numpy()
    np.testing.assert_allclose(got2, 1.0, rtol=1e-12)
    # rotated features padded with extra zero dimensions: same kernel
    padded = np.concatenate([3.0 * y @ q, np.zeros((3, n, 2))], -1)
    np.testing.assert_allclose(kernel_alignment(t64(padded), t64(y)).numpy(), 1.0, rtol=1e-12)


def test_kernel_alignment_orthogonal_to_targets_is_zero():
    rng = np.random.default_rng(10)
    n, d, k = 15, 4, 2
    y = rng.normal(size=(1, n, k))
    basis = np.concatenate([np.ones((n, 1)), y[0]], 1)
    proj = np.eye(n) - basis @ np.linalg.pinv(basis)
    f = (proj @ rng.normal(size=(n, d)))[None]  # centered and orthogonal to span(Y)
    got = kernel_alignment(t64(f), t64(y)).numpy()
    assert abs(got[0]) < 1e-12
    assert abs(ref_kernel_alignment(f[0], y[0])) < 1e-12
    # while the same features plus a component along Y are clearly aligned
    g = f + 0.5 * y[:, :, :1]
    assert kernel_alignment(t64(g), t64(y)).numpy()[0] > 0.01


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(2, 8), st.integers(1, 5), st.integers(1, 3)),
    data=st.data(),
    scale=st.floats(1e-3, 1e3),
)
def test_kernel_alignment_properties(shape, data, scale):
    s, n, d, k = shape
    elems = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)
    f = data.draw(hnp.arrays(np.float64, (s, n, d), elements=elems))
    y = data.draw(hnp.arrays(np.float64, (s, n, k), elements=elems))
    for a in (f, y):
        for i in range(s):
            centered = a[i] - a[i].mean(0)
            assume(np.linalg.norm(centered) > 1e-3 * (1 + np.linalg.norm(a[i])))
    got = kernel_alignment(t64(f), t64(y)).numpy()
    assert np.all(got >= -1e-12) and np.all(got <= 1 + 1e-12), got
    scaled = kernel_alignment(t64(f * scale), t64(y)).numpy()
    np.testing.assert_allclose(scaled, got, rtol=1e-9, atol=1e-12)
    want = [ref_kernel_alignment(f[i], y[i]) for i in range(s)]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- weights


def test_seed_sq_norm_matches_numpy():
    rng = np.random.default_rng(11)
    arrays = [rng.normal(size=(3, 4, 5)), rng.normal(size=(3,)), rng.normal(size=(3, 1, 2, 2))]
    tensors = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in arrays]
    got = seed_sq_norm(tensors)
    assert got.shape == (3,) and got.dtype == torch.float64 and not got.requires_grad
    want = [sum(np.sum(np.float64(np.float32(a[s])) ** 2) for a in arrays) for s in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_seed_sq_norm_squares_in_float64():
    # 1e20 squared overflows float32; the norm must not
    t = torch.full((2, 3), 1e20, dtype=torch.float32)
    t[1] = 2e20
    got = seed_sq_norm([t]).numpy()
    want = [3 * np.float64(np.float32(1e20)) ** 2, 3 * np.float64(np.float32(2e20)) ** 2]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------- end to end through the trainer


SPLITS = ("train", "test")


def snapshot(tr):
    """Everything the references need, read independently of the probes."""
    from learnscope.models.base import Sites

    out = {"params": [p.detach().double().numpy().copy() for p in tr.params]}
    was_training = tr.model.training
    tr.model.eval()
    try:
        with torch.no_grad():
            for split in SPLITS:
                x, y = tr.data.splits[split]
                cap = Sites(read={"hidden.0", "penultimate"})
                logits = tr.model(x, cap)
                out[split] = {
                    "logits": logits.double().numpy().copy(),
                    "y": y.numpy().copy(),
                    "hidden.0": cap.acts["hidden.0"].double().numpy().copy(),
                    "penultimate": cap.acts["penultimate"].double().numpy().copy(),
                }
            out["readout"] = tr.model.readout().double().numpy().copy()
    finally:
        tr.model.train(was_training)
    return out


@pytest.fixture(scope="module")
def trained():
    import learnscope as ls
    from learnscope.train.trainer import Trainer

    exp = ls.Experiment.model_validate(
        dict(
            task=dict(name="gaussian-mixture", classes=3, dim=4, samples=60, test_samples=30),
            model=dict(name="mlp", hidden=[8]),
            recipe=dict(optimizer="sgd", lr=0.1, steps=5, probe_every=1),
            probes=[
                "accuracy",
                "loss",
                "weight_norm",
                "relative_weight_change",
                dict(name="effective_rank", site="hidden.0", split="test"),
                dict(name="kernel_alignment", site="penultimate", split="train"),
                dict(name="neural_collapse"),
            ],
            seeds=3,
        )
    )
    tr = Trainer(exp)
    snap0 = snapshot(tr)
    m0 = {k: v.detach().double().numpy().copy() for k, v in tr.measure().items()}
    tr.train_step()
    snap1 = snapshot(tr)
    m1 = {k: v.detach().double().numpy().copy() for k, v in tr.measure().items()}
    return {"steps": [(m0, snap0), (m1, snap1)], "classes": 3}


STEPS = pytest.mark.parametrize("step", [0, 1])


def test_trainer_metrics_are_per_seed(trained):
    for m, _ in trained["steps"]:
        assert set(m) == {
            "accuracy/train", "accuracy/test", "loss/train", "loss/test", "weight_norm",
            "relative_weight_change", "effective_rank/hidden.0", "kernel_alignment/penultimate",
            "nc1", "nc2", "nc3", "nc4",
        }
        for v in m.values():
            assert v.shape == (3,) and np.all(np.isfinite(v))


@STEPS
def test_trainer_weight_norm(trained, step):
    m, snap = trained["steps"][step]
    want = [np.sqrt(sum(np.sum(p[s] ** 2) for p in snap["params"])) for s in range(3)]
    np.testing.assert_allclose(m["weight_norm"], want, rtol=1e-10)


def test_trainer_relative_weight_change(trained):
    (m0, snap0), (m1, snap1) = trained["steps"]
    assert np.all(m0["relative_weight_change"] == 0.0)
    want = [
        np.sqrt(sum(np.sum((p1[s] - p0[s]) ** 2) for p0, p1 in zip(snap0["params"], snap1["params"])))
        / np.sqrt(sum(np.sum(p0[s] ** 2) for p0 in snap0["params"]))
        for s in range(3)
    ]
    assert all(v > 1e-3 for v in want)  # the step really moved the weights
    np.testing.assert_allclose(m1["relative_weight_change"], want, rtol=1e-6)


@STEPS
@pytest.mark.parametrize("split", SPLITS)
def test_trainer_accuracy_and_loss(trained, step, split):
    m, snap = trained["steps"][step]
    logits, y = snap[split]["logits"], snap[split]["y"]
    acc = [np.mean(np.argmax(logits[s], -1) == y[s]) for s in range(3)]
    np.testing.assert_allclose(m[f"accuracy/{split}"], acc, rtol=1e-6)
    loss = [
        -np.mean(scipy.special.log_softmax(logits[s], -1)[np.arange(len(y[s])), y[s]]) for s in range(3)
    ]
    np.testing.assert_allclose(m[f"loss/{split}"], loss, rtol=MODEL_RTOL)


@STEPS
def test_trainer_effective_rank_site(trained, step):
    m, snap = trained["steps"][step]
    feats = snap["test"]["hidden.0"][:, :2048]
    want = [ref_effective_rank(feats[s]) for s in range(3)]
    np.testing.assert_allclose(m["effective_rank/hidden.0"], want, rtol=MODEL_RTOL)


@STEPS
def test_trainer_kernel_alignment_site(trained, step):
    m, snap = trained["steps"][step]
    feats, y = snap["train"]["penultimate"][:, :2048], snap["train"]["y"][:, :2048]
    onehot = np.eye(trained["classes"])[y]
    want = [ref_kernel_alignment(feats[s], onehot[s]) for s in range(3)]
    np.testing.assert_allclose(m["kernel_alignment/penultimate"], want, rtol=MODEL_RTOL)


@STEPS
def test_trainer_neural_collapse(trained, step):
    m, snap = trained["steps"][step]
    d = snap["train"]
    h, y, logits = d["penultimate"][:, :2048], d["y"][:, :2048], d["logits"][:, :2048]
    for s in range(3):
        want = ref_neural_collapse(h[s], y[s], snap["readout"][s], logits[s])
        for key in ("nc1", "nc2", "nc3"):
            np.testing.assert_allclose(m[key][s], want[key], rtol=MODEL_RTOL, err_msg=f"{key} seed {s}")
        assert m["nc4"][s] == pytest.approx(want["nc4"], abs=1e-12)


def test_probes_on_leading_examples_only():
    """`max_examples` measures on the first examples of a split, and a probe
    step's forward pass covers only what some probe reads."""
    import learnscope as ls
    from learnscope.probes.base import ProbeContext
    from learnscope.train.trainer import Trainer

    def trainer(probes):
        return Trainer(ls.Experiment.model_validate(dict(
            task=dict(name="gaussian-mixture", classes=3, dim=4, samples=60, test_samples=40),
            model=dict(name="mlp", hidden=[8]), recipe=dict(steps=1), probes=probes, seeds=2)))

    subset = trainer([dict(name="accuracy", max_examples=7), dict(name="loss", splits=["test"], max_examples=5)])
    ctx = ProbeContext(subset, 0, subset.probe_needs)
    metrics = {}
    for probe in subset.experiment.probes:
        metrics.update(probe.measure(ctx))
    assert ctx._outputs["train"].shape[1] == 7 and ctx._outputs["test"].shape[1] == 7
    with torch.no_grad():
        for split, k in (("train", 7), ("test", 7)):
            x, y = subset.data.splits[split]
            logits = subset.model(x)[:, :k]
            want = (logits.argmax(-1) == y[:, :k]).double().mean(1).numpy()
            np.testing.assert_allclose(metrics[f"accuracy/{split}"].numpy(), want, rtol=1e-6)  # float32 mean
        x, y = subset.data.splits["test"]
        logits = subset.model(x)[:, :5].double().numpy()
        want = [-np.mean(scipy.special.log_softmax(logits[s], -1)[np.arange(5), y[s, :5].numpy()]) for s in range(2)]
        np.testing.assert_allclose(metrics["loss/test"].numpy(), want, rtol=MODEL_RTOL)

    sites_only = trainer([dict(name="effective_rank", site="hidden.0", split="test", max_examples=9)])
    ctx = ProbeContext(sites_only, 0, sites_only.probe_needs)
    sites_only.experiment.probes[0].measure(ctx)
    assert ctx._outputs["test"].shape[1] == 9 and "train" not in ctx._outputs
