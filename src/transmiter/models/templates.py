"""Prompt templates of the CoOp protocol and of Skip Tuning.

    template_set("OxfordPets", "coop")      -> ["a photo of a {}, a type of pet."]
    template_set("OxfordPets", "skip")      -> ["a bad photo of a {}, a type of pet."]
    template_set("OxfordPets", "ensemble")  -> 7 ImageNet-select templates + the CoOp one (8)
    template_set("ImageNet", "imagenet80")  -> the 80 OpenAI ImageNet templates

Datasets that are not in the tables (e.g. the synthetic world) pass their own templates through
their dataset config (`templates: {coop: [...], ...}`), which take precedence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

TEMPLATE_KINDS = ("coop", "skip", "ensemble", "imagenet80")

# CoOp `zsclip.py` CUSTOM_TEMPLATES: single hand-crafted template per dataset.
COOP_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# Skip Tuning / FT-CLIP `_CUSTOM_TEMPLATES`: used by the fine-tuned text classifier.
SKIP_TUNING_TEMPLATES: dict[str, str] = {
    "ImageNet": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetSketch": "a sketch of a {}.",
    "ImageNetA": "a bad photo of a {}.",
    "ImageNetR": "a rendition of a {}.",
    "Caltech101": "itap of a {}.",
    "DescribableTextures": "itap of a {}.",
    "EuroSAT": "a centered satellite photo of {}.",
    "FGVCAircraft": "a bright photo of a {}, a type of aircraft.",
    "Food101": "a photo of the nice {}.",
    "OxfordFlowers": "a close-up photo of a {}.",
    "OxfordPets": "a bad photo of a {}, a type of pet.",
    "SUN397": "a photo of a {}.",
    "StanfordCars": "a photo of the {}, a type of car.",
    "UCF101": "a photo of a {}, a type of sport.",
}

# CoOp IMAGENET_TEMPLATES_SELECT (ZeroshotCLIP2); the dataset's CoOp template is appended for non-ImageNet.
IMAGENET_SELECT_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# OpenAI's 80 ImageNet templates, in CoOp's order.
IMAGENET_80_TEMPLATES: tuple[str, ...] = tuple(
    t.strip()
    for t in """
a bad photo of a {}.|a photo of many {}.|a sculpture of a {}.|a photo of the hard to see {}.|a low resolution photo of the {}.|a rendering of a {}.|graffiti of a {}.|a bad photo of the {}.
a cropped photo of the {}.|a tattoo of a {}.|the embroidered {}.|a photo of a hard to see {}.|a bright photo of a {}.|a photo of a clean {}.|a photo of a dirty {}.|a dark photo of the {}.
a drawing of a {}.|a photo of my {}.|the plastic {}.|a photo of the cool {}.|a close-up photo of a {}.|a black and white photo of the {}.|a painting of the {}.|a painting of a {}.
a pixelated photo of the {}.|a sculpture of the {}.|a bright photo of the {}.|a cropped photo of a {}.|a plastic {}.|a photo of the dirty {}.|a jpeg corrupted photo of a {}.|a blurry photo of the {}.
a photo of the {}.|a good photo of the {}.|a rendering of the {}.|a {} in a video game.|a photo of one {}.|a doodle of a {}.|a close-up photo of the {}.|a photo of a {}.
the origami {}.|the {} in a video game.|a sketch of a {}.|a doodle of the {}.|a origami {}.|a low resolution photo of a {}.|the toy {}.|a rendition of the {}.
a photo of the clean {}.|a photo of a large {}.|a rendition of a {}.|a photo of a nice {}.|a photo of a weird {}.|a blurry photo of a {}.|a cartoon {}.|art of a {}.
a sketch of the {}.|a embroidered {}.|a pixelated photo of a {}.|itap of the {}.|a jpeg corrupted photo of the {}.|a good photo of a {}.|a plushie {}.|a photo of the nice {}.
a photo of the small {}.|a photo of the weird {}.|the cartoon {}.|art of the {}.|a drawing of the {}.|a photo of the large {}.|a black and white photo of a {}.|the plushie {}.
a dark photo of a {}.|itap of a {}.|graffiti of the {}.|a toy {}.|itap of my {}.|a photo of a cool {}.|a photo of a small {}.|a tattoo of the {}.
""".replace("\n", "|").split("|")
    if t.strip()
)
assert len(IMAGENET_80_TEMPLATES) == 80


class TemplateError(ValueError):
    """A template kind or dataset has no templates."""


def template_set(
    dataset_name: str, kind: str = "coop", overrides: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """The templates of one kind for one dataset (see the module docstring for the kinds).

    `overrides` (from the dataset config's `templates:` key) wins over the built-in tables.
    """
    if kind not in TEMPLATE_KINDS:
        raise TemplateError(f"unknown template kind {kind!r}; choose one of {', '.join(TEMPLATE_KINDS)}")
    if overrides and kind in overrides and overrides[kind]:
        return [str(t) for t in overrides[kind]]
    if kind == "imagenet80":
        return list(IMAGENET_80_TEMPLATES)
    own = (overrides or {}).get("coop") or (
        [COOP_TEMPLATES[dataset_name]] if dataset_name in COOP_TEMPLATES else None
    )
    if kind == "coop":
        if own is None:
            raise TemplateError(_missing(dataset_name, kind))
        return list(own)
    if kind == "skip":
        if dataset_name in SKIP_TUNING_TEMPLATES:
            return [SKIP_TUNING_TEMPLATES[dataset_name]]
        if own is None:
            raise TemplateError(_missing(dataset_name, kind))
        return list(own)  # datasets outside the Skip Tuning table share their CoOp template
    # ensemble: ImageNet-select 7, plus the dataset's own template except for ImageNet itself
    templates = list(IMAGENET_SELECT_TEMPLATES)
    if dataset_name != "ImageNet" and own is not None:
        templates += [t for t in own if t not in templates]
    return templates


def _missing(dataset_name: str, kind: str) -> str:
    return (
        f"no {kind!r} template for dataset {dataset_name!r}; add `templates: {{{kind}: ['a photo of a {{}}.']}}` "
        "to its dataset config"
    )
