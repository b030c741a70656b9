"""Model layer: open_clip wrapper, prompt templates, class-name cleaning and zero-shot text heads.

from transmiter.models import ModelSpec, load_clip
bundle = load_clip(ModelSpec(arch="ViT-B-16", pretrained="openai"))
"""

from transmiter.models.clip import ClipBundle, ModelError, ModelSpec, load_clip

__all__ = ["ClipBundle", "ModelError", "ModelSpec", "load_clip"]
