"""`transmiter weights check [hydra overrides]`: are a run's pretrained weights here, or would it download?

transmiter weights check pair=vit_b16_to_vit_l14        # source and target of a pair; exit 1 if missing
transmiter weights check model=ViT-B-16                 # one model
transmiter weights check pair=rn50_to_vit_b16 --allow-download   # report only; exit 0 (open_clip downloads)

`make reproduce-b2n/b2b` call it before the sweep, so a machine without the weights (and without
internet) fails in seconds with the missing file and the fix, not inside the first job.
"""

from __future__ import annotations

import argparse


def check(overrides: list[str], allow_download: bool = False) -> int:
    from transmiter.config import compose_config
    from transmiter.config.instantiate import instantiate
    from transmiter.config.validate import uses_pair
    from transmiter.models.clip import weights_available

    cfg = compose_config(overrides)
    wants_pair = uses_pair(cfg) or any(o.split("=", 1)[0].lstrip("+") == "pair" for o in overrides)
    nodes = {"source": cfg.pair.source, "target": cfg.pair.target} if wants_pair else {"model": cfg.model}
    missing = []
    for role, node in nodes.items():
        spec = instantiate(node)
        ok, where = weights_available(spec)
        print(f"[{'ok' if ok else 'MISSING':>7}] {role}: {spec.arch} pretrained={spec.pretrained} ({where})")
        if not ok:
            missing.append(spec)
    if not missing:
        return 0
    if allow_download:
        print("missing weights will be downloaded by open_clip on first use (needs internet)")
        return 0
    print(
        'fix: on a machine with internet, load each model once (e.g. python -c "import open_clip; '
        "open_clip.create_model_and_transforms('ViT-B-16', pretrained='openai')\") so the weights land in "
        "the open_clip / Hugging Face cache, copy that cache here, or point model.pretrained (or "
        "pair.source/target.pretrained) at a local checkpoint file; DOWNLOAD=1 lets make download them."
    )
    return 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="transmiter weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="report whether the pretrained weights are available locally")
    p_check.add_argument("--allow-download", action="store_true", help="report only; always exit 0")
    args, overrides = parser.parse_known_args(argv)
    return check(overrides, allow_download=args.allow_download)
