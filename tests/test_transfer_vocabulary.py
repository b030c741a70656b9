"""Auxiliary class expansion: default vocabulary, exclusion, determinism, errors, file formats."""

from __future__ import annotations

import random

import pytest

from transmiter.transfer.vocabulary import (
    AuxiliaryVocabularyError,
    available_aux_strategies,
    load_vocabulary,
    normalize_name,
    register_aux_strategy,
    select_auxiliary_names,
)


def test_default_vocabulary_is_large_unique_lowercase():
    names = load_vocabulary()
    assert len(names) >= 1500
    assert len(set(names)) == len(names)
    assert len({normalize_name(n) for n in names}) == len(names)
    assert all(n == n.lower() and n == n.strip() and n for n in names)
    assert {"teapot", "harbour", "granite"} <= set(names)


def test_excludes_task_names_case_and_underscore_insensitive():
    task = ["Teapot", "fire_hydrant", "Coffee  Mug", "not_in_vocab_xyz"]
    aux = select_auxiliary_names(task, K=len(load_vocabulary()) - 5, seed=0)
    keys = {normalize_name(a) for a in aux}
    assert not keys & {"teapot", "fire hydrant", "coffee mug"}
    assert len(aux) == len(load_vocabulary()) - 5 - len(task)
    assert len(set(aux)) == len(aux)


def test_deterministic_by_seed_and_seed_matters():
    task = ["dog", "cat", "sparrow"]
    a = select_auxiliary_names(task, K=128, seed=1)
    b = select_auxiliary_names(task, K=128, seed=1)
    c = select_auxiliary_names(task, K=128, seed=2)
    assert a == b and len(a) == 125
    assert a != c


def test_matches_reference_sorted_random_sample():
    vocab = [f"name{i:03d}" for i in range(300)][::-1]
    task = ["name005", "NAME010"]
    ours = select_auxiliary_names(task, K=66, seed=3, vocabulary=vocab)
    cands = sorted(n for n in vocab if n not in {"name005", "name010"})
    random.seed(3)
    assert ours == random.sample(cands, 64)


def test_c_ge_k_raises_with_fix_and_grow_k():
    task = [f"class{i}" for i in range(100)]
    with pytest.raises(AuxiliaryVocabularyError) as err:
        select_auxiliary_names(task, K=64, seed=0)
    msg = str(err.value)
    assert "K=64" in msg and "C=100" in msg and "raise K" in msg
    aux = select_auxiliary_names(task, K=64, seed=0, grow_k=True, min_aux=20)
    assert len(task) + len(aux) == 128  # next multiple of 64 >= 100 + 20


def test_too_small_vocabulary_raises():
    with pytest.raises(AuxiliaryVocabularyError, match="only 3"):
        select_auxiliary_names(["a"], K=10, seed=0, vocabulary=["x", "y", "z", "a"])


def test_plain_file_and_openimages_style_csv(tmp_path):
    plain = tmp_path / "names.txt"
    plain.write_text("# comment\nalpha\n\nbeta\ngamma\nAlpha\ndelta\n")
    aux = select_auxiliary_names(["gamma"], K=4, seed=0, vocabulary=plain)
    assert sorted(aux) == ["alpha", "beta", "delta"]  # duplicate "Alpha" dropped, task name removed

    csv_file = tmp_path / "classnames.csv"
    csv_file.write_text('LabelName,ClassName\n/m/1,Tortoise\n/m/2,"Container, shipping"\n/m/3,Apple\n')
    assert load_vocabulary(csv_file) == ["Tortoise", "Container, shipping", "Apple"]
    aux = select_auxiliary_names(["apple"], K=3, seed=0, vocabulary=csv_file)
    assert sorted(aux) == ["Container, shipping", "Tortoise"]

    bad = tmp_path / "bad.csv"
    bad.write_text("LabelName,DisplayName\n/m/1,Tortoise\n")
    with pytest.raises(AuxiliaryVocabularyError, match="ClassName"):
        load_vocabulary(bad)
    with pytest.raises(AuxiliaryVocabularyError, match="not found"):
        load_vocabulary(tmp_path / "missing.txt")


def test_strategy_registry():
    assert "random" in available_aux_strategies()
    name = "first_n_for_test"
    if name not in available_aux_strategies():

        @register_aux_strategy(name)
        def _first(cands, n, seed, task):
            return cands[:n]

    aux = select_auxiliary_names(["b"], K=3, seed=0, vocabulary=["c", "a", "b", "d"], strategy=name)
    assert aux == ["a", "c"]
    with pytest.raises(AuxiliaryVocabularyError, match="unknown auxiliary strategy"):
        select_auxiliary_names(["b"], K=3, seed=0, strategy="nope")
