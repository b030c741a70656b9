"""`transmiter data check|fake [hydra overrides]`: dataset sub-commands on the composed config.

transmiter data check dataset=oxford_pets paths.data_dir=/data/coop   # what is missing, exit 1 if any
transmiter data check dataset=all                                     # every shipped dataset config
transmiter data check experiment=dg                                   # a job's dataset and its setting's targets
transmiter data check dataset=dtd --decode                            # also decode every image (slower)
transmiter data fake dataset=smoke [--classes 10 --per-class 8,4,8]    # a tiny fake copy (tests, smoke)
transmiter data synthetic [--scale demo|tiny]                         # the synthetic cross-dataset / DG datasets
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _compose(overrides: list[str]):
    from transmiter.config import compose_config

    return compose_config(overrides)


def _dataset_choices() -> list[str]:
    from transmiter.config.instantiate import dataset_config_names

    return dataset_config_names()


STUDY_DATASETS = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
)


def check(overrides: list[str], only_study: bool = False, decode: bool = False) -> int:
    from transmiter.config.instantiate import dataset_spec_from_config, target_dataset_nodes
    from transmiter.data.check import check_dataset
    from transmiter.io import absolute

    choices = [o.split("=", 1)[1] for o in overrides if o.startswith("dataset=")]
    rest = [o for o in overrides if not o.startswith("dataset=")]
    names = _dataset_choices() if choices == ["all"] else (choices or [None])
    if only_study:
        names = list(STUDY_DATASETS)
    failures, checked = 0, set()
    for name in names:
        cfg = _compose(rest + ([f"dataset={name}"] if name else []))
        # the dataset, and the targets its setting scores (cross-dataset, domain generalisation)
        for node in [cfg.dataset, *target_dataset_nodes(cfg).values()]:
            spec = dataset_spec_from_config(node)
            if spec.folder in checked:
                continue
            checked.add(spec.folder)
            report = check_dataset(spec, absolute(cfg.paths.data_dir), decode=decode)
            print(report.format())
            failures += not report.ok
    return 1 if failures else 0


def fake(overrides: list[str], classes: int | None, per_class: str, image_size: int) -> int:
    from transmiter.config.instantiate import dataset_spec_from_config
    from transmiter.data.fake import write_fake_dataset
    from transmiter.io import absolute

    cfg = _compose(overrides)
    spec = dataset_spec_from_config(cfg.dataset)
    counts = tuple(int(x) for x in per_class.split(","))
    data_dir = absolute(cfg.paths.data_dir)
    written = write_fake_dataset(
        spec, data_dir, num_classes=classes or spec.num_classes, per_class=counts, image_size=image_size
    )
    print(
        f"wrote fake {written.name} ({written.num_classes} classes, {counts} images per class "
        f"train/val/test) at {Path(data_dir) / spec.folder}"
    )
    return 0


def synthetic(overrides: list[str], scale: str) -> int:
    """Generate (or reuse) SynthObjects and its four shifted renderings under `paths.data_dir`."""
    import logging

    from transmiter.io import absolute
    from transmiter.synthetic.setting_benchmarks import generate_setting_benchmarks

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_dir = absolute(_compose(overrides).paths.data_dir)
    for name, root in generate_setting_benchmarks(data_dir, scale=scale).items():
        print(f"{name}: {root}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="transmiter data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["check", "fake", "synthetic"])
    parser.add_argument("--classes", type=int, default=None, help="fake: number of classes")
    parser.add_argument("--per-class", default="8,4,8", help="fake: train,val,test images per class")
    parser.add_argument("--image-size", type=int, default=32, help="fake: image side in pixels")
    parser.add_argument(
        "--scale", choices=["demo", "tiny"], default="demo", help="synthetic: images per class"
    )
    parser.add_argument(
        "--only-study",
        action="store_true",
        help="check: the 11 datasets of the base-to-novel / base-to-base studies",
    )
    parser.add_argument(
        "--decode",
        action="store_true",
        help="check: also open and decode every image, listing those that cannot be read (slower)",
    )
    args, overrides = parser.parse_known_args(argv)
    if args.command == "check":
        return check(overrides, args.only_study, args.decode)
    if args.command == "synthetic":
        return synthetic(overrides, args.scale)
    return fake(overrides, args.classes, args.per_class, args.image_size)
