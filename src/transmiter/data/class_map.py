"""Class maps: where each class of a target dataset sits in a source dataset's label space.

Domain-generalisation targets hold some or all of the source's classes in a label space of their own:
ImageNet-A and -R have 200 of ImageNet's 1000 classes, labelled 0..199 in the order of their sorted wnid
folders; ImageNet-V2 and -Sketch have all 1000. Their class names come from the same `classnames.txt` as
ImageNet's, so a name identifies a class::

    from transmiter.data.class_map import class_map
    mapping = class_map(imagenet.classnames, imagenet_a.classnames, source="ImageNet", target="ImageNetA")
    mapping[3]            # the ImageNet label of ImageNet-A's class 3
    # score a 1000-way classifier on ImageNet-A: logits[:, mapping].argmax(1) == imagenet_a label

Names are compared exactly (both lists come from one file); a target class missing from the source, or a
name the source lists twice, is an error that names the classes and the fix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from transmiter.data.errors import DatasetError

_SHOWN = 5


def class_map(
    source_classnames: Sequence[str],
    target_classnames: Sequence[str],
    *,
    source: str = "source",
    target: str = "target",
) -> list[int]:
    """The source label of every target class (index = target label), matched by class name."""
    position = {name: i for i, name in enumerate(source_classnames)}
    repeated = sorted(name for name, n in Counter(source_classnames).items() if n > 1)
    ambiguous = [name for name in target_classnames if name in repeated]
    if ambiguous:
        raise DatasetError(
            f"{target} cannot be mapped into {source}'s label space by class name: {source} lists "
            f"{_listing(ambiguous)} more than once. Give every class a distinct name in {source}'s "
            "classnames.txt (and the same names in the target's copy)."
        )
    missing = [name for name in target_classnames if name not in position]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {target}'s {len(target_classnames)} classes are not classes of {source}: "
            f"{_listing(missing)}. A domain-generalisation target must hold classes of its source under the "
            f"same names: copy {source}'s classnames.txt into the target's folder, or score the target over "
            "its own classes (setting.target_label_space=own)."
        )
    mapped = [position[name] for name in target_classnames]
    if len(set(mapped)) != len(mapped):
        doubled = sorted({n for n in target_classnames if list(target_classnames).count(n) > 1})
        raise DatasetError(f"{target} lists the class(es) {_listing(doubled)} more than once")
    return mapped


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
