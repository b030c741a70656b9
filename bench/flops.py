"""Benchmark 2, inference overhead: adapter FLOPs per image ÷ target image-encoder FLOPs per image.

Both are counted, not estimated, with `torch.utils.flop_counter.FlopCounterMode` through the project's
own helpers: `transmiter.transfer.adapter_cost.adapter_flops_per_sample(LogitAdapter(1024))` and
`transmiter.models.encoder_flops.image_encoder_flops` on a random-init open_clip model built on the META device
(no weights are allocated, so ViT-L-14 costs nothing to build). For tm-tiny-ViT the count is also
taken on a CPU-built model, as a check that meta-device counting gives the same number.
"""

from __future__ import annotations

from bench.core import BenchOptions, BenchRecord, Goal, failed, quiet
from bench.fixtures import meta_model

TITLE = "Inference overhead"
GOAL_L14 = Goal("<=", 0.05, text="≤ 0.05 %")


def run(opts: BenchOptions, archs: tuple[str, ...] | None = None, K: int = 1024) -> list[BenchRecord]:
    from transmiter.transfer.adapter import LogitAdapter
    from transmiter.transfer.adapter_cost import adapter_cost

    if archs is None:
        archs = ("tm-tiny-ViT",) if opts.tiny else ("tm-tiny-ViT", "ViT-B-16", "ViT-L-14")
    try:
        cost = adapter_cost(LogitAdapter(K, seed=opts.seed, projection="frozen"))
    except Exception as err:
        return [failed("flops", "flops", TITLE, err)]
    d = K  # proj_dim = K
    analytic = 2 * (2 * K * d) + 2 * (2 * d * 4 * d)  # push + pull, fc1 + fc2 (mlp_ratio 4), 2 FLOPs/MAC
    records = []
    for arch in archs:
        name = f"flops[{arch}]"
        try:
            records.append(_one(arch, name, cost, analytic, K))
        except Exception as err:
            records.append(failed(name, "flops", TITLE, err))
    return records


def _one(arch: str, name: str, cost: dict, analytic: int, K: int) -> BenchRecord:
    from transmiter.models.encoder_flops import image_encoder_flops

    bundle = meta_model(arch)
    encoder = image_encoder_flops(bundle)
    params = sum(p.numel() for p in bundle.model.visual.parameters())
    adapter = int(cost["flops_per_sample"])
    fig = {
        "adapter FLOPs / image": adapter,
        "adapter FLOPs, analytic matmuls (check)": analytic,
        "adapter parameters": int(cost["params"]),
        "encoder FLOPs / image": encoder,
        "encoder parameters (image tower)": params,
        "image size (px)": bundle.image_size,
    }
    notes = [
        f"LogitAdapter(K={K}, proj_dim={K}, mlp_ratio=4, depth=1), frozen projection; {arch} random "
        "init on the meta device; FlopCounterMode counts matmuls/convs (2 FLOPs per multiply-add)."
    ]
    if arch == "tm-tiny-ViT":
        fig["CPU-built model gives the same count"] = _cpu_count(arch) == encoder
    goal = GOAL_L14 if arch == "ViT-L-14" else None
    if goal is None:
        notes.append("the goal is stated for ViT-L-14 only; this row is for information.")
    return BenchRecord(
        name=name,
        benchmark="flops",
        title=TITLE,
        ratio=100.0 * adapter / encoder,
        ratio_label="adapter / encoder FLOPs (%)",
        goal=goal,
        figures=fig,
        notes=notes,
    )


def _cpu_count(arch: str) -> int:
    from types import SimpleNamespace

    import open_clip

    from transmiter.models.encoder_flops import image_encoder_flops

    with quiet():
        model = open_clip.create_model(arch, pretrained=None)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    return image_encoder_flops(SimpleNamespace(model=model, identity=f"{arch}@cpu-check", image_size=size))
