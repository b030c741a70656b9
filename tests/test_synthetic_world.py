"""Fast tests of the procedural world: determinism, balance, captions, rendering."""

from __future__ import annotations

import numpy as np
import pytest

from transmiter.synthetic.batches import draw_batch
from transmiter.synthetic.captions import caption_scenes, parse_caption
from transmiter.synthetic.world import (
    BG_COLOURS,
    COLOURS,
    IMAGE_SIZE,
    PRETRAIN_DISTRIBUTION,
    SHAPES,
    SceneDistribution,
    render_scenes,
    sample_scenes,
)

CLEAN = SceneDistribution(colour_jitter=0.0, rotation_deg=0.0)


def test_same_seed_same_arrays_different_seed_differs():
    a = draw_batch(PRETRAIN_DISTRIBUTION, 64, seed=7)
    b = draw_batch(PRETRAIN_DISTRIBUTION, 64, seed=7)
    c = draw_batch(PRETRAIN_DISTRIBUTION, 64, seed=8)
    assert a.images.dtype == np.uint8 and a.images.shape == (64, IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions
    np.testing.assert_array_equal(a.scenes.shape, b.scenes.shape)
    assert not np.array_equal(a.images, c.images)
    assert a.captions != c.captions


def test_shifted_rendering_is_deterministic_too():
    dist = PRETRAIN_DISTRIBUTION.replace(noise_std=(5.0, 10.0), blur_sigma=(0.3, 1.0), colour_cast=0.2)
    a = draw_batch(dist, 32, seed=[3, 1])
    b = draw_batch(dist, 32, seed=[3, 1])
    np.testing.assert_array_equal(a.images, b.images)


def test_attribute_balance():
    n = 24_000
    s = sample_scenes(PRETRAIN_DISTRIBUTION, n, seed=0)
    for values, k in ((s.shape, len(SHAPES)), (s.colour, len(COLOURS))):
        counts = np.bincount(values, minlength=k)
        expected = n / k
        assert counts.min() > 0.9 * expected and counts.max() < 1.1 * expected, counts
    # the distribution's texture and count weights are honoured
    tw = np.asarray(PRETRAIN_DISTRIBUTION.texture_weights, dtype=float)
    assert abs((s.texture == 0).mean() - tw[0] / tw.sum()) < 0.02
    cw = np.asarray(PRETRAIN_DISTRIBUTION.count_weights, dtype=float)
    np.testing.assert_allclose(np.bincount(s.count, minlength=len(cw) + 1)[1:] / n, cw / cw.sum(), atol=0.02)
    # held-out backgrounds never appear in pretraining
    held_out = [list(BG_COLOURS).index(c) for c in ("olive", "teal")]
    assert not np.isin(s.bg_colour, held_out).any()


def test_fixed_attributes_and_excluded_pairs():
    dist = SceneDistribution(exclude_pairs=(("red", "star"),))
    s = sample_scenes(dist, 4000, seed=1)
    red, star = list(COLOURS).index("red"), SHAPES.index("star")
    assert not ((s.colour == red) & (s.shape == star)).any()
    f = sample_scenes(dist, 10, seed=1, fixed={"shape": "heart", "count": np.array([1, 2, 3] * 3 + [1])})
    assert (f.shape == SHAPES.index("heart")).all()
    assert f.count.tolist() == [1, 2, 3] * 3 + [1]
    with pytest.raises(ValueError, match="unknown"):
        sample_scenes(dist, 3, seed=0, fixed={"shape": "dragon"})


def test_distribution_validation_names_the_field():
    with pytest.raises(ValueError, match="shapes"):
        SceneDistribution(shapes=("circle", "dragon"))
    with pytest.raises(ValueError, match="needs a size"):
        SceneDistribution(sizes=("large",))
    with pytest.raises(ValueError, match="texture_weights"):
        SceneDistribution(texture_weights=(1.0,))
    d = PRETRAIN_DISTRIBUTION
    assert SceneDistribution.from_dict(d.to_dict()) == d


def test_multi_object_scenes_do_not_overlap_and_stay_inside():
    s = sample_scenes(PRETRAIN_DISTRIBUTION.replace(counts=(3,), count_weights=None), 500, seed=2)
    r = s.radius[:, None]
    assert np.all(s.cx - r >= 0) and np.all(s.cx + r <= IMAGE_SIZE)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        d = np.hypot(s.cx[:, a] - s.cx[:, b], s.cy[:, a] - s.cy[:, b])
        assert np.all(d >= 2 * s.radius)
    assert (s.position == -1).all()


def test_spread_controls_how_far_objects_sit_from_the_centre():
    centred = sample_scenes(PRETRAIN_DISTRIBUTION.replace(spread=0.0), 200, seed=1)
    single = centred.count == 1
    np.testing.assert_allclose(centred.cx[single, 0], IMAGE_SIZE / 2, atol=1e-4)
    wide = sample_scenes(
        PRETRAIN_DISTRIBUTION.replace(spread=1.0, counts=(1,), count_weights=None), 4000, seed=1
    )
    r = wide.radius
    assert np.all(wide.cx[:, 0] - r >= 0) and np.all(wide.cx[:, 0] + r <= IMAGE_SIZE)
    assert len(set(wide.position.tolist())) == 9  # every cell of the 3x3 grid is reached
    narrow = sample_scenes(PRETRAIN_DISTRIBUTION, 4000, seed=1)
    assert np.abs(narrow.cx[:, 0] - 16).mean() < np.abs(wide.cx[:, 0] - 16).mean() / 3


def test_captions_agree_with_attributes():
    batch = draw_batch(PRETRAIN_DISTRIBUTION, 3000, seed=4, with_captions=True)
    mentioned = {k: 0 for k in ("colour", "size", "texture", "bg_pattern", "bg_colour", "position", "count")}
    for i, cap in enumerate(batch.captions):
        attrs = batch.scenes.attributes(i)
        parsed = parse_caption(cap)
        assert parsed["shape"] == attrs["shape"], cap
        for key, value in parsed.items():
            assert value == attrs[key], (cap, key, value, attrs)
            mentioned[key] = mentioned.get(key, 0) + 1
    # every attribute family is mentioned in a good share of the captions
    for key, n in mentioned.items():
        assert n > 150, (key, n)
    assert len(set(batch.captions)) > 2000  # varied


def test_short_captions_name_count_colour_and_shape():
    batch = draw_batch(PRETRAIN_DISTRIBUTION, 500, seed=12, caption_style="short")
    for i, cap in enumerate(batch.captions):
        attrs = batch.scenes.attributes(i)
        parsed = parse_caption(cap)
        assert parsed["shape"] == attrs["shape"] and parsed["colour"] == attrs["colour"], cap
        assert parsed.get("count", 1) == attrs["count"], cap
        assert set(parsed) <= {"shape", "colour", "count"}, cap
    with pytest.raises(ValueError, match="caption style"):
        draw_batch(PRETRAIN_DISTRIBUTION, 2, seed=0, caption_style="long")


def test_captions_fit_the_context_length():
    import open_clip

    from transmiter.synthetic.architectures import STRONG_MODEL, register_synthetic_models

    register_synthetic_models()
    tokenizer = open_clip.get_tokenizer(STRONG_MODEL)
    assert tokenizer.context_length == 24
    batch = draw_batch(PRETRAIN_DISTRIBUTION, 2000, seed=5)
    longest = max(len(tokenizer.encode(c)) + 2 for c in batch.captions)
    assert longest <= 24, longest


def test_caption_mentions_are_random_but_seeded():
    s = sample_scenes(PRETRAIN_DISTRIBUTION, 50, seed=9)
    a = caption_scenes(s, np.random.default_rng(0))
    b = caption_scenes(s, np.random.default_rng(0))
    assert a == b


def test_object_colour_is_present_in_its_pixels():
    s = sample_scenes(CLEAN, 400, seed=6, fixed={"texture": "solid", "count": 1})
    images = render_scenes(s).astype(np.float64)
    full = s.object_mask(threshold=0.999)  # pixels fully covered by the object
    palette = np.array(list(COLOURS.values()), dtype=np.float64)
    for i in range(len(s)):
        assert full[i].sum() >= 2, i
        mean = images[i][full[i]].mean(axis=0)
        np.testing.assert_allclose(mean, palette[s.colour[i]], atol=1.0)
    mask = s.object_mask()
    # and the object is really drawn over the background: its area grows with the size word
    area = mask.reshape(len(s), -1).sum(1)
    for small, large in ((0, 1), (1, 2)):
        assert area[s.size == small].mean() < area[s.size == large].mean()


def test_object_colour_survives_the_benchmark_shift():
    from transmiter.synthetic.benchmarks import BENCHMARKS

    dist = BENCHMARKS["SynthShapes"].distribution.replace(textures=("solid",), texture_weights=None)
    s = sample_scenes(dist, 300, seed=3)
    images = render_scenes(s).astype(np.float64)
    mask = s.object_mask()
    # the benchmark's systematic tint moves every colour the same way
    palette = np.clip(np.array(list(COLOURS.values()), dtype=np.float64) * np.array(dist.tint), 0, 255)
    allowed = [list(COLOURS).index(c) for c in dist.colours]
    hits = 0
    for i in range(len(s)):
        mean = images[i][mask[i]].mean(axis=0)
        nearest = allowed[int(np.argmin(((palette[allowed] - mean) ** 2).sum(1)))]
        hits += nearest == s.colour[i]
    assert hits / len(s) > 0.85


def test_shift_changes_pixels_but_not_scenes():
    base = sample_scenes(CLEAN, 16, seed=11)
    shifted = sample_scenes(CLEAN.replace(noise_std=(10.0, 10.0)), 16, seed=11)
    np.testing.assert_array_equal(base.shape, shifted.shape)
    diff = np.abs(render_scenes(base).astype(int) - render_scenes(shifted).astype(int))
    assert 4 < diff.mean() < 12


def test_generation_speed_smoke():
    import time

    t = time.perf_counter()
    draw_batch(PRETRAIN_DISTRIBUTION, 4000, seed=0)
    # ~0.5 s on an idle core; generous bound for loaded CI machines
    assert time.perf_counter() - t < 20
