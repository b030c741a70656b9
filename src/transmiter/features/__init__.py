"""On-disk caches of tensors (image features, text heads) and the feature-extraction pass.

cache = ArrayCache(Path("~/.cache/transmiter/features"))
feats = extract_image_features(bundle, items, view=ViewSpec("test"), cache=cache, trainer_cfg=...)
"""
