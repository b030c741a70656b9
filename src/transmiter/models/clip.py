"""A thin wrapper over open_clip: any architecture, an open_clip pretrained tag or a local checkpoint.

    spec = ModelSpec(arch="ViT-B-16", pretrained="openai")          # tag: local cache, else download
    spec = ModelSpec(arch="ViT-B-16", pretrained="/ckpt/ft.safetensors")  # local file
    spec = ModelSpec(arch="ViT-B-16", pretrained=None, init_seed=0)  # random init (tests)
    spec.validate()                     # cheap checks, before any heavy work
    bundle = load_clip(spec, device="cpu")
    bundle.model, bundle.tokenizer, bundle.train_transform, bundle.test_transform, bundle.identity

`identity` names the architecture and a hash of the weights actually loaded; every cache keys on it,
so a fine-tuned checkpoint never reuses the zero-shot model's features.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transmiter.console import expected_random_init, quiet_library_notices

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


class ModelError(ValueError):
    """A model or checkpoint that cannot be loaded; the message names the key or path and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    """What to load. Mirrors a `conf/model/*.yaml` file."""

    arch: str
    pretrained: str | None = None
    precision: str = "fp32"
    name: str | None = None  # short label used in tables; defaults to arch[/pretrained]
    init_seed: int = 0  # seeds random init when `pretrained` is None
    force_quick_gelu: bool | None = None  # None: follow the pretrained tag's own setting
    extra: dict[str, Any] = field(default_factory=dict)  # extra kwargs for open_clip.create_model

    @property
    def label(self) -> str:
        """The name in rows and reports; a random-init model is labelled as such (models.labels)."""
        from transmiter.models.labels import model_label

        if self.name:
            return model_label(self.name, self.arch, self.pretrained)
        return (
            model_label(None, self.arch, None)
            if not self.pretrained
            else f"{self.arch}/{Path(str(self.pretrained)).name}"
        )

    @property
    def pretrained_is_path(self) -> bool:
        p = str(self.pretrained or "")
        return os.sep in p or p.endswith(CHECKPOINT_SUFFIXES) or p.startswith(".")

    def validate(self) -> None:
        """Fail fast (no weights touched) on an unknown architecture, tag or missing checkpoint file."""
        import open_clip

        register_project_models()
        known = open_clip.list_models()
        if self.arch not in known:
            close = difflib.get_close_matches(self.arch, known, n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ModelError(
                f"model.arch={self.arch!r} is not an open_clip architecture.{hint} "
                "See `open_clip.list_models()` for the full list, or register a JSON config with "
                "open_clip.add_model_config."
            )
        if self.precision not in ("fp32", "fp16", "bf16", "pure_fp16", "pure_bf16"):
            raise ModelError(
                f"model.precision={self.precision!r} is not supported; use fp32 (and let the trainer's "
                "precision=bf16-mixed handle mixed precision), bf16 or fp16"
            )
        if self.pretrained in (None, "", "none", "None"):
            return
        if self.pretrained_is_path:
            path = Path(str(self.pretrained)).expanduser()
            if not path.is_file() and "/world/" in str(path):
                # published as <cache_dir>/world/<world>/<scale>/<arch>.safetensors by `transmiter world build`
                world, scale = path.parent.parent.name, path.parent.name
                command = f"transmiter world build world={world}" + (
                    " --scale tiny" if scale == "tiny" else ""
                )
                raise ModelError(
                    f"model.pretrained={str(path)!r}: the weights of the synthetic world {world!r} ({scale} "
                    f"scale) are not built yet; run `{command}` (make demo does it for its world) with the "
                    "same paths.cache_dir"
                )
            if not path.is_file():
                raise ModelError(
                    f"model.pretrained={str(self.pretrained)!r}: checkpoint file not found. Give an existing "
                    f"file (.safetensors/.pt/.bin) or an open_clip tag for {self.arch}: "
                    f"{', '.join(open_clip.list_pretrained_tags_by_model(self.arch)) or '(none)'}"
                )
            if path.stat().st_size == 0:
                raise ModelError(f"model.pretrained={str(path)!r} is an empty file; re-create the checkpoint")
            return
        tags = open_clip.list_pretrained_tags_by_model(self.arch)
        if self.pretrained not in tags:
            raise ModelError(
                f"model.pretrained={self.pretrained!r} is not an open_clip tag of {self.arch}. "
                f"Known tags: {', '.join(tags) or '(none)'}; or pass a local checkpoint path."
            )


def weights_available(spec: ModelSpec) -> tuple[bool, str]:
    """Whether `spec`'s weights can be loaded without a download: (ok, what/where)."""
    import open_clip

    if spec.pretrained in (None, "", "none", "None"):
        return True, "random init"
    if spec.pretrained_is_path:
        path = Path(str(spec.pretrained)).expanduser()
        return path.is_file(), str(path)
    cfg = open_clip.get_pretrained_cfg(spec.arch, str(spec.pretrained)) or {}
    if "file" in cfg:
        return Path(cfg["file"]).is_file(), cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        model_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(model_id, name)
            if isinstance(found, str):
                return True, found
        return False, f"hf-hub:{model_id} (not in the local Hugging Face cache)"
    url = cfg.get("url", "")
    cached = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "clip" / Path(url).name
    return cached.is_file(), str(cached)


@dataclass
class ClipBundle:
    """Everything a method needs from a CLIP model."""

    spec: ModelSpec
    model: torch.nn.Module
    tokenizer: Any
    train_transform: Any
    test_transform: Any
    identity: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: RandomResizedCrop area range of `train_transform` (part of every train-view feature identity)
    train_crop_scale: tuple[float, float] = (0.08, 1.0)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().item())

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") else -1


_PROJECT_MODELS_REGISTERED = False


def register_project_models() -> None:
    """Register the project's own open_clip configs: `tm-tiny-ViT` (random-init smoke tests) and the
    synthetic world's weak and strong models."""
    global _PROJECT_MODELS_REGISTERED
    if _PROJECT_MODELS_REGISTERED:
        return
    import open_clip

    open_clip.add_model_config(Path(__file__).parent / "model_configs")
    try:
        from transmiter.synthetic.architectures import register_synthetic_models
    except ImportError:  # synthetic world not built into this installation
        pass
    else:
        register_synthetic_models()
    _PROJECT_MODELS_REGISTERED = True


def resolve_quick_gelu(spec: ModelSpec) -> bool:
    """Whether `spec` builds its towers with QuickGELU: `force_quick_gelu` when set, else what its open_clip
    pretrained tag says (OpenAI weights: True). A checkpoint file says nothing, so a model tuned from
    QuickGELU weights must carry `force_quick_gelu=True` to be rebuilt as the same network."""
    if spec.force_quick_gelu is not None:
        return bool(spec.force_quick_gelu)
    if spec.pretrained in (None, "", "none", "None") or spec.pretrained_is_path:
        return False
    import open_clip

    return bool(open_clip.get_pretrained_cfg(spec.arch, str(spec.pretrained)).get("quick_gelu", False))


def load_clip(
    spec: ModelSpec,
    device: str | torch.device = "cpu",
    train_crop_scale: tuple[float, float] = (0.08, 1.0),
) -> ClipBundle:
    """Create the open_clip model, tokenizer and the protocol's train/test transforms;
    `train_crop_scale` is the training crop's area range (a dataset may narrow the protocol's (0.08, 1))."""
    import open_clip

    from transmiter.data.transforms import build_transforms

    spec.validate()
    quiet_library_notices()
    kwargs: dict[str, Any] = dict(spec.extra)
    pretrained = None if spec.pretrained in (None, "", "none", "None") else str(spec.pretrained)
    quick_gelu = resolve_quick_gelu(spec)
    if quick_gelu:
        kwargs["force_quick_gelu"] = True
    if pretrained and spec.pretrained_is_path:
        pretrained = str(Path(pretrained).expanduser())
    try:
        with torch.random.fork_rng(
            devices=[]
        ):  # a deterministic random init that leaves the caller's RNG alone
            torch.manual_seed(spec.init_seed)
            with expected_random_init() if pretrained is None else contextlib.nullcontext():
                model = open_clip.create_model(
                    spec.arch, pretrained=pretrained, precision=spec.precision, device=device, **kwargs
                )
    except Exception as err:  # truncated or foreign checkpoint files raise many different types
        if pretrained and not spec.pretrained_is_path and isinstance(err, RuntimeError):
            raise ModelError(
                f"could not load model.arch={spec.arch!r} with model.pretrained={spec.pretrained!r}: {err}. "
                "The tag's weights must be in the local open_clip/HF cache or downloadable (online); or pass "
                "a local checkpoint path."
            ) from err
        raise ModelError(
            f"model.pretrained={spec.pretrained!r} could not be read as a {spec.arch} checkpoint "
            f"({checkpoint_problem(err)}); re-create or re-download it, as .safetensors or as a torch file "
            "holding tensors only"
        ) from err
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.arch)
    visual = model.visual
    image_size = visual.image_size
    image_size = int(image_size[0] if isinstance(image_size, tuple | list) else image_size)
    mean = tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    crop = (float(train_crop_scale[0]), float(train_crop_scale[1]))
    train_tf, test_tf = build_transforms(image_size=image_size, mean=mean, std=std, rrc_scale=crop)
    identity = model_identity(spec.arch, model)
    if quick_gelu and spec.pretrained_is_path:
        # The weights hash cannot see the activation, and a checkpoint file (a fine-tuned OpenAI model, say)
        # runs as a different network under GELU: name it, so no cache filled under the other activation is
        # reused. Tag-loaded models keep the plain identity (their tag fixes the activation), and with it
        # every existing cache and stage keyed on them.
        identity += "+quickgelu"
    return ClipBundle(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        train_transform=train_tf,
        test_transform=test_tf,
        identity=identity,
        image_size=image_size,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        train_crop_scale=crop,
    )


def checkpoint_problem(err: BaseException) -> str:
    """Why a checkpoint file could not be read, in one line. torch's refusal of pickled objects suggests
    `weights_only=False`, which would run whatever code the file holds: never pass that on."""
    import pickle

    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text:
        return (
            "not a weights-only torch checkpoint: the file is not a torch checkpoint at all, or it holds "
            "pickled Python objects besides tensors, which transmiter never loads because unpickling can run code"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def weights_hash(model: torch.nn.Module) -> str:
    """BLAKE2b over every parameter and buffer (names, dtypes, shapes, bytes), in state-dict order."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_identity(arch: str, model: torch.nn.Module) -> str:
    """`<arch>@<weights hash>`: the key every feature and text-head cache uses."""
    return f"{arch}@{weights_hash(model)}"
