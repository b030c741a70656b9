"""The one exception type of the data layer.

Every problem with a dataset on disk (missing folder, missing split file, image referenced but absent,
corrupt image, stale few-shot cache, invalid request such as ``shots=-5``) raises :class:`DatasetError`.
Messages always name the offending path or value and say what to do about it.

Usage::

    from transmiter.data.errors import DatasetError

    try:
        splits = build_splits(spec, data_dir, shots=16, seed=1)
    except DatasetError as err:
        print(err)  # e.g. "split file missing: /data/oxford_pets/split_zhou_OxfordPets.json ..."
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset is missing, incomplete, corrupt, or was asked for in an invalid way.

    Subclasses ``ValueError`` so that config validation code that catches ``ValueError`` also catches it.
    """
