"""What a dataset looks like on disk: :class:`DatasetSpec`, and the protocol's dataset NAMEs.

A spec is pure description (no I/O). The dataset configs (`conf/dataset/*.yaml`) describe every shipped
dataset and instantiate it::

    # conf/dataset/oxford_pets.yaml
    name: OxfordPets
    folder: oxford_pets
    split_file: split_zhou_OxfordPets.json
    num_classes: 37

In Python::

    spec = DatasetSpec("OxfordPets", "oxford_pets", "json_split", "images", "split_zhou_OxfordPets.json", 37)
    splits = load_dataset(spec, "/data")          # reads /data/oxford_pets/...
    # the shipped configs' specs: transmiter.config.instantiate.shipped_dataset_spec("OxfordPets")

Loader kinds:

* ``json_split``: ``<folder>/<split_file>`` holds ``{"train"|"val"|"test": [[relpath, label, classname], ...]}``,
  ``relpath`` relative to ``<folder>/<image_dir>``.
* ``imagenet``: ``<image_dir>/train/<wnid>/*`` and ``<image_dir>/val/<wnid>/*`` plus ``classnames.txt``; val = test.
* ``fgvc_aircraft``: ``variants.txt`` + ``images_variant_{train,val,test}.txt``, images at ``<image_dir>/<id>.jpg``.
* ``imagenet_v2``: numeric folders ``<image_dir>/0 .. 999`` mapped to ``classnames.txt`` file order; test only.
* ``imagenet_variant`` (Sketch / A / R): sorted wnid folders present in ``<image_dir>`` + ``classnames.txt``; test only.

``split_file`` is only used by ``json_split``; the other kinds have fixed metadata file names (see
``transmiter.data.loaders``). ``num_classes`` (when not None) is checked after loading, which catches a
wrong split file or a half-extracted archive early.
"""

from __future__ import annotations

from dataclasses import dataclass

from transmiter.data.errors import DatasetError

LOADER_KINDS = ("json_split", "imagenet", "fgvc_aircraft", "imagenet_v2", "imagenet_variant")

# Kinds whose data only has a test split (domain-generalisation targets).
TEST_ONLY_KINDS = ("imagenet_v2", "imagenet_variant")

# What a run does with an image that cannot be decoded: stop (naming it) or leave it out.
CORRUPT_IMAGE_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class DatasetSpec:
    """Where and how one dataset is stored.

    Attributes:
        name: protocol NAME (``cfg.DATASET.NAME`` in CoOp), e.g. ``"OxfordPets"``. Also keys templates.
        folder: the dataset folder under ``data_dir``, e.g. ``"oxford_pets"``.
        loader: one of :data:`LOADER_KINDS`.
        image_dir: folder holding the images, relative to ``folder`` (``""`` means the folder itself).
        split_file: split file name inside ``folder`` (``json_split`` only), e.g. ``"split_zhou_OxfordPets.json"``.
        num_classes: expected number of classes after loading, or None to accept whatever is found.
        test_only: True when the dataset has only a test split (ImageNet-V2/Sketch/A/R).
    """

    name: str
    folder: str
    loader: str
    image_dir: str
    split_file: str | None = None
    num_classes: int | None = None
    test_only: bool = False

    def __post_init__(self) -> None:
        # Validate at construction so a typo in a Hydra dataset config fails when the config is built,
        # not after the model has been loaded.
        if self.loader not in LOADER_KINDS:
            raise DatasetError(
                f"dataset {self.name!r}: unknown loader {self.loader!r}; expected one of {', '.join(LOADER_KINDS)}"
            )
        if self.loader == "json_split" and not self.split_file:
            raise DatasetError(
                f"dataset {self.name!r}: loader 'json_split' needs split_file (e.g. 'split_zhou_{self.name}.json')"
            )
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or self.num_classes < 1):
            raise DatasetError(
                f"dataset {self.name!r}: num_classes must be a positive int or None, got {self.num_classes!r}"
            )
        if self.loader in TEST_ONLY_KINDS and not self.test_only:
            raise DatasetError(
                f"dataset {self.name!r}: loader {self.loader!r} only provides a test split; set test_only: true"
            )
        if not self.folder:
            raise DatasetError(f"dataset {self.name!r}: folder must be a non-empty path under data_dir")


# The 11 datasets of the base-to-new and few-shot protocols, in the order of the papers' tables.
BASE_TO_NEW_DATASETS = (
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
)
DOMAIN_GENERALIZATION_DATASETS = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")
