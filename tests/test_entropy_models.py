"""Entropy models: training likelihoods, frozen tables, and what the range coder makes of them."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from neuralcodec.entropy import rangecoder as rc
from neuralcodec.entropy.categorical import CategoricalModel
from neuralcodec.entropy.cdf import (
    build_tables,
    counts_to_quantized_cdf,
    escape_payload_bits,
    information_bits,
    pmf_to_quantized_cdf,
)
from neuralcodec.entropy.conditionals import (
    GaussianMixtureConditional,
    LaplaceConditional,
    LogisticConditional,
    MixtureParamsFixed,
    normal_cdf_table,
)
from neuralcodec.entropy.models import FactorizedDensity, GaussianConditional
from neuralcodec.entropy.tables import CodingTables, TableError

TOTAL = 1 << 16
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
FAMILIES = [GaussianConditional, LaplaceConditional, LogisticConditional]
# sha256 of normal_cdf_table().tobytes(): the integer table must never change.
NORMAL_TABLE_SHA256 = "60173b1bd7c914c26f277cfc5c6d3cffe25f9de14b9e1db69cfd29ba9a8a1327"


def nll_bits(likelihood: torch.Tensor) -> float:
    return float(-torch.log2(likelihood.double()).sum())


def assert_rate_matches(data: bytes, ideal_bits: float, float_bits: float) -> None:
    """Actual bytes within 1% of the table's ideal length and of the float likelihood."""
    assert abs(len(data) - ideal_bits / 8) <= 0.01 * ideal_bits / 8 + 16
    assert abs(ideal_bits - float_bits) <= 0.01 * float_bits


def assert_tables_equal(a: CodingTables, b: CodingTables) -> None:
    for name in ("cdfs", "cdf_lengths", "offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.precision == b.precision


def roundtrip(values: np.ndarray, indexes: np.ndarray, tables: CodingTables) -> bytes:
    data = rc.encode(values, indexes, tables)
    np.testing.assert_array_equal(rc.decode(data, indexes, tables), values)
    return data


# ------------------------------------------------------------------------ pmf -> cdf


def test_quantized_cdf_gives_every_tiny_probability_a_count():
    pmf = np.array([1e-30, 0.0, 0.5, 1e-300, 0.5, 0.0])
    cdf = pmf_to_quantized_cdf(pmf)
    assert cdf.dtype == np.int32 and cdf.shape == (7,)
    assert cdf[0] == 0 and cdf[-1] == TOTAL and np.all(np.diff(cdf) >= 1)
    freq = np.diff(cdf)
    assert freq[2] == freq[4] and freq[2] + freq[4] == TOTAL - 4


def test_quantized_cdf_one_dominant_symbol_keeps_the_others():
    pmf = np.full(300, 1e-12)
    pmf[123] = 1.0
    freq = np.diff(pmf_to_quantized_cdf(pmf))
    assert freq[123] == TOTAL - 299 and np.all(np.delete(freq, 123) == 1)


def test_quantized_cdf_single_value_plus_escape():
    np.testing.assert_array_equal(pmf_to_quantized_cdf(np.array([1.0, 0.0])), [0, TOTAL - 1, TOTAL])
    np.testing.assert_array_equal(pmf_to_quantized_cdf(np.array([1.0, 1.0]), 1), [0, 1, 2])


def test_quantized_cdf_full_alphabet_and_overflow():
    np.testing.assert_array_equal(np.diff(pmf_to_quantized_cdf(np.ones(256), 8)), np.ones(256))
    with pytest.raises(ValueError, match="do not fit"):
        pmf_to_quantized_cdf(np.ones(257), 8)


@pytest.mark.parametrize(
    "pmf", [np.array([0.5, -0.1, 0.6]), np.array([np.nan, 1.0]), np.zeros(4), np.ones((2, 2))]
)
def test_quantized_cdf_rejects_bad_pmfs(pmf):
    with pytest.raises(ValueError):
        pmf_to_quantized_cdf(pmf)


def test_quantized_cdf_rejects_bad_precision():
    for precision in (0, 17, 16.0):
        with pytest.raises(ValueError, match="precision"):
            pmf_to_quantized_cdf(np.ones(4), precision)


def test_quantized_cdf_is_close_to_the_pmf(rng):
    x = np.arange(-60, 61)
    pmf = np.exp(-0.5 * (x / 9.0) ** 2)
    pmf = np.append(pmf / pmf.sum() * (1 - 1e-9), 1e-9)
    q = np.diff(pmf_to_quantized_cdf(pmf)) / TOTAL
    kl = float(np.sum(pmf * np.log2(pmf / q)))
    entropy = float(-np.sum(pmf * np.log2(pmf)))
    assert kl < 0.005 * entropy


def test_counts_to_cdf_integer_path():
    np.testing.assert_array_equal(
        np.diff(counts_to_quantized_cdf(np.zeros(4, np.int64))), [TOTAL // 4] * 4
    )
    huge = np.array([2**61, 3, 2**60, 0], dtype=np.int64)
    freq = np.diff(counts_to_quantized_cdf(huge))
    assert freq.sum() == TOTAL and freq.min() >= 1 and abs(freq[0] - 2 * freq[2]) <= 2
    with pytest.raises(ValueError):
        counts_to_quantized_cdf(np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        counts_to_quantized_cdf(np.array([1, -2]))


def test_build_tables_pads_and_validates():
    tables = build_tables([np.array([1.0, 0.0]), np.array([1, 2, 3, 4, 0.0])], [5, -2])
    assert tables.cdfs.shape == (2, 6)
    np.testing.assert_array_equal(tables.cdf_lengths, [3, 6])
    np.testing.assert_array_equal(tables.offsets, [5, -2])
    with pytest.raises(ValueError, match="offset"):
        build_tables([np.array([1.0, 0.0])], [0, 1])
    with pytest.raises(ValueError, match="int32"):
        build_tables([np.array([1.0, 0.0])], [2**31])


def test_coding_tables_name_the_first_broken_cdf():
    good = counts_to_quantized_cdf(np.array([3, 1, 1]))
    ok = np.stack([good, good])
    CodingTables(ok, np.array([4, 4]), np.array([0, 0]))
    cases = []
    bad = ok.copy()
    bad[1, 0] = 1  # does not start at 0
    cases.append((bad, np.array([4, 4])))
    bad = ok.copy()
    bad[1, 3] = TOTAL - 1  # does not end at the total
    cases.append((bad, np.array([4, 4])))
    bad = ok.copy()
    bad[1, 2] = bad[1, 1]  # a zero-frequency symbol
    cases.append((bad, np.array([4, 4])))
    for cdfs, lengths in cases:
        with pytest.raises(TableError, match="cdf 1 is not"):
            CodingTables(cdfs, lengths, np.array([0, 0]))
    # entries past a cdf's length are padding and never read
    padded = np.zeros((2, 6), dtype=np.int64)
    padded[0, :4] = good
    padded[1, :4] = good
    padded[1, 4:] = [7, 3]
    CodingTables(padded, np.array([4, 4]), np.array([0, 0]))
    # but the entries within it are: the first broken one is named
    padded[0, 2] = TOTAL + 1
    with pytest.raises(TableError, match="cdf 0 is not"):
        CodingTables(padded, np.array([4, 4]), np.array([0, 0]))


# ------------------------------------------------------------------------ information bits


def test_information_bits_counts_symbols_and_escape_payload():
    tables = build_tables([np.array([0.5, 0.25, 0.25 - 2**-16, 2**-16])], [10])
    freq = np.diff(tables.cdfs[0])
    values = np.array([10, 11, 12, 9, 13, 10 - 1000, 13 + 5000])
    m = np.array([2, 1, 1001, 5001])  # distances of the escaped values (+1)
    expected = (
        -np.log2(freq[[0, 1, 2]] / TOTAL).sum()
        + 4 * -np.log2(freq[3] / TOTAL)
        + (7 + np.floor(np.log2(m))).sum()
    )
    bits = information_bits(values, np.zeros(7, np.int32), tables)
    assert bits == pytest.approx(expected, rel=1e-12)
    payload = escape_payload_bits(values[3:], np.full(4, 10), np.full(4, 3))
    np.testing.assert_array_equal(payload, 7 + np.floor(np.log2(m)))


def test_information_bits_rejects_mismatched_inputs():
    tables = build_tables([np.array([1.0, 1.0])], [0])
    with pytest.raises(ValueError, match="differ"):
        information_bits(np.zeros(3, np.int32), np.zeros(2, np.int32), tables)
    with pytest.raises(ValueError, match="indexes"):
        information_bits(np.zeros(2, np.int32), np.ones(2, np.int32), tables)


def test_escape_heavy_stream_matches_information_bits(rng):
    tables = build_tables([np.array([0.6, 0.3, 0.1])], [0])
    values = rng.integers(-(2**20), 2**20, 20000).astype(np.int32)
    data = roundtrip(values, np.zeros_like(values), tables)
    ideal = information_bits(values, np.zeros_like(values), tables)
    assert abs(len(data) - ideal / 8) <= 0.01 * ideal / 8


# ------------------------------------------------------------------------ factorized density


@pytest.fixture(scope="module")
def density() -> FactorizedDensity:
    torch.manual_seed(7)
    model = FactorizedDensity(6)
    with torch.no_grad():  # distinct, skewed channels at different offsets and widths
        for k, mat in enumerate(model.matrices):
            mat.add_(torch.linspace(-1.0, 1.5, 6)[:, None, None] * (k == 0))
        model.biases[-1].add_(torch.linspace(-3, 3, 6)[:, None, None])
        model.factors[0].add_(0.8)
    return model


@pytest.fixture(scope="module")
def density_tables(density) -> CodingTables:
    return density.freeze()


def test_factorized_parameter_names_are_stable():
    keys = list(FactorizedDensity(2).state_dict())
    assert keys == [
        *(f"matrices.{k}" for k in range(4)),
        *(f"biases.{k}" for k in range(4)),
        *(f"factors.{k}" for k in range(3)),
    ]
    assert list(GaussianConditional().state_dict()) == ["scale_table"]


def test_factorized_channel_indexes():
    idx = FactorizedDensity(3).channel_indexes((2, 3, 2, 2))
    assert idx.dtype == np.int32 and idx.shape == (24,)
    np.testing.assert_array_equal(idx[:12], np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(idx[12:], idx[:12])
    with pytest.raises(ValueError, match="expected"):
        FactorizedDensity(3).channel_indexes((2, 4, 2, 2))


def sample_density(model: FactorizedDensity, tables: CodingTables, rng, n: int) -> np.ndarray:
    """(n // C, C, 1, 1) integers drawn from the float density of each channel."""
    b = n // model.channels
    out = np.empty((b, model.channels, 1, 1), dtype=np.int32)
    for c in range(model.channels):
        lo = int(tables.offsets[c]) - 40
        grid = torch.arange(lo, lo + int(tables.cdf_lengths[c]) + 80, dtype=torch.float32)
        x = torch.zeros(grid.numel(), model.channels, 1, 1)
        x[:, c, 0, 0] = grid
        with torch.no_grad():
            p = model.likelihood(x)[:, c, 0, 0].double().numpy()
        out[:, c, 0, 0] = rng.choice(grid.numpy().astype(np.int32), size=b, p=p / p.sum())
    return out


def test_factorized_rate_matches_estimates(density, density_tables, rng):
    values = sample_density(density, density_tables, rng, 120_000)
    idx = density.channel_indexes(values.shape)
    data = roundtrip(values.reshape(-1), idx, density_tables)
    with torch.no_grad():
        float_bits = nll_bits(density.likelihood(torch.from_numpy(values).float()))
    assert_rate_matches(data, information_bits(values, idx, density_tables), float_bits)


def test_factorized_table_covers_the_mass(density, density_tables):
    for c in range(density.channels):
        lo = int(density_tables.offsets[c])
        n = int(density_tables.cdf_lengths[c]) - 2
        x = torch.zeros(n, density.channels, 1, 1)
        x[:, c, 0, 0] = torch.arange(lo, lo + n, dtype=torch.float32)
        with torch.no_grad():
            mass = float(density.likelihood(x)[:, c].double().sum())
        assert mass > 1 - 1e-6


def test_factorized_escapes_roundtrip(density, density_tables):
    values = np.array([[I32_MIN, I32_MAX, -(10**6), 10**6, 0, 3]], dtype=np.int32)
    values = values.reshape(1, 6, 1, 1)
    roundtrip(values.reshape(-1), density.channel_indexes(values.shape), density_tables)


def test_factorized_freeze_is_deterministic(density, density_tables):
    assert_tables_equal(density.freeze(), density_tables)
    with pytest.raises(ValueError, match="tail_mass"):
        density.freeze(tail_mass=0.0)


def test_tables_survive_arrays_and_safetensors(density_tables, tmp_path, rng):
    arrays = density_tables.to_arrays("y.")
    assert_tables_equal(CodingTables.from_arrays(arrays, "y."), density_tables)
    path = tmp_path / "tables.safetensors"
    save_file(arrays, str(path))
    loaded = CodingTables.from_arrays(load_file(str(path)), "y.")
    assert_tables_equal(loaded, density_tables)
    values = rng.integers(-20, 20, 600).astype(np.int32)
    idx = np.tile(np.arange(6, dtype=np.int32), 100)
    assert rc.encode(values, idx, loaded) == rc.encode(values, idx, density_tables)


def test_factorized_max_half_width_caps_tables(density):
    tables = density.freeze(max_half_width=4)
    assert tables.cdf_lengths.max() <= 2 * 4 + 1 + 2
    values = np.arange(-50, 50, dtype=np.int32).reshape(1, 1, 10, 10).repeat(6, axis=1)
    roundtrip(values.reshape(-1), density.channel_indexes(values.shape), tables)


def test_factorized_freeze_follows_a_shifted_median(rng):
    torch.manual_seed(3)
    model = FactorizedDensity(2)
    with torch.no_grad():  # x -> x - 1000 in front of the network moves channel 1 to ~1000
        model.biases[0][1] -= 1000 * torch.nn.functional.softplus(model.matrices[0][1])
    tables = model.freeze()
    assert tables.offsets[1] > 500 and tables.offsets[0] < 100
    values = sample_density(model, tables, rng, 4000)
    idx = model.channel_indexes(values.shape)
    data = roundtrip(values.reshape(-1), idx, tables)
    assert len(data) * 8 <= information_bits(values, idx, tables) * 1.01 + 128


# ------------------------------------------------------------------------ scale families


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda c: c.__name__)
def conditional(request):
    model = request.param()
    return model, model.freeze()


def test_conditional_tables_are_symmetric_and_deterministic(conditional):
    model, tables = conditional
    assert tables.num_tables == model.scale_table.numel()
    half = -tables.offsets
    np.testing.assert_array_equal(tables.cdf_lengths, 2 * half + 3)
    assert np.all(np.diff(half) >= 0) and half[0] >= 1
    assert_tables_equal(model.freeze(), tables)


def test_gaussian_likelihood_is_the_discretised_normal():
    from scipy.special import ndtr

    v = torch.linspace(-40, 40, 321, dtype=torch.float64)
    s = torch.linspace(0.05, 30, 321, dtype=torch.float64)
    m = torch.linspace(-3, 3, 321, dtype=torch.float64)
    sc = np.maximum(s.numpy(), 0.11)
    c = v.numpy() - m.numpy()
    expected = np.maximum(ndtr((c + 0.5) / sc) - ndtr((c - 0.5) / sc), 1e-9)
    got = GaussianConditional().likelihood(v, s, m).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


def test_conditional_likelihood_sums_to_one(conditional):
    model, _ = conditional
    v = torch.arange(-3000, 3001, dtype=torch.float64)
    for scale in (0.3, 2.0, 40.0):
        lik = model.likelihood(v, torch.full_like(v, scale), torch.full_like(v, 0.3))
        assert float(lik.sum()) == pytest.approx(1.0, abs=1e-5)


def test_conditional_rate_matches_estimates(conditional, rng):
    model, tables = conditional
    n = 200_000
    idx = rng.integers(16, 56, n).astype(np.int32)
    scales = model.scale_table[torch.from_numpy(idx).long()]
    means = torch.from_numpy(rng.uniform(-20, 20, n))
    noise = {
        GaussianConditional: rng.standard_normal(n),
        LaplaceConditional: rng.laplace(size=n),
        LogisticConditional: rng.logistic(size=n),
    }[type(model)]
    y = means + scales * torch.from_numpy(noise)
    values = torch.round(y - means)
    data = roundtrip(values.numpy().astype(np.int32), idx, tables)
    float_bits = nll_bits(model.likelihood(values, scales))
    assert_rate_matches(data, information_bits(values.numpy(), idx, tables), float_bits)


def test_conditional_escapes_roundtrip(conditional):
    model, tables = conditional
    idx = np.array([0, 0, 63, 63, 30, 30, 0], dtype=np.int32)
    half = -tables.offsets[idx]
    values = np.array([I32_MIN, I32_MAX, half[2] + 1, -half[3] - 1, 10**7, -(10**7), 0])
    roundtrip(values.astype(np.int32), idx, tables)


def test_scale_indexes_pick_the_nearest_table_scale_in_log_domain(conditional):
    model, _ = conditional
    table = model.scale_table
    np.testing.assert_array_equal(model.scale_indexes(table), np.arange(table.numel()))
    mid = float(torch.sqrt(table[3] * table[4]))
    probe = torch.tensor(
        [
            [0.0, 0.05, float(table[3]) * 1.001, mid * 0.999, mid * 1.001],
            [1e6, float(table[-1]), -1.0, mid, mid],
        ],
        dtype=torch.float64,
    )
    np.testing.assert_array_equal(model.scale_indexes(probe), [[0, 0, 3, 3, 4], [63, 63, 0, 3, 3]])
    # nearest in log domain: every scale in the table's range is within half a step of its table
    s = torch.exp(torch.linspace(math.log(float(table[0])), math.log(float(table[-1])), 5000))
    picked = table[torch.from_numpy(model.scale_indexes(s)).long()]
    half_step = 0.5 * math.log(float(table[1] / table[0]))
    assert float(torch.log(picked / s).abs().max()) <= half_step + 1e-9
    with pytest.raises(ValueError, match="finite"):
        model.scale_indexes(torch.tensor([float("nan")]))


@pytest.mark.parametrize("frac_bits", [4, 10, 16, 24])
def test_scale_indexes_fixed_equals_float_path(frac_bits, rng):
    model = GaussianConditional()
    fixed = rng.integers(0, int(300 * 2**frac_bits), 50_000)
    near = model.scale_thresholds(frac_bits) + np.array([[-1], [0], [1]])
    fixed = np.concatenate([fixed, near.ravel()])
    expected = model.scale_indexes(torch.from_numpy(fixed / 2.0**frac_bits))
    got = model.scale_indexes_fixed(fixed, frac_bits)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    order = np.argsort(fixed, kind="stable")
    assert np.all(np.diff(got[order]) >= 0)


def test_scale_indexes_fixed_rejects_bad_input():
    model = GaussianConditional()
    with pytest.raises(ValueError, match="integers"):
        model.scale_indexes_fixed(np.array([1.5]), 8)
    with pytest.raises(ValueError, match="frac_bits"):
        model.scale_indexes_fixed(np.array([1]), 40)


def test_scale_table_must_be_increasing():
    with pytest.raises(ValueError, match="scale_table"):
        LaplaceConditional(np.array([1.0, 0.5]))


# ------------------------------------------------------------------------ Gaussian mixture


def test_normal_cdf_table_is_fixed_and_accurate():
    from scipy.special import ndtr

    table = normal_cdf_table()
    assert hashlib.sha256(table.tobytes()).hexdigest() == NORMAL_TABLE_SHA256
    ref = np.rint(ndtr(np.arange(4097) / 512) * 2.0**32)
    assert np.abs(table - ref).max() <= 1
    assert table[0] == 2**31 and table[-1] == 2**32 and np.all(np.diff(table) >= 0)


def test_mixture_of_one_equals_gaussian():
    v = torch.linspace(-10, 10, 101, dtype=torch.float64)
    s = torch.full_like(v, 1.7)
    m = torch.full_like(v, 0.4)
    mix = GaussianMixtureConditional(1).likelihood(v, v[:, None] * 0, m[:, None], s[:, None])
    assert torch.allclose(mix, GaussianConditional().likelihood(v, s, m), rtol=1e-12, atol=0)


def mixture_sample(model, rng, n_params=25, repeat=80):
    """Quantised parameters of a few distinct mixtures, each repeated, and values drawn from them."""
    k = model.num_components
    logits = torch.from_numpy(rng.normal(0, 1, (n_params, k)))
    means = torch.from_numpy(rng.uniform(-30, 30, (n_params, k)))
    scales = torch.from_numpy(rng.uniform(0.3, 12, (n_params, k)))
    p = model.quantize_params(logits, means, scales)
    p = MixtureParamsFixed(
        *(np.repeat(a, repeat, axis=0) for a in (p.weights, p.means, p.scale_indexes))
    )
    w = p.weights / 2.0**12
    comp = (rng.random((len(w), 1)) > np.cumsum(w, axis=1)).sum(axis=1)
    rows = np.arange(len(w))
    mu = p.means[rows, comp] / 2.0**8
    sigma = model.scale_table.numpy()[p.scale_indexes[rows, comp]]
    values = np.round(mu + sigma * rng.standard_normal(len(w))).astype(np.int32)
    return p, values


def float_mixture_bits(model, p: MixtureParamsFixed, values: np.ndarray) -> float:
    w = torch.from_numpy(p.weights / 2.0**12)
    lik = model.likelihood(
        torch.from_numpy(values).double(),
        torch.log(w.clamp_min(1e-30)),
        torch.from_numpy(p.means / 2.0**8),
        model.scale_table[torch.from_numpy(p.scale_indexes.astype(np.int64))],
    )
    return nll_bits(lik)


def test_mixture_roundtrip_and_rate(rng):
    model = GaussianMixtureConditional(3)
    params, values = mixture_sample(model, rng)
    tables, idx = model.tables_for(params)
    assert tables.num_tables == 25 and idx.shape == values.shape
    far = np.array([5, 500, 1000, 1500])
    values[far] = [10**6, -(10**6), I32_MAX, I32_MIN]
    data = roundtrip(values, idx, tables)
    clean = np.ones(len(values), bool)
    clean[far] = False
    ideal = information_bits(values[clean], idx[clean], tables)
    assert ideal == pytest.approx(
        float_mixture_bits(model, _rows(params, clean), values[clean]), rel=0.01
    )
    assert len(data) * 8 <= information_bits(values, idx, tables) * 1.01 + 128


def _rows(p: MixtureParamsFixed, keep: np.ndarray) -> MixtureParamsFixed:
    return MixtureParamsFixed(p.weights[keep], p.means[keep], p.scale_indexes[keep])


def test_mixture_tables_are_deterministic(rng):
    model = GaussianMixtureConditional(2)
    params, _ = mixture_sample(model, rng, n_params=10, repeat=2)
    t1, i1 = model.tables_for(params)
    t2, i2 = GaussianMixtureConditional(2).tables_for(params)
    assert_tables_equal(t1, t2)
    np.testing.assert_array_equal(i1, i2)


def test_mixture_rejects_bad_params():
    model = GaussianMixtureConditional(2)
    good = MixtureParamsFixed(np.array([[2048, 2048]]), np.array([[0, 256]]), np.array([[3, 5]]))
    model.tables_for(good)
    bad = [
        MixtureParamsFixed(np.array([[2048, 2047]]), good.means, good.scale_indexes),
        MixtureParamsFixed(good.weights, good.means, np.array([[3, 64]])),
        MixtureParamsFixed(good.weights, np.array([[0.0, 1.0]]), good.scale_indexes),
        MixtureParamsFixed(good.weights[:, :1], good.means[:, :1], good.scale_indexes[:, :1]),
        MixtureParamsFixed(good.weights, np.array([[0, 2**40]]), good.scale_indexes),
    ]
    for params in bad:
        with pytest.raises(ValueError):
            model.tables_for(params)
    with pytest.raises(ValueError, match="shape"):
        model.likelihood(torch.zeros(3), torch.zeros(3, 3), torch.zeros(3, 2), torch.ones(3, 2))


# ------------------------------------------------------------------------ categorical


def test_categorical_likelihood_is_differentiable():
    model = CategoricalModel(4)
    target = torch.tensor([0, 0, 0, 1, 2, 3, 3, 3])
    (-torch.log(model.likelihood(target)).mean()).backward()
    # d(NLL)/d(logit_c) = softmax_c - frequency_c at uniform logits.
    expected = torch.tensor([0.25 - 3 / 8, 0.25 - 1 / 8, 0.25 - 1 / 8, 0.25 - 3 / 8])
    assert torch.allclose(model.logits.grad, expected)
    with pytest.raises(ValueError, match="indices"):
        model.likelihood(torch.tensor([4]))
    with pytest.raises(ValueError, match="integers"):
        model.likelihood(torch.tensor([0.5]))


def test_categorical_freeze_rate_matches_estimates(rng):
    model = CategoricalModel(64)
    probs = rng.dirichlet(np.full(64, 0.3))
    with torch.no_grad():
        model.logits.copy_(torch.from_numpy(np.log(np.maximum(probs, 1e-12))))
    tables = model.freeze()
    assert_tables_equal(tables, model.freeze())
    values = rng.choice(64, 200_000, p=probs).astype(np.int32)
    idx = CategoricalModel.indexes(values.shape)
    data = roundtrip(values, idx, tables)
    with torch.no_grad():
        float_bits = nll_bits(model.likelihood(torch.from_numpy(values).long()))
    assert_rate_matches(data, information_bits(values, idx, tables), float_bits)


def test_categorical_from_counts_with_zero_counts(rng):
    counts = np.array([0, 500, 0, 0, 1200, 3, 0, 0], dtype=np.int64)
    tables = CategoricalModel.from_counts(counts)
    freq = np.diff(tables.cdfs[0, : tables.cdf_lengths[0]])
    assert freq.size == 9 and freq.min() == 1 and freq[4] > freq[1] > freq[5]
    values = rng.choice(8, 3000, p=counts / counts.sum()).astype(np.int32)
    values[:4] = [0, 2, 7, 300]  # zero-count symbols and an escape stay encodable
    roundtrip(values, CategoricalModel.indexes(values.shape), tables)
    assert_tables_equal(CategoricalModel.from_counts(counts), tables)
    uniform = CategoricalModel.from_counts(np.zeros(4, np.int64))
    np.testing.assert_array_equal(np.diff(uniform.cdfs[0]), [TOTAL // 5 + 1] * 1 + [TOTAL // 5] * 4)


def test_categorical_from_counts_rejects_bad_counts():
    for counts in (
        np.array([1.0, 2.0]),
        np.array([], np.int64),
        np.array([3, -1]),
        np.ones((2, 2), int),
    ):
        with pytest.raises(ValueError):
            CategoricalModel.from_counts(counts)
