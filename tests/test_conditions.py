"""Reference simulation (docs/COMPUTATION.md §3) and rasterisation of people's annotations."""

from __future__ import annotations

import numpy as np
import pytest

from vrp_sam_jax.transforms import conditions as c


def _blob(size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    m = ((yy - 30) ** 2 / 200 + (xx - 25) ** 2 / 90) < 1
    m[5:9, 50:60] = True  # a second component
    return m & (rng.random((size, size)) > 0.02)


def test_box_is_tight_and_filled():
    m = _blob()
    box = c.box_mask(m)
    ys, xs = np.nonzero(m)
    by, bx = np.nonzero(box)
    assert (by.min(), by.max(), bx.min(), bx.max()) == (ys.min(), ys.max(), xs.min(), xs.max())
    assert box.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
    assert c.box_mask(np.zeros((8, 8))).sum() == 0


def test_points_eval_count_inside_and_deterministic():
    m = _blob()
    a = c.simulate_condition("point", m, np.random.default_rng(5))
    b = c.simulate_condition("point", m, np.random.default_rng(5))
    assert a.sum() == 20 and np.all(m[a > 0])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c.simulate_condition("point", m, np.random.default_rng(6)))
    small = np.zeros((16, 16), bool)
    small[3, 4] = small[7, 7] = True
    assert c.simulate_condition("point", small, np.random.default_rng(0)).sum() == 2


def test_points_training_count_in_range():
    m = _blob()
    counts = {int(c.simulate_condition("point", m, np.random.default_rng(s), training=True)
                  .sum()) for s in range(60)}
    assert min(counts) >= 1 and max(counts) <= 20 and len(counts) > 5


def test_scribble_inside_mask_and_deterministic():
    m = _blob(128)
    a = c.simulate_condition("scribble", m, np.random.default_rng(1))
    b = c.simulate_condition("scribble", m, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.sum() > 0 and np.all(m[a > 0])
    assert a.sum() < m.sum()  # strokes, not the whole mask


def test_eval_scribble_setting_is_the_releases():
    assert c.eval_scribble_setting(10_000) == ("rand_curve", 9)
    preset, count = c.eval_scribble_setting(3)
    assert preset == "rand_curve" and 1 <= count <= 3


def test_stroke_presets_bounds():
    rng = np.random.default_rng(0)
    for name, preset in c.STROKE_PRESETS.items():
        widths = {c._stroke((50, 50), rng, preset)[2] for _ in range(200)}
        lo, hi = preset.brush_width_bound
        assert widths == set(range(lo, hi)), name


def test_mask_condition_and_empty_masks():
    m = _blob()
    np.testing.assert_array_equal(c.simulate_condition("mask", m, None), m.astype(np.float32))
    empty = np.zeros((32, 32))
    for cond in c.CONDITIONS:
        assert c.simulate_condition(cond, empty, np.random.default_rng(0)).sum() == 0
    with pytest.raises(ValueError, match="unknown condition"):
        c.simulate_condition("lasso", m, np.random.default_rng(0))


def test_rasterize_user_annotations():
    box = c.rasterize_boxes([(10, 20, 30, 60)], (100, 200), 50)  # image 200 wide, 100 high
    ys, xs = np.nonzero(box)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2, 7, 10, 29)
    pts = c.rasterize_points([(0, 0), (199.9, 99.9), (100, 50)], (100, 200), 50)
    assert pts.sum() == 3 and pts[0, 0] and pts[49, 49] and pts[25, 25]
    scribble = np.zeros((400, 400), bool)
    scribble[200, 10:390] = True  # a 1-pixel line survives shrinking to 50
    assert c.rasterize_scribble(scribble, 50).sum() >= 45
    grown = c.rasterize_scribble(np.eye(10, dtype=bool), 40)
    assert grown.sum() >= 40
