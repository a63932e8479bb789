"""Bjøntegaard deltas against curves whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuralcodec.bench.bdrate import (
    NoOverlapError,
    bd_entry,
    bd_markdown,
    bd_psnr,
    bd_rate,
    try_bd,
)
from neuralcodec.bench.reference import RDCurve

RATES = [0.12, 0.25, 0.5, 0.9, 1.6]
PSNRS = [27.1, 29.8, 32.6, 35.0, 38.2]


def test_identical_curves_have_zero_deltas():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_half_the_rate_is_minus_fifty_percent_exactly():
    half = [r / 2 for r in RATES]
    assert abs(bd_rate(RATES, PSNRS, half, PSNRS) - (-50.0)) < 1e-6


def test_double_the_rate_is_plus_hundred_percent():
    double = [r * 2 for r in RATES]
    assert bd_rate(RATES, PSNRS, double, PSNRS) == pytest.approx(100.0, abs=1e-6)


def test_one_db_higher_everywhere_is_bd_psnr_one():
    better = [p + 1.0 for p in PSNRS]
    assert bd_psnr(RATES, PSNRS, RATES, better) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, better) < 0


def test_log_linear_curves_match_the_closed_form():
    # anchor: psnr = 10 ln(r) + 30; test: psnr = 10 ln(r) + 32.  At equal PSNR the test needs
    # ln(r) smaller by 0.2 -> BD-rate = exp(-0.2) - 1; at equal rate it is 2 dB better.
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    anchor, test = 10 * np.log(r) + 30, 10 * np.log(r) + 32
    assert bd_rate(r, anchor, r, test) == pytest.approx((math.exp(-0.2) - 1) * 100, abs=1e-9)
    assert bd_psnr(r, anchor, r, test) == pytest.approx(2.0, abs=1e-9)


def test_unsorted_points_give_the_sorted_answer():
    order = [3, 0, 4, 1, 2]
    shuffled_r = [RATES[i] for i in order]
    shuffled_p = [PSNRS[i] for i in order]
    half = [r / 2 for r in shuffled_r]
    assert bd_rate(shuffled_r, shuffled_p, half, shuffled_p) == pytest.approx(-50.0, abs=1e-6)
    expected = bd_psnr(RATES, PSNRS, RATES, [p + 0.5 for p in PSNRS])
    assert bd_psnr(shuffled_r, shuffled_p, RATES, [p + 0.5 for p in PSNRS]) == expected


def test_partial_overlap_integrates_only_the_common_range():
    # log-linear curves (reproduced exactly by PCHIP); the test covers only the upper part of
    # the anchor's PSNR range, at half the rate
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    psnr = 10 * np.log(r) + 30
    assert bd_rate(r, psnr, r[2:] / 2, psnr[2:]) == pytest.approx(-50.0, abs=1e-6)
    assert bd_psnr(r, psnr, r[2:] / 2, psnr[2:]) == pytest.approx(10 * math.log(2), abs=1e-9)


def test_non_overlapping_curves_raise_and_try_bd_gives_none():
    low = ([0.1, 0.2], [25.0, 27.0])
    high = ([1.0, 2.0], [35.0, 40.0])
    with pytest.raises(NoOverlapError, match="do not overlap"):
        bd_rate(*low, *high)
    with pytest.raises(NoOverlapError):
        bd_psnr(*low, *high)
    assert try_bd(bd_rate, low, high) is None


@pytest.mark.parametrize(
    "rates, psnrs, match",
    [
        ([0.5], [30.0], "two distinct"),
        ([0.5, 0.5], [30.0, 30.0], "two distinct"),
        ([0.5, -1.0], [30.0, 31.0], "positive"),
        ([0.5, 1.0, 2.0], [30.0, 31.0], "differ in length"),
        ([0.5, 1.0], [30.0, float("nan")], "finite"),
    ],
)
def test_bad_curves_are_refused(rates, psnrs, match):
    with pytest.raises(ValueError, match=match):
        bd_rate(RATES, PSNRS, rates, psnrs)


def test_repeated_quality_values_are_averaged():
    # two points at the same PSNR with rates 0.2 and 0.3 average to ln-rate mean
    r = [0.1, 0.2, 0.3, 1.0]
    p = [25.0, 30.0, 30.0, 40.0]
    assert math.isfinite(bd_rate(RATES, PSNRS, r, p))


def _curve(key, scale=1.0, ms=True, published=False):
    return RDCurve(
        key=key,
        label=key + (" (published)" if published else ""),
        bpp=tuple(r * scale for r in RATES),
        psnr=tuple(PSNRS),
        ms_ssim=(0.9, 0.94, 0.97, 0.98, 0.99) if ms else None,
        published=published,
    )


def test_bd_entry_covers_psnr_and_msssim():
    entry = bd_entry(_curve("a"), _curve("b", scale=0.5))
    assert entry["bd_rate"] == pytest.approx(-50.0, abs=1e-6)
    assert entry["bd_rate_msssim"] == pytest.approx(-50.0, abs=1e-6)
    assert entry["bd_psnr"] > 0
    assert bd_entry(_curve("a"), _curve("b", ms=False))["bd_rate_msssim"] is None


def test_markdown_table_has_a_row_per_curve_and_a_column_per_anchor():
    curves = [_curve("jpeg"), _curve("x265", 0.5), _curve("pub:vtm", 0.25, False, True)]
    md = bd_markdown(curves, curves[:2], "BD-rates", notes=["anchor foo left out"])
    table = md.split("## BD-rate, PSNR (%)")[1].split("##")[0]
    assert "| codec | vs jpeg | vs x265 |" in table
    assert "| x265 | -50.0 | +0.0 |" in table
    assert "| pub:vtm (published) | -75.0 | -50.0 |" in table
    msssim = md.split("## BD-rate, MS-SSIM (%)")[1]
    assert "| pub:vtm (published) | n/a | n/a |" in msssim
    assert "- anchor foo left out" in md
