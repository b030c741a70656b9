"""Splitting open_clip towers at block ω (Skip Tuning's LSkip) and the FT / SkipT freezing rule.

    from transmiter.models.towers import image_front, image_back, text_front, text_back
    tokens = image_front(model, images, omega)           # [N, L, D] after block ω-1 (batch-first)
    feats = image_back(model, tokens, omega)             # == model.encode_image(images)
    hidden = text_front(model, token_ids, omega)         # [C, L, D] after text block ω-1
    txt = text_back(model, hidden, token_ids, omega)     # == model.encode_text(token_ids)
    ids = trim_text_tokens(model, token_ids)             # drop padding after the last end-of-text token
    txt = encode_text(model, token_ids, normalize=True)  # == model.encode_text, on trimmed ids when exact

    freeze_for_finetuning(model, start_block=0)          # FT: every block of both towers trainable
    freeze_for_finetuning(model, start_block=6)          # SkipT at ω=6 (ViT-B-16)
    validate_omega(model, 6)                             # ValueError naming ω, the depth and the valid range

Supported: any open_clip `VisionTransformer` image tower (any width / depth / patch / pooling, attentional
pooler included) and the open_clip text `Transformer`, either unpacked into `CLIP` or held as a
`TextTransformer` in `CustomTextCLIP` (causal or bidirectional mask, pad mask, appended CLS, argmax / eos /
first / last pooling, linear or matrix projection). ModifiedResNet, timm and Hugging Face towers cannot be
split: `TowerSplitError` names the architecture; full fine-tuning (`FinetuneCLIP`) works for them.

Conventions:
* Front / back tensors are batch-first [N, L, D] whatever the model's `batch_first`; the blocks run in the
  model's own layout.
* `image_front` never applies patch dropout (eval semantics): every token position is kept, so cached tokens
  have a fixed length and `back(front(x))` equals `encode_image(x)` in eval mode.
* The back functions cast their input to the tower's compute dtype (a cache stored in fp16 feeds fp32 blocks).
* Blocks honour the tower's `grad_checkpointing` flag while autograd is recording.

Trimming: CLIP pads every prompt to 77 tokens, but under a causal mask with end-of-text pooling the
columns after the longest prompt's end token never reach the pooled feature. `trim_text_tokens` drops
them (a prompt like "a photo of a dog." needs ~8 of 77), which makes every text pass (zero-shot heads,
FT's per-step text tower, Skip Tuning's text cache and upper blocks) several times cheaper with the same
features up to float rounding. Towers where this is not exact (bidirectional or pad masks, an appended
CLS, first / last pooling, non-open_clip towers) keep their full length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from transmiter.models.open_clip_internals import text_additive_mask, vision_pool

__all__ = [
    "TowerSplitError",
    "check_splittable",
    "encode_text",
    "freeze_for_finetuning",
    "image_back",
    "image_depth",
    "image_front",
    "resolve_omegas",
    "text_back",
    "text_depth",
    "text_front",
    "tower_depths",
    "trainable_parameter_names",
    "trim_text_tokens",
    "validate_omega",
]


class TowerSplitError(TypeError):
    """A tower that cannot be split at a block (not an open_clip ViT / text Transformer)."""


# --------------------------------------------------------------------------------------------------------
# tower discovery
# --------------------------------------------------------------------------------------------------------


def _vit(model: nn.Module):
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        arch = type(visual).__name__ if visual is not None else "<no .visual tower>"
        raise TowerSplitError(
            f"the image tower of this model is a {arch}, not an open_clip VisionTransformer, so it cannot "
            "be split at a block (LSkip / Skip Tuning needs a ViT: patch embedding + residual blocks). "
            "Full fine-tuning (FinetuneCLIP) works for this architecture."
        )
    return visual


@dataclass
class _TextParts:
    """The pieces of a text tower, whether unpacked into CLIP or held in a TextTransformer."""

    transformer: nn.Module
    token_embedding: nn.Module
    positional_embedding: torch.Tensor
    ln_final: nn.Module
    text_projection: nn.Module | torch.Tensor | None
    attn_mask: torch.Tensor | None
    pool_type: str
    eos_id: int | None
    tower: nn.Module | None  # the TextTransformer (CustomTextCLIP), None for CLIP's unpacked tower

    @property
    def cls_emb(self) -> torch.Tensor | None:
        return getattr(self.tower, "cls_emb", None) if self.tower is not None else None


def _text(model: nn.Module) -> _TextParts:
    from open_clip.transformer import TextTransformer, Transformer

    text = getattr(model, "text", None)
    if text is not None:
        if not isinstance(text, TextTransformer):
            raise TowerSplitError(
                f"the text tower of this model is a {type(text).__name__}, not an open_clip TextTransformer, "
                "so it cannot be split at a block (LSkip / Skip Tuning needs the open_clip text Transformer). "
                "Full fine-tuning (FinetuneCLIP) works for this architecture."
            )
        return _TextParts(
            transformer=text.transformer,
            token_embedding=text.token_embedding,
            positional_embedding=text.positional_embedding,
            ln_final=text.ln_final,
            text_projection=text.text_projection,
            attn_mask=text.attn_mask,
            pool_type=text.pool_type,
            eos_id=getattr(text, "eos_id", None),
            tower=text,
        )
    transformer = getattr(model, "transformer", None)
    if not isinstance(transformer, Transformer) or not hasattr(model, "token_embedding"):
        raise TowerSplitError(
            f"{type(model).__name__} has no open_clip text Transformer (neither CLIP's unpacked "
            "`transformer`/`token_embedding` nor a `text` TextTransformer), so its text tower cannot be split. "
            "Full fine-tuning (FinetuneCLIP) works for this architecture."
        )
    return _TextParts(
        transformer=transformer,
        token_embedding=model.token_embedding,
        positional_embedding=model.positional_embedding,
        ln_final=model.ln_final,
        text_projection=model.text_projection,
        attn_mask=getattr(model, "attn_mask", None),
        pool_type=getattr(model, "text_pool_type", "argmax"),
        eos_id=getattr(model, "text_eos_id", None),
        tower=None,
    )


def split_problem_of_config(arch: str, arch_cfg: dict) -> str | None:
    """Why Skip Tuning could not split the towers of the model that the open_clip config `arch_cfg` builds,
    read from the config alone (no model, no weights), or None when both towers are open_clip Transformers.
    The same answer as `check_splittable` on the built model, early enough to refuse a config."""
    vision, text = arch_cfg.get("vision_cfg") or {}, arch_cfg.get("text_cfg") or {}
    if isinstance(vision.get("layers"), list | tuple):
        return f"the image tower of {arch} is a ResNet (ModifiedResNet), which cannot be split at a block"
    if vision.get("timm_model_name"):
        return (
            f"the image tower of {arch} is a timm model ({vision['timm_model_name']}), which cannot be split"
        )
    if text.get("hf_model_name"):
        return f"the text tower of {arch} is a Hugging Face model ({text['hf_model_name']}), which cannot be split"
    return None


def check_splittable(model: nn.Module) -> None:
    """Raise `TowerSplitError` unless both towers can be split at a block."""
    _vit(model)
    _text(model)


def image_depth(model: nn.Module) -> int:
    """Number of residual blocks of the ViT image tower."""
    return len(_vit(model).transformer.resblocks)


def text_blocks(model: nn.Module) -> nn.ModuleList:
    """The residual blocks of the text tower (CLIP's unpacked tower or a TextTransformer)."""
    return _text(model).transformer.resblocks


def text_depth(model: nn.Module) -> int:
    """Number of residual blocks of the text tower."""
    return len(text_blocks(model))


def tower_depths(model: nn.Module) -> tuple[int, int]:
    """(image depth, text depth); e.g. (12, 12) for ViT-B-16, (24, 12) for ViT-L-14."""
    return image_depth(model), text_depth(model)


def validate_omega(model: nn.Module, omega: int, tower: str = "both") -> None:
    """Check 0 <= ω <= depth for the image tower, the text tower or both ("image" | "text" | "both")."""
    if tower not in ("image", "text", "both"):
        raise ValueError(f"tower={tower!r}: use 'image', 'text' or 'both'")
    if isinstance(omega, bool) or not isinstance(omega, int):
        raise ValueError(f"omega={omega!r} must be an integer block index (0 <= omega <= depth)")
    checks = []
    if tower in ("image", "both"):
        checks.append(("image", image_depth(model)))
    if tower in ("text", "both"):
        checks.append(("text", text_depth(model)))
    for name, depth in checks:
        if not 0 <= omega <= depth:
            raise ValueError(
                f"omega={omega} is out of range for the {name} tower, which has depth {depth}: the valid "
                f"range is 0 <= omega <= {depth} (omega blocks are frozen and cached; 0 tunes every block, "
                f"{depth} tunes only the final norm and projection)"
            )


def resolve_omegas(
    model: nn.Module, omega: int | None = None, text_omega: int | None = None
) -> tuple[int, int]:
    """The (image ω, text ω) pair used by Skip Tuning.

    * omega None -> image depth // 2 (6 for ViT-B-16, 12 for ViT-L-14).
    * text_omega None -> the same fraction of the text depth: omega * text_depth // image_depth
      (equal to omega when both towers have the same depth, e.g. ViT-B-16's 12/12).
    """
    d_img, d_txt = tower_depths(model)
    if omega is None:
        omega = d_img // 2
    validate_omega(model, omega, "image")
    if text_omega is None:
        text_omega = omega * d_txt // d_img if d_img else 0
    validate_omega(model, text_omega, "text")
    return omega, text_omega


# --------------------------------------------------------------------------------------------------------
# running blocks
# --------------------------------------------------------------------------------------------------------


def _run_blocks(
    transformer: nn.Module, x: torch.Tensor, start: int, stop: int, attn_mask: torch.Tensor | None
) -> torch.Tensor:
    """Blocks [start, stop) of an open_clip Transformer on batch-first x, in the model's own layout."""
    if start >= stop:
        return x
    batch_first = getattr(transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    use_ckpt = getattr(transformer, "grad_checkpointing", False) and torch.is_grad_enabled()
    for block in transformer.resblocks[start:stop]:
        if use_ckpt:
            x = checkpoint(block, x, attn_mask=attn_mask, use_reentrant=False)
        else:
            x = block(x, attn_mask=attn_mask)
    if not batch_first:
        x = x.transpose(0, 1)
    return x


def _check_block_index(omega: int, depth: int, what: str) -> None:
    if isinstance(omega, bool) or not isinstance(omega, int) or not 0 <= omega <= depth:
        raise ValueError(
            f"omega={omega!r} is out of range for the {what} tower, which has depth {depth}: "
            f"the valid range is 0 <= omega <= {depth}"
        )


def _cast_dtype(transformer: nn.Module) -> torch.dtype:
    return transformer.get_cast_dtype()


# --------------------------------------------------------------------------------------------------------
# image tower
# --------------------------------------------------------------------------------------------------------


def image_front(model: nn.Module, images: torch.Tensor, omega: int) -> torch.Tensor:
    """Tokens after image block ω-1: patch embed -> CLS -> pos-emb -> ln_pre -> blocks[:ω]. [N, 1+P, width]."""
    v = _vit(model)
    _check_block_index(omega, len(v.transformer.resblocks), "image")
    x = v.conv1(images)  # [N, width, gh, gw]
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, P, width]
    cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    x = x + v.positional_embedding.to(x.dtype)
    # patch dropout is skipped on purpose (eval semantics): cached tokens keep every position
    x = v.ln_pre(x)
    return _run_blocks(v.transformer, x, 0, omega, None)


def image_back(model: nn.Module, tokens: torch.Tensor, omega: int, normalize: bool = False) -> torch.Tensor:
    """Image features from tokens after block ω-1: blocks[ω:] -> pooling / ln_post (as the model does) -> proj."""
    v = _vit(model)
    depth = len(v.transformer.resblocks)
    _check_block_index(omega, depth, "image")
    x = tokens.to(_cast_dtype(v.transformer))
    x = _run_blocks(v.transformer, x, omega, depth, None)
    pooled, _ = vision_pool(v, x)  # the model's own pooling: tok / avg / none, attentional pooler, ...
    if v.proj is not None:
        pooled = pooled @ v.proj
    return F.normalize(pooled, dim=-1) if normalize else pooled


# --------------------------------------------------------------------------------------------------------
# text tower
# --------------------------------------------------------------------------------------------------------


def _text_attn_mask(parts: _TextParts, token_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """The attention mask open_clip uses for these token ids (causal, plus pad / CLS mask if configured)."""
    mask = parts.attn_mask
    if mask is not None and mask.ndim == 2 and mask.shape[-1] > token_ids.shape[1]:
        mask = mask[: token_ids.shape[1], : token_ids.shape[1]]  # trimmed ids (see trim_text_tokens)
    tower = parts.tower
    if tower is not None and (getattr(tower, "use_pad_mask", False) or parts.cls_emb is not None):
        seq_len = token_ids.shape[1] + (1 if parts.cls_emb is not None else 0)
        additive = text_additive_mask(tower, token_ids, seq_len, dtype)
        mask = additive if mask is None else mask[:seq_len, :seq_len].unsqueeze(0) + additive
    return mask


def text_front(model: nn.Module, token_ids: torch.Tensor, omega: int) -> torch.Tensor:
    """Hidden states after text block ω-1: token embedding -> (+CLS) -> pos-emb -> blocks[:ω]. [C, L, width]."""
    parts = _text(model)
    _check_block_index(omega, len(parts.transformer.resblocks), "text")
    cast = _cast_dtype(parts.transformer)
    x = parts.token_embedding(token_ids).to(cast)
    if parts.tower is None:  # CLIP: as CLIP.encode_text (full length unless the ids were trimmed)
        x = x + parts.positional_embedding[: token_ids.shape[1]].to(cast)
    else:  # TextTransformer._embeds
        seq_len = token_ids.shape[1]
        if parts.cls_emb is not None:
            cls = parts.cls_emb.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
            x = torch.cat([x, cls], dim=1)
            seq_len += 1
        x = x + parts.positional_embedding[:seq_len].to(cast)
    mask = _text_attn_mask(parts, token_ids, x.dtype)
    return _run_blocks(parts.transformer, x, 0, omega, mask)


def text_back(
    model: nn.Module, hidden: torch.Tensor, token_ids: torch.Tensor, omega: int, normalize: bool = False
) -> torch.Tensor:
    """Text features from hidden states after block ω-1: blocks[ω:] (same mask) -> ln_final -> pool -> proj.

    `token_ids` are the ids the hidden states came from (rows aligned); they drive the mask and EOT pooling.
    """
    from open_clip.transformer import text_global_pool

    parts = _text(model)
    depth = len(parts.transformer.resblocks)
    _check_block_index(omega, depth, "text")
    if hidden.shape[0] != token_ids.shape[0]:
        raise ValueError(
            f"text_back: {hidden.shape[0]} hidden sequences but {token_ids.shape[0]} token-id rows; "
            "slice both with the same class indices"
        )
    x = hidden.to(_cast_dtype(parts.transformer))
    mask = _text_attn_mask(parts, token_ids, x.dtype)
    x = _run_blocks(parts.transformer, x, omega, depth, mask)
    if parts.cls_emb is not None:  # CoCa-style appended CLS: last token, LN after pooling
        pooled = parts.ln_final(text_global_pool(x, pool_type="last"))
    else:
        x = parts.ln_final(x)
        pooled = text_global_pool(x, token_ids, pool_type=parts.pool_type, eos_token_id=parts.eos_id)
    proj = parts.text_projection
    if proj is not None:
        pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
    return F.normalize(pooled, dim=-1) if normalize else pooled


def _end_positions(parts: _TextParts, token_ids: torch.Tensor) -> torch.Tensor | None:
    """Per row, the position the pooling reads (the end-of-text token), or None if trimming is not exact."""
    if parts.attn_mask is None or parts.cls_emb is not None:  # bidirectional, or CLS appended after padding
        return None
    if parts.tower is not None and getattr(parts.tower, "use_pad_mask", False):
        return None
    if parts.pool_type == "argmax":  # the end token has the largest id in CLIP's vocabulary
        return token_ids.argmax(dim=-1)
    if parts.pool_type == "eos" and parts.eos_id is not None:
        is_end = token_ids == parts.eos_id
        if not bool(is_end.any(dim=-1).all()):
            return None
        return is_end.int().argmax(dim=-1)
    return None


def _trim_length(model: nn.Module, token_ids: torch.Tensor) -> int | None:
    """1 + the last end-of-text position over the rows, or None when trimming would not be exact."""
    try:
        parts = _text(model)
    except TowerSplitError:
        return None
    if token_ids.ndim != 2 or token_ids.shape[0] == 0:
        return None
    ends = _end_positions(parts, token_ids)
    return None if ends is None else int(ends.max()) + 1


def trim_text_tokens(model: nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """`token_ids[:, :L]` with L = 1 + the last end-of-text position over the rows, when that is exact.

    Exact means: causal attention (a position never sees later ones) and pooling at the end token, so the
    dropped padding columns cannot influence any row's feature. Otherwise `token_ids` is returned as is.
    Encode trimmed ids with `encode_text` (open_clip's `CLIP.encode_text` needs the full length).
    """
    length = _trim_length(model, token_ids)
    return token_ids[:, :length] if length is not None and length < token_ids.shape[1] else token_ids


def encode_text(model: nn.Module, token_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """`model.encode_text(token_ids)`, computed on trimmed ids (see `trim_text_tokens`) when that is exact.

    Accepts full-length or already trimmed ids."""
    length = _trim_length(model, token_ids)
    if length is None:
        return model.encode_text(token_ids, normalize=normalize)
    trimmed = token_ids[:, :length]
    return text_back(model, text_front(model, trimmed, 0), trimmed, 0, normalize=normalize)


# --------------------------------------------------------------------------------------------------------
# freezing (FT = start_block 0)
# --------------------------------------------------------------------------------------------------------


def _set(obj: nn.Module | torch.Tensor | None, flag: bool) -> None:
    if obj is None:
        return
    if isinstance(obj, nn.Parameter):
        obj.requires_grad_(flag)
    elif isinstance(obj, nn.Module):
        for p in obj.parameters():
            p.requires_grad_(flag)


def _unfreeze_vision(model: nn.Module, start_block: int) -> None:
    from open_clip.modified_resnet import ModifiedResNet

    visual = model.visual
    try:
        v = _vit(model)
    except TowerSplitError:
        if start_block != 0:
            raise
        if isinstance(visual, ModifiedResNet):  # stem frozen (the patch-embedding analogue), rest trained
            for name in ("layer1", "layer2", "layer3", "layer4", "attnpool"):
                _set(getattr(visual, name, None), True)
        else:  # timm or other towers: the whole tower is trained
            _set(visual, True)
        return
    depth = len(v.transformer.resblocks)
    _check_block_index(start_block, depth, "image")
    for block in v.transformer.resblocks[start_block:]:
        _set(block, True)
    _set(v.ln_post, True)
    _set(v.proj, True)
    _set(getattr(v, "attn_pool", None), True)  # pooling head (after the blocks), if the model has one
    _set(getattr(v, "attn_pool_contrastive", None), True)


def _unfreeze_text(model: nn.Module, start_block: int) -> None:
    try:
        parts = _text(model)
    except TowerSplitError:
        if start_block != 0:
            raise
        text = getattr(model, "text", None)
        if text is not None:  # e.g. HF text encoder: all but the input embeddings
            for name, p in text.named_parameters():
                p.requires_grad_("embeddings" not in name)
        return
    depth = len(parts.transformer.resblocks)
    _check_block_index(start_block, depth, "text")
    for block in parts.transformer.resblocks[start_block:]:
        _set(block, True)
    _set(parts.ln_final, True)
    _set(parts.text_projection, True)


def freeze_for_finetuning(
    model: nn.Module, start_block: int = 0, text_start_block: int | None = None
) -> dict[str, list[str]]:
    """Set requires_grad exactly as FT (start 0) / SkipT (start ω) train.

    Trainable: image blocks[start_block:], ln_post, proj (and an attentional pooler if the model has one);
    text blocks[text_start_block:], ln_final, text_projection. Frozen: everything else — conv1,
    class_embedding, both positional embeddings, ln_pre, token_embedding (and an appended text CLS),
    the blocks below the start, logit_scale (and logit_bias).
    `text_start_block` defaults to `start_block`. For towers that cannot be split only start 0 is allowed
    (ModifiedResNet: stem frozen, stages + attention pool trained; timm: whole tower; HF text: all but
    the embeddings). Returns {"trainable": [...], "frozen": [...]} parameter names.
    """
    if text_start_block is None:
        text_start_block = start_block
    for p in model.parameters():
        p.requires_grad_(False)
    _unfreeze_vision(model, start_block)
    _unfreeze_text(model, text_start_block)
    _set(getattr(model, "logit_scale", None), False)
    _set(getattr(model, "logit_bias", None), False)
    return trainable_parameter_names(model)


def trainable_parameter_names(model: nn.Module) -> dict[str, list[str]]:
    """{"trainable": names with requires_grad, "frozen": the others}."""
    out: dict[str, list[str]] = {"trainable": [], "frozen": []}
    for name, p in model.named_parameters():
        out["trainable" if p.requires_grad else "frozen"].append(name)
    return out
