"""QuantizedMaps and the post-processor on a quantised model's integer maps: the levels' order is
the reals' order, so faces from int8 levels equal faces from their dequantised floats, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from kpnet_edge import config
from kpnet_edge.postprocess import PostprocessParams, postprocess
from kpnet_edge.quantized_maps import QuantizedMaps

MAP = 48
"""Map side: small enough to be quick, large enough for several proposals and windows."""


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
@pytest.mark.parametrize("seed", range(4))
def test_lowest_level_is_exactly_where_the_reals_reach_the_threshold(dtype, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    levels = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    maps = QuantizedMaps(levels, scale=float(rng.uniform(1e-3, 0.3)), zero_point=int(rng.integers(info.min, info.max)))
    reals = maps.dequantize()
    # Thresholds on, just beside, between and beyond the levels' reals; compared as the
    # post-processor compares its float32 maps with a Python float (in float32).
    on = rng.choice(reals, 20).astype(np.float64)
    beside = [*np.nextafter(on, np.inf), *np.nextafter(on, -np.inf), *(on + 1e-9), *(on - 1e-9)]
    between = rng.uniform(reals[0] - 1, reals[-1] + 1, 20)
    for threshold in map(float, [*on, *beside, *between, reals[0] - 5, reals[-1] + 5, -np.inf, np.inf, np.nan]):
        reached = levels.astype(np.int64) >= maps.lowest_level(threshold)
        np.testing.assert_array_equal(reached, reals >= threshold, err_msg=f"threshold {threshold!r}")


def test_dequantize_keeps_layout_and_rejects_what_is_not_quantised():
    values = np.arange(-12, 12, dtype=np.int8).reshape(1, 2, 3, 4).transpose(0, 3, 1, 2)  # an NHWC view
    maps = QuantizedMaps(values, scale=0.5, zero_point=-2)
    real = maps.dequantize()
    assert real.dtype == np.float32 and real.strides == values.astype(np.float32).strides
    np.testing.assert_array_equal(real, (values.astype(np.float32) + 2) * 0.5)
    assert [m.shape for m in maps] == [(4, 2, 3)] and maps[0].scale == 0.5
    with pytest.raises(ValueError, match="8- or 16-bit integer"):
        QuantizedMaps(values.astype(np.float32), 0.5, 0)
    with pytest.raises(ValueError, match="finite and > 0"):
        QuantizedMaps(values, 0.0, 0)


def quantized_maps(seed: int, dtype: type = np.int8, channels_last: bool = True) -> tuple[QuantizedMaps, QuantizedMaps]:
    """Random quantised (scale map, heatmaps) with planted faces: many equal levels (ties), peaks,
    and a flat plateau of cells above any threshold, as a coarse INT8 model makes them."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    scale_levels = rng.integers(info.min, info.min + (info.max - info.min) // 2, (config.NUM_SCALES, MAP, MAP))
    for _ in range(12):  # faces: a peak at one (bin, y, x) with a few equal neighbours
        b, y, x = rng.integers(5, config.NUM_SCALES - 5), rng.integers(2, MAP - 2), rng.integers(2, MAP - 2)
        scale_levels[b - 1 : b + 2, y - 1 : y + 2, x - 1 : x + 2] = rng.integers(info.max - 40, info.max, (3, 3, 3))
    scale_levels[30:33, :6, :6] = info.max - 3  # a plateau: ties everywhere
    heat_levels = rng.integers(info.min, info.max, (config.NUM_LANDMARKS, MAP, MAP))
    maps = []
    for levels, scale, zero in ((scale_levels, 0.11, info.min + 100), (heat_levels, 0.07, (info.min + info.max) // 2)):
        levels = levels.astype(dtype)
        if channels_last:  # as a TFLite NHWC output reaches the post-processor: a transposed view
            levels = np.ascontiguousarray(levels.transpose(1, 2, 0)).transpose(2, 0, 1)
        maps.append(QuantizedMaps(levels, scale, zero))
    return maps[0], maps[1]


@pytest.mark.parametrize(
    "params",
    [
        PostprocessParams(),
        PostprocessParams(score_threshold=0.0, max_proposals=200),
        PostprocessParams(score_threshold=0.3, max_proposals=5, max_candidate_cells=40),  # caps cut ties
        PostprocessParams(score_threshold=0.2, score="eq8"),
    ],
)
@pytest.mark.parametrize("dtype,channels_last", [(np.int8, True), (np.int8, False), (np.uint8, True), (np.int16, False)])
@pytest.mark.parametrize("seed", range(3))
def test_faces_from_levels_equal_faces_from_their_reals(params, dtype, channels_last, seed):
    scale, heat = quantized_maps(seed, dtype, channels_last)
    expected = postprocess(scale.dequantize(), heat.dequantize(), params)
    found = postprocess(scale, heat, params)
    assert len(expected) > 0
    for name in ("boxes", "scores", "landmarks", "proposals", "proposal_scores"):
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name), err_msg=name)


def test_levels_beyond_every_threshold_give_no_faces_and_no_error():
    scale, heat = quantized_maps(0)
    silent = QuantizedMaps(np.full_like(scale.values, -128), scale.scale, zero_point=127)  # all reals ~ -28
    assert len(postprocess(silent, heat)) == 0
    assert len(postprocess(silent, heat, PostprocessParams(score_threshold=1.0))) == 0


@pytest.mark.parametrize("score_threshold", [0.05, 0.25, 0.6])
def test_a_face_at_exactly_the_threshold_level_is_found_and_one_level_below_is_not(score_threshold):
    scale, heat = quantized_maps(1)
    params = PostprocessParams(score_threshold=score_threshold)
    lowest = scale.lowest_level(float(np.log(score_threshold / (1 - score_threshold))))
    levels = np.full(scale.shape, np.iinfo(np.int8).min, np.int8)
    levels[20, 10, 10] = lowest
    levels[20, 30, 30] = lowest - 1
    maps = QuantizedMaps(levels, scale.scale, scale.zero_point)
    found = postprocess(maps, heat, params)
    expected = postprocess(maps.dequantize(), heat.dequantize(), params)
    assert len(found) == len(expected) == 1
    np.testing.assert_array_equal(found.proposals, expected.proposals)
    assert found.proposal_scores[0] >= score_threshold > float(1 / (1 + np.exp(-maps.real(lowest - 1))))
