"""The storage codecs of optimizer state: round trips, block edge cases, unbiased rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from descend.kernels import codec_elements
from descend.kernels.codecs import (
    CODECS,
    FORMATS,
    INT8_BLOCK,
    element_bits,
    get_codec,
    int8_map,
    mix32,
    shared_streams,
    stream_key,
)

FINITE32 = st.floats(
    min_value=-(2.0**100), max_value=2.0**100, allow_nan=False, allow_subnormal=True, width=32
)


def _round_trip(name: str, values: np.ndarray, key: int = 7) -> torch.Tensor:
    codec = CODECS[name]
    return codec.decode(codec.encode(torch.from_numpy(values), key))


def _bf16_ulp(values: torch.Tensor) -> torch.Tensor:
    """The spacing of bf16 numbers at ``values`` (normal range)."""
    exponent = torch.floor(torch.log2(values.abs().double().clamp_min(2.0**-126)))
    return 2.0 ** (exponent - 7)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 600), elements=FINITE32))
def test_bf16_formats_stay_within_their_rounding(values):
    exact = torch.from_numpy(values).double()
    ulp = _bf16_ulp(exact)
    stochastic = _round_trip("bfloat16", values).double()
    nearest = _round_trip("bfloat16-nearest", values).double()
    assert bool(((stochastic - exact).abs() < ulp * (1 + 1e-6)).all())
    assert bool(((nearest - exact).abs() <= ulp / 2).all())
    assert torch.equal(nearest.float(), torch.from_numpy(values).bfloat16().float())


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.integers(1, 600),
        elements=st.floats(2.0**-100, 2.0**100, width=32)
        | st.floats(-(2.0**100), -(2.0**-100), width=32),
    )
)
def test_bf16_ecc_decodes_with_relative_error_near_two_to_minus_16(values):
    exact = torch.from_numpy(values).double()
    decoded = _round_trip("bf16+ecc", values).double()
    assert float(((decoded - exact).abs() / exact.abs()).max()) <= 2.0**-15.9


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.integers(1, 3 * INT8_BLOCK), elements=FINITE32))
def test_int8_error_is_within_half_a_code_gap_of_each_blocks_scale(values):
    signed, unsigned = np.sort(int8_map(True)), int8_map(False)
    widest = max(np.diff(signed).max(), np.diff(unsigned).max()) / 2
    exact = torch.from_numpy(values).double()
    decoded = _round_trip("int8", values).double()
    padded = torch.zeros(-(-len(values) // INT8_BLOCK) * INT8_BLOCK, dtype=torch.float64)
    padded[: len(values)] = exact
    absmax = padded.view(-1, INT8_BLOCK).abs().amax(dim=1).repeat_interleave(INT8_BLOCK)
    bound = absmax[: len(values)] * (widest * (1 + 1e-5)) + 1e-45
    assert bool(((decoded - exact).abs() <= bound).all())


def test_int8_blocks_edge_cases():
    codec = CODECS["int8"]
    values = torch.zeros(5 * INT8_BLOCK)
    values[INT8_BLOCK : 2 * INT8_BLOCK] = torch.linspace(-1e-3, 1e-3, INT8_BLOCK)
    values[INT8_BLOCK + 3] = 1e30  # one huge value in block 1
    values[2 * INT8_BLOCK : 3 * INT8_BLOCK] = 1e-42  # subnormals
    values[3 * INT8_BLOCK : 4 * INT8_BLOCK] = torch.rand(INT8_BLOCK)
    clean = codec.encode(values, 0)
    values[4 * INT8_BLOCK + 5] = math.nan
    poisoned = codec.encode(values, 0)
    decoded = codec.decode(poisoned)
    assert torch.equal(decoded[:INT8_BLOCK], torch.zeros(INT8_BLOCK))  # all zeros stay zero
    assert float(poisoned[1][0]) == 0.0
    assert float(decoded[INT8_BLOCK + 3]) == pytest.approx(1e30, rel=1e-6)
    # Subnormals keep their value (up to the spacing of subnormals, 1.4e-45), not zero.
    assert abs(float(decoded[2 * INT8_BLOCK]) - 1e-42) <= 1e-44
    # A NaN poisons its own block's scale, no other block's.
    assert math.isnan(float(poisoned[1][4]))
    assert bool(decoded[4 * INT8_BLOCK :].isnan().all())
    assert torch.equal(poisoned[1][:4], clean[1][:4])
    assert torch.equal(poisoned[0][: 4 * INT8_BLOCK], clean[0][: 4 * INT8_BLOCK])


def test_int8_uses_the_unsigned_map_for_non_negative_blocks():
    codec = CODECS["int8"]
    values = torch.rand(2 * INT8_BLOCK)
    values[INT8_BLOCK] = -0.5
    _, scale = codec.encode(values, 0)
    assert float(scale[0]) < 0 < float(scale[1])  # negated scale: the unsigned map


@pytest.mark.parametrize("name", ["bfloat16", "bfloat16-nearest", "bf16+ecc"])
def test_special_values_survive_bf16_formats(name):
    values = np.array([np.inf, -np.inf, np.nan, 0.0, 3.0e38, -1e-40], dtype=np.float32)
    decoded = _round_trip(name, values)
    assert decoded[0] == math.inf and decoded[1] == -math.inf and math.isnan(decoded[2])
    assert decoded[3] == 0.0 and math.isfinite(decoded[4])


def test_stochastic_rounding_is_unbiased_and_nearest_is_not():
    # 1 + 2**-10 lies an eighth of the way from 1 to the next bf16 number, 1 + 2**-7.
    value = 1.0 + 2.0**-10
    count = 400_000
    values = torch.full((count,), value)
    stochastic = CODECS["bfloat16"].decode(CODECS["bfloat16"].encode(values, 11)).double()
    p = 1 / 8
    sigma = 2.0**-7 * math.sqrt(p * (1 - p) / count)
    assert abs(float(stochastic.mean()) - value) < 4 * sigma
    nearest = CODECS["bfloat16-nearest"].decode(CODECS["bfloat16-nearest"].encode(values, 11))
    assert float(nearest.double().mean()) == 1.0  # the small part is lost every time


@settings(max_examples=40, deadline=None)
@given(
    st.floats(-(2.0**60), 2.0**60, width=32).filter(lambda x: x != 0),
    st.integers(0, 2**31),
    st.booleans(),
)
def test_stochastic_rounding_mean_is_the_value(value, seed, upper):
    count = 4000
    codec = CODECS["bfloat16"]
    values = torch.full((count,), value)
    stored = codec.encode(values, stream_key(seed, 1, 0, 0), upper)
    mean = float(codec.decode(stored).double().mean())
    spread = float(_bf16_ulp(torch.tensor([value]).double())[0])
    # A rounding lies within one ulp below or above: its standard deviation is under ulp / 2.
    assert abs(mean - value) <= 5 * (spread / 2) / math.sqrt(count)


@pytest.mark.slow
def test_random_stream_is_one_function_for_python_numpy_torch_and_numba():
    numba = pytest.importorskip("numba")
    index = np.arange(0, 1 << 20, 977, dtype=np.int64)
    key = stream_key(5, 3, 2, 1)
    from_numpy = element_bits(key, index)
    from_torch = element_bits(key, torch.from_numpy(index)).numpy()
    from_python = np.array([element_bits(key, int(i)) for i in index[:50]])
    mixer = numba.njit(mix32)
    compiled = numba.njit(lambda k, i: mixer(i ^ k))
    from_numba = np.array([compiled(key, i) for i in index[:50]])
    assert np.array_equal(from_numpy, from_torch)
    assert np.array_equal(from_numpy[:50], from_python)
    assert np.array_equal(from_numpy[:50], from_numba)
    # 32 bits that look uniform: over a million elements each bit is set half the time
    # (standard deviation 0.0005).
    every = element_bits(key, np.arange(1 << 20, dtype=np.int64))
    bits = (every[:, None] >> np.arange(32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.003)
    assert len({stream_key(0, step, 0, 0) for step in range(1000)}) == 1000


def test_random_bits_decide_roundings_independently():
    """The low 16 bits (what a stochastic rounding reads) are uniform over the elements of one
    step, unrelated between neighbouring elements, and uniform and unrelated from step to step
    for one element: a chi-square test over 256 bins and correlations near zero (one multiply
    of ``index ^ key`` in place of the hash fails the second: correlation 0.2-0.4)."""
    low = element_bits(stream_key(5, 3, 2, 1), np.arange(1 << 20, dtype=np.int64)) & 0xFFFF
    counts = np.bincount(low >> 8, minlength=256)
    # 255 degrees of freedom: the statistic's 99.9th percentile is about 330.
    expected = len(low) / 256
    assert float(((counts - expected) ** 2 / expected).sum()) < 330
    uniform = low / 65536.0
    # Correlation of n independent pairs: standard deviation 1 / sqrt(n) (0.001 here).
    assert abs(np.corrcoef(uniform[:-1], uniform[1:])[0, 1]) < 0.005
    assert abs(np.corrcoef(uniform[:-2], uniform[2:])[0, 1]) < 0.005
    for element in (0, 1, 4095, 1 << 19):
        keys = np.array([stream_key(5, step, 2, 1) for step in range(4096)], dtype=np.int64)
        across = (element_bits(keys, np.int64(element)) & 0xFFFF) / 65536.0
        assert abs(across.mean() - 0.5) < 5 * 0.2887 / math.sqrt(len(across))
        assert abs(np.corrcoef(across[:-1], across[1:])[0, 1]) < 5 / math.sqrt(len(across))


def test_bf16_slots_pair_up_in_order_the_second_reading_the_firsts_stream():
    assert shared_streams(["bfloat16", "bfloat16"]) == [(0, False), (0, True)]
    assert shared_streams(["bfloat16", "float32", "bfloat16", "bfloat16"]) == [
        (0, False),
        (1, False),
        (0, True),
        (3, False),
    ]
    # Deterministic formats (and the control rounded to nearest) keep their own key.
    assert shared_streams(["int8", "bfloat16-nearest", "bf16+ecc", "bfloat16"]) == [
        (0, False),
        (1, False),
        (2, False),
        (3, False),
    ]


def test_paired_slots_round_with_unrelated_halves_of_one_hash():
    """The two slots of a pair read the lower and upper 16 bits of one hash per element: each
    half uniform, the two unrelated (a joint chi-square over 16 x 16 bins and a correlation
    near zero), so the pair's roundings are independent of each other."""
    bits = element_bits(stream_key(5, 3, 2, 0), np.arange(1 << 20, dtype=np.int64))
    lower, upper = bits & 0xFFFF, bits >> 16
    assert int(upper.max()) < 1 << 16
    joint = np.bincount((lower >> 12) * 16 + (upper >> 12), minlength=256)
    expected = len(bits) / 256
    # 255 degrees of freedom: the statistic's 99.9th percentile is about 330.
    assert float(((joint - expected) ** 2 / expected).sum()) < 330
    assert abs(np.corrcoef(lower / 65536.0, upper / 65536.0)[0, 1]) < 0.005
    # The roundings themselves: 1 + 2**-9 rounds up with probability 1/4 in either slot, and
    # both slots round up together with probability 1/16.
    codec = CODECS["bfloat16"]
    values = torch.full((1 << 18,), 1.0 + 2.0**-9)
    key = stream_key(9, 4, 1, 0)
    up = [codec.decode(codec.encode(values, key, half)) > 1.0 for half in (False, True)]
    count = values.numel()
    for rounded in up:
        assert abs(float(rounded.double().mean()) - 1 / 4) < 5 * math.sqrt(3 / 16 / count)
    together = float((up[0] & up[1]).double().mean())
    assert abs(together - 1 / 16) < 5 * math.sqrt(1 / 16 * 15 / 16 / count)


def test_int8_maps_are_base_8_dynamic_trees_of_exact_dyadic_values():
    unsigned, signed = int8_map(False), int8_map(True)
    # Unsigned: 0, then 255 ascending values up to the scale, eight levels a factor 8 apart,
    # the deepest one value (8**-7), the top 128 steps from 1/8 to 1.
    assert unsigned[0] == 0 and unsigned[-1] == 1 and np.all(np.diff(unsigned) > 0)
    assert unsigned[1] == 8.0**-7
    assert np.count_nonzero(unsigned > 1 / 8) == 128
    # Signed: a sign bit over seven levels; 64 steps from 1/8 to 1, as many as the base-10 map
    # of bitsandbytes keeps between 1/10 and 1.
    assert np.array_equal(signed[128:], -signed[:128])
    assert signed[0] == 0 and signed[127] == 1 and np.all(np.diff(signed[:128]) > 0)
    assert signed[1] == 8.0**-6 and np.count_nonzero(signed > 1 / 8) == 64
    # Every value is exact: the float64 closed form rounds to nothing.
    for table, deepest in ((unsigned, 7), (signed[:128], 6)):
        codes = np.arange(1, len(table))
        steps = 2.0 ** np.floor(np.log2(codes))
        level = deepest - np.log2(steps)
        exact = 8.0**-level / 8 * (1 + 7 * (codes - steps + 1) / steps)
        assert np.array_equal(table[1:].astype(np.float64), exact)


def _scaled_values() -> np.ndarray:
    """Magnitudes in [0, 1]: every bf16 bucket edge there, and around every value and midpoint
    of both maps."""
    high = np.arange(0x3F81, dtype=np.int64)
    edges = np.concatenate([high << 16, (high << 16) | 0xFFFF]).astype(np.uint32).view(np.float32)
    points = []
    for table in (int8_map(False), int8_map(True)[:128]):
        wide = table.astype(np.float64)
        middles = ((wide[:-1] + wide[1:]) / 2).astype(np.float32)
        for value in (table, middles):
            points += [
                value,
                np.nextafter(value, np.float32(2)),
                np.nextafter(value, np.float32(-1)),
            ]
    values = np.concatenate([edges, *points]).astype(np.float32)
    return values[(values >= 0) & (values <= 1)]


@pytest.mark.parametrize("signed", [False, True])
def test_int8_codes_the_nearest_value_of_its_map(signed):
    """The closed-form encoder picks a nearest map value (up to float32 rounding next to a
    midpoint), except at or below 9/16 of the smallest nonzero value, which codes as zero."""
    values = _scaled_values()
    table = int8_map(signed)[:128] if signed else int8_map(False)
    largest = torch.tensor(0x3F800000)  # a block whose largest magnitude is 1
    codes = codec_elements.encode_int8(torch.from_numpy(values), largest, torch.tensor(signed))
    decoded = table[codes.numpy()].astype(np.float64)
    wide = values.astype(np.float64)
    nearest = np.abs(table.astype(np.float64)[None, :] - wide[:, None]).min(axis=1)
    error = np.abs(decoded - wide)
    # Next to a midpoint the two candidates are nearly equally far: a float32 rounding of the
    # step's position may pick either.
    slack = 2.0**-20 * wide
    bottom = table[1] * 9 / 16
    above = wide > bottom + slack
    assert np.all(error[above] <= nearest[above] + slack[above])
    assert np.all(decoded[wide < bottom - slack] == 0)
    assert np.count_nonzero(error > nearest) < 0.002 * len(wide)


@settings(max_examples=60, deadline=None)
@given(arrays(np.int32, st.integers(1, 2000)))
def test_bf16_ecc_corrections_stay_in_a_signed_byte_without_a_clamp(bits):
    values = torch.from_numpy(bits).view(torch.float32)
    high, correction = codec_elements.encode_ecc(values)
    assert int(correction.abs().max()) <= 127
    assert bool((correction[~torch.isfinite(values)] == 0).all())


def test_unknown_format_names_the_choices():
    with pytest.raises(ValueError, match=r"'float16' is unknown: expected one of 'float32'"):
        get_codec("float16")
    assert set(FORMATS) == set(CODECS)
