"""Model layer: open_clip wrapper, prompt templates, class-name cleaning and zero-shot text heads.

    from transmiter.models.clip import ModelSpec, load_clip
    bundle = load_clip(ModelSpec(arch="ViT-B-16", pretrained="openai"))

Modules: ``clip`` (ModelSpec, load_clip, weights_available), ``templates`` (prompt template tables),
``classnames``, ``heads`` (cached zero-shot text heads), ``towers`` (the two towers split at block ω),
``text_pooling`` (open_clip's text pooling, pinned by a test), ``encoder_flops``. Nothing heavy is
imported here, so the configuration layer can read ``templates`` without torch.
"""
