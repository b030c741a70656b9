"""Fast tests of the two synthetic worlds: the named kinds and their captions, the `world=` config group,
bad input (unknown world, a benchmark of the other world, missing weights), and shipped weights."""

from __future__ import annotations

import re

import numpy as np
import pytest
from omegaconf import OmegaConf
from open_clip.tokenizer import SimpleTokenizer

from transmiter.config import CONFIG_DIR, ConfigError, validate_config
from transmiter.synthetic import captions as cap
from transmiter.synthetic import pretrain as pt
from transmiter.synthetic.kinds import FAMILIES, KINDS, KindNaming, caption_with_names, family_kinds, kind_ids
from transmiter.synthetic.world import BG_COLOURS, COLOURS, PRETRAIN_DISTRIBUTION, SHAPES, sample_scenes
from transmiter.synthetic.worlds import WORLDS, get_world

WORLD_FILES = sorted(p.stem for p in (CONFIG_DIR / "world").glob("*.yaml"))


# --------------------------------------------------------------------------------------------- kinds


def _caption_vocabulary() -> set[str]:
    words = set(SHAPES) | set(COLOURS) | set(BG_COLOURS) | set(cap.PLURALS.values())
    for table in (
        cap.SIZE_WORDS,
        cap.TEXTURE_WORDS,
        cap.BG_PATTERN_WORDS,
        cap.COUNT_WORDS,
        cap.POSITION_PHRASES,
    ):
        words |= {w for phrases in table.values() for p in phrases for w in p.split()}
    for frame, _ in cap.FRAMES:
        words |= set(frame.replace("{}", " ").split())
    return words | {"on", "against", "with", "background", "backdrop", "an"}


def test_every_look_is_one_kind_and_every_name_is_its_own_token():
    assert len(KINDS) == len(SHAPES) * len(COLOURS)
    assert {(k.shape, k.colour) for k in KINDS} == {(s, c) for s in SHAPES for c in COLOURS}
    names = [k.name for k in KINDS]
    assert len(set(names)) == len(names)
    tokenizer = SimpleTokenizer()
    # one BPE token each, so no two names share a piece, and none is a word captions use otherwise
    assert all(len(tokenizer.encode(n)) == 1 for n in names), [
        n for n in names if len(tokenizer.encode(n)) > 1
    ]
    assert not set(names) & _caption_vocabulary()
    for family in FAMILIES:
        kinds = family_kinds(family)
        assert (
            len(kinds) == 40 and len({k.shape for k in kinds}) == 4 and len({k.colour for k in kinds}) == 10
        )


def test_look_alike_pairs_share_a_shape_and_a_benchmark_half():
    from transmiter.synthetic.kinds import COLOUR_PAIRS, KIND_BY_NAME

    pairs = {frozenset(p) for p in COLOUR_PAIRS}
    for k in KINDS:
        partner = KIND_BY_NAME[k.partner]
        assert partner.partner == k.name and partner.shape == k.shape and partner.family == k.family
        assert partner.base == k.base and frozenset((k.colour, partner.colour)) in pairs


def test_knowledge_is_balanced_over_halves_and_misnomers_name_the_partner():
    from transmiter.synthetic.kinds import class_knowledge_naming, knowledge_categories

    categories = knowledge_categories()
    counts = {}
    for k in KINDS:
        key = (k.family, k.base, categories[k.name])
        counts[key] = counts.get(key, 0) + 1
    for family in FAMILIES:  # the same knowledge mix in every benchmark's base and novel halves
        assert {c: counts.get((family, True, c)) for c in ("known", "rare", "misnamed")} == {
            c: counts.get((family, False, c)) for c in ("known", "rare", "misnamed")
        }
    naming = class_knowledge_naming()
    assert sorted(KINDS[k].name for k, _, _ in naming.misnomers) == sorted(
        n for n, c in categories.items() if c == "misnamed"
    )
    for k, other, p in naming.misnomers:
        assert KINDS[other].name == KINDS[k].partner and p > 0.5
        assert categories[KINDS[other].name] == "known"  # one name for both looks of a confused pair
    rare = [naming.rates[i] for i, k in enumerate(KINDS) if categories[k.name] == "rare"]
    known = [naming.rates[i] for i, k in enumerate(KINDS) if categories[k.name] != "rare"]
    assert max(rare) < min(known)


@pytest.mark.parametrize("name", sorted(get_world("class_knowledge").benchmarks))
def test_kind_benchmarks_split_whole_pairs_and_cover_every_look_in_each_half(name):
    from transmiter.synthetic.kinds import KIND_BY_NAME

    spec = get_world("class_knowledge").benchmarks[name]
    kinds = [KIND_BY_NAME[c] for c in spec.classnames]
    assert [dict(a) for a in spec.class_attributes] == [{"colour": k.colour, "shape": k.shape} for k in kinds]
    half = (spec.num_classes + 1) // 2
    base, novel = kinds[:half], kinds[half:]
    assert all(k.base for k in base) and not any(k.base for k in novel)
    for group in (base, novel):
        assert {k.partner for k in group} == {k.name for k in group}
        assert {k.shape for k in group} == {k.shape for k in kinds}
        assert {k.colour for k in group} == {k.colour for k in kinds}


def test_kind_ids_follow_shape_and_colour():
    scenes = sample_scenes(PRETRAIN_DISTRIBUTION, 200, 0)
    for i, k in enumerate(kind_ids(scenes)):
        attrs = scenes.attributes(i)
        assert (KINDS[k].shape, KINDS[k].colour) == (attrs["shape"], attrs["colour"])


def _names_in(text: str) -> set[str]:
    words = set(re.findall(r"[a-z]+", text))
    return {k.name for k in KINDS if k.name in words or k.plural in words}


@pytest.mark.parametrize("style", ["full", "short"])
def test_captions_name_the_kind_at_its_rate(style):
    scenes = sample_scenes(PRETRAIN_DISTRIBUTION, 400, 1)
    ids = kind_ids(scenes)
    always = caption_with_names(
        scenes, np.random.default_rng(0), KindNaming(rates=(1.0,) * len(KINDS)), style
    )
    for text, k in zip(always, ids):
        assert _names_in(text) == {KINDS[k].name}, text
        assert KINDS[k].shape not in text.split() and KINDS[k].colour not in text.split()
    never = caption_with_names(scenes, np.random.default_rng(0), KindNaming(rates=(0.0,) * len(KINDS)), style)
    for text, k in zip(never, ids):
        assert not _names_in(text)
        assert cap.parse_caption(text)["shape"] == KINDS[k].shape
    rates = np.where(np.arange(len(KINDS)) % 2 == 0, 0.9, 0.1)
    some = caption_with_names(scenes, np.random.default_rng(0), KindNaming(rates=tuple(rates)), style)
    named = np.array([bool(_names_in(t)) for t in some])
    even = ids % 2 == 0
    assert named[even].mean() > 0.75 and named[~even].mean() < 0.25


def test_a_misnomer_uses_the_other_kinds_name():
    scenes = sample_scenes(PRETRAIN_DISTRIBUTION, 300, 2)
    ids = kind_ids(scenes)
    k = int(ids[0])
    other = (k + 1) % len(KINDS)
    naming = KindNaming(rates=(1.0,) * len(KINDS), misnomers=((k, other, 1.0),))
    texts = caption_with_names(scenes, np.random.default_rng(0), naming, "full")
    for text, kid in zip(texts, ids):
        assert _names_in(text) == {KINDS[other if kid == k else kid].name}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rates": (0.5,) * 3},
        {"rates": (1.5,) * len(KINDS)},
        {"rates": (0.5,) * len(KINDS), "misnomers": ((0, 0, 0.5),)},
        {"rates": (0.5,) * len(KINDS), "misnomers": ((0, 1, 0.5), (0, 2, 0.5))},
    ],
)
def test_bad_naming_is_rejected(kwargs):
    with pytest.raises(ValueError, match="KindNaming"):
        KindNaming(**kwargs)


def test_naming_is_part_of_the_recipe_key_only_in_the_world_that_names():
    shift = get_world("domain_shift").pretrain_config("SynthViT-T-8")
    assert "naming" not in shift.to_dict()  # the first world's cached checkpoints keep their keys
    knowledge = get_world("class_knowledge").pretrain_config("SynthViT-T-8")
    assert knowledge.to_dict()["naming"] == get_world("class_knowledge").naming.to_dict()
    assert knowledge.key() != shift.key()


def test_a_worlds_pretraining_overrides_change_only_their_architecture_at_demo_scale():
    from transmiter.synthetic import pretrain as pt

    world = get_world("class_knowledge")
    assert world.pretrain_overrides, "the class_knowledge world's runs were chosen on validation"
    for model in ("SynthViT-T-8", "SynthViT-S-8"):
        changes = dict(world.pretrain_overrides.get(model, {}))
        demo = world.pretrain_config(model, "demo")
        assert demo == pt.pretrain_config(model, "demo", naming=world.naming, **changes)
        # the tiny scale (tests) keeps the standard recipe
        assert world.pretrain_config(model, "tiny") == pt.pretrain_config(model, "tiny", naming=world.naming)
    weak, strong = (world.pretrain_config(m) for m in ("SynthViT-T-8", "SynthViT-S-8"))
    assert (weak.steps, weak.seed, strong.steps, strong.seed) == (550, 0, 500, 1)


# --------------------------------------------------------------------------------------------- config group


def test_every_world_has_a_config_and_the_configs_match_the_registry(compose):
    assert WORLD_FILES == sorted(WORLDS)
    for name in WORLD_FILES:
        cfg = compose([f"world={name}"])
        folders = cfg.world.datasets.split(",")
        assert cfg.world.name == name
        assert sorted(folders) == sorted(WORLDS[name].dataset_folders)
        assert set(cfg.world.demo_datasets.split(",")) <= set(folders)
        assert cfg.dataset.folder == folders[0]  # the world picks its own first benchmark
        assert f"/world/{name}/demo/" in cfg.model.pretrained
        for folder in folders:
            spec = OmegaConf.load(CONFIG_DIR / "dataset" / f"{folder}.yaml")
            assert spec.name in WORLDS[name].benchmarks


def test_unknown_world_names_the_choices(compose):
    with pytest.raises(Exception, match="world/atlantis") as err:
        compose(["world=atlantis"])
    assert all(name in str(err.value) for name in WORLDS)


def _checked(compose, overrides, tmp_path):
    cfg = compose(
        [*overrides, f"paths.cache_dir={tmp_path / 'cache'}", f"paths.data_dir={tmp_path / 'data'}"]
    )
    validate_config(cfg)


def test_a_benchmark_of_the_other_world_is_refused(compose, tmp_path):
    with pytest.raises(ConfigError, match="world=domain_shift"):
        _checked(compose, ["dataset=synth_shapes"], tmp_path)
    with pytest.raises(ConfigError, match="world=class_knowledge"):
        _checked(compose, ["world=domain_shift", "dataset=synth_birds"], tmp_path)


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_missing_weights_say_how_to_build_them(compose, tmp_path, world):
    with pytest.raises(ConfigError, match=f"transmiter world build world={world}"):
        _checked(compose, [f"world={world}", "method=zeroshot"], tmp_path)
    with pytest.raises(ConfigError, match=f"transmiter world build world={world} --scale tiny"):
        _checked(compose, [f"world={world}", "world_scale=tiny"], tmp_path)


def test_a_missing_benchmark_says_how_to_build_it(compose, tmp_path, monkeypatch):
    from transmiter.models.clip import ModelSpec

    monkeypatch.setattr(ModelSpec, "validate", lambda self: None)  # weights present: only the data is missing
    with pytest.raises(ConfigError, match="transmiter world build world=class_knowledge"):
        _checked(compose, ["world=class_knowledge", "dataset=synth_plants"], tmp_path)


# --------------------------------------------------------------------------------------------- shipped weights


@pytest.fixture(scope="module")
def no_benchmarks():
    """build_world without writing benchmarks (the shipped-weights tests need only the models)."""
    import dataclasses

    from transmiter.synthetic import build

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "get_world", lambda name: dataclasses.replace(get_world(name), benchmarks={}))
        mp.setattr(
            pt,
            "PRETRAIN_SCALES",
            pt.PRETRAIN_SCALES | {"tiny": {"steps": 1, "batch_size": 8, "warmup_steps": 0}},
        )
        yield


@pytest.fixture(scope="module")
def shipped(no_benchmarks, tmp_path_factory):
    """(tiny class_knowledge world trained into its own cache, the folder it was shipped to)."""
    from transmiter.synthetic.build import build_world, ship_world

    root = tmp_path_factory.mktemp("shipped_world")
    world = build_world(root / "cache", root / "data", world="class_knowledge", scale="tiny", progress=False)
    assert set(world.sources.values()) == {"trained"}
    return world, ship_world(world, root / "shipped").parent


def _build(tmp_path, shipped_dir, **kwargs):
    from transmiter.synthetic.build import build_world

    return build_world(
        tmp_path / "cache",
        tmp_path / "data",
        world="class_knowledge",
        scale="tiny",
        progress=False,
        shipped_dir=shipped_dir,
        **kwargs,
    )


def test_shipped_weights_are_installed_instead_of_training(shipped, tmp_path):
    trained, shipped_dir = shipped
    runs = pt.TRAINING_RUNS
    again = _build(tmp_path, shipped_dir)
    assert pt.TRAINING_RUNS == runs and set(again.sources.values()) == {"shipped"}
    for model in (again.weak_model, again.strong_model):
        assert again.checkpoint(model).read_bytes() == trained.checkpoint(model).read_bytes()
    assert set(_build(tmp_path, shipped_dir).sources.values()) == {"cache"}
    forced = _build(tmp_path, shipped_dir, force=True)  # --force trains even when cached and shipped
    assert pt.TRAINING_RUNS == runs + 2 and set(forced.sources.values()) == {"trained"}


def test_a_corrupt_shipped_checkpoint_is_refused(shipped, tmp_path):
    import shutil

    shipped_dir = tmp_path / "shipped"
    shutil.copytree(shipped[1], shipped_dir)
    path = shipped_dir / "class_knowledge" / "SynthViT-T-8.safetensors"
    path.write_bytes(path.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(ValueError, match="--force"):
        _build(tmp_path, shipped_dir)


def test_shipped_weights_of_another_recipe_are_not_used(shipped, tmp_path, caplog):
    from transmiter.synthetic.build import _install_shipped

    other = [pt.pretrain_config(m, "tiny", steps=3) for m in (shipped[0].weak_model, shipped[0].strong_model)]
    assert _install_shipped("class_knowledge", "tiny", other, tmp_path, shipped[1]) == set()
    assert "another recipe" in caplog.text and "--force --update-shipped" in caplog.text
    assert _install_shipped("class_knowledge", "demo", other, tmp_path, shipped[1]) == set()  # other scale


def test_the_weights_shipped_with_the_package_are_those_of_the_current_recipe():
    """A change to the class_knowledge recipe (naming, steps, architecture) must come with refreshed weights
    (`transmiter world build world=class_knowledge --force --update-shipped`), or `make demo` pretrains."""
    from transmiter.io import file_digest
    from transmiter.synthetic.build import SHIPPED_DIR, shipped_manifest

    manifest = shipped_manifest("class_knowledge")
    assert manifest is not None and manifest["scale"] == "demo"
    spec = get_world("class_knowledge")
    for model, entry in manifest["models"].items():
        assert entry["key"] == spec.pretrain_config(model, "demo").key(), model
        assert file_digest(SHIPPED_DIR / "class_knowledge" / entry["file"]) == entry["sha256"], model
