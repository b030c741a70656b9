"""The FT-vs-SkipT benchmark runs and reports the expected keys; toy data helpers behave."""

from __future__ import annotations

import math

import pytest
import torch

from bench.ft_vs_skip import compare_ft_vs_skip
from tests.toys import SolidColourDataset, register_tiny_config


def test_solid_colour_dataset():
    data = SolidColourDataset(3, 2, image_size=16)
    image, label, index = data[5]
    assert image.shape == (3, 16, 16) and label == 2 and index == 5
    assert torch.equal(data[5][0], image)  # fixed noise without augmentation
    aug = SolidColourDataset(3, 2, image_size=16, augment=True)
    assert not torch.equal(aug[1][0], aug[1][0])
    assert data.labels == [0, 0, 1, 1, 2, 2] and data.classnames == ["red", "green", "blue"]


def test_compare_ft_vs_skip_in_process():
    name = register_tiny_config()
    report = compare_ft_vs_skip(name, num_classes=5, image_size=32, steps=2, batch=4, isolate=False)
    for kind in ("ft", "skip"):
        for key in ("time_per_step_s", "peak_mem_mb", "saved_activations_mb", "trainable_params"):
            assert report[kind][key] >= 0
    assert report["skip"]["trainable_params"] < report["ft"]["trainable_params"]
    assert report["skip"]["saved_activations_mb"] < report["ft"]["saved_activations_mb"]
    assert report["skip"]["extract_s_per_image"] > 0
    assert not math.isnan(report["ratio"]["time_per_step_s"])


@pytest.mark.slow
def test_compare_ft_vs_skip_isolated_processes():
    name = register_tiny_config()
    report = compare_ft_vs_skip(name, num_classes=5, image_size=32, steps=3, batch=4, isolate=True)
    assert report["setup"]["isolated"] and report["ratio"]["trainable_params"] > 1
