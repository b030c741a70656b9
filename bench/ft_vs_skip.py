"""FT vs Skip Tuning cost per training step, both methods' real training code on a toy task.

    from bench.ft_vs_skip import compare_ft_vs_skip
    from tests.toys import register_tiny_config
    name = register_tiny_config()                    # "transmiter-tiny-vit": a 4-block ViT, 32 px, patch 8
    report = compare_ft_vs_skip(name, num_classes=10, image_size=32, steps=20, batch=4)
    report["ratio"]   # {"time_per_step": FT / SkipT, "peak_mem": FT / SkipT, ...}

Both methods run their real training code (`FinetuneCLIP.compute_loss`, `SkipTuningCLIP.compute_loss`) with
a plain SGD step on random-init weights (`open_clip.create_model(name, pretrained=None)`), `batch` images of
`num_classes` solid-colour classes. Measured per method:
* time_per_step_s: mean wall time of `steps` optimiser steps after one warm-up step (CUDA synchronised).
* peak_mem_mb: memory added by training on top of the weights and caches, measured from just before the
  first (warm-up) step to the end: gradients, optimiser state and the activation peak. On CUDA,
  torch.cuda.max_memory_allocated minus the memory held before; on CPU, the rise of the process's peak RSS
  (VmHWM reset through /proc/self/clear_refs, else 1 ms sampling), each method in a fresh spawned process
  when `isolate=True` (the default) so allocator reuse does not hide the second method's peak. Small models
  give CPU numbers dominated by allocator granularity; saved_activations_mb is the steadier signal.
* saved_activations_mb: bytes autograd keeps for backward in one step (saved-tensor hooks, deterministic).
* trainable_params: parameters with requires_grad.
* text_tokens (FT): the prompt length FT's text tower runs at: trimmed after the end token ("ft"), or the
  tokenizer's full length as in the reference ("ft_reference": open_clip's encode_text on 77-token prompts).
* SkipT only: extract_s_per_image (the per-epoch front pass, amortised over images) and cache_mb (the
  epoch's fp16 image-token cache, held in CPU memory) — the costs moved out of the step.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import threading
import time

import torch

from tests.toys import SolidColourDataset, register_tiny_config
from transmiter.console import expected_random_init

__all__ = ["compare_ft_vs_skip"]


# ----------------------------------------------------------------------------------------------------------
# measurement helpers
# ----------------------------------------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _CpuPeak:
    """Peak RSS rise over a region: VmHWM reset when the kernel allows it, else 1 ms sampling."""

    def __enter__(self):
        self.base = _status_kb("VmRSS") or 0
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.reset = True
        except OSError:
            self._stop = threading.Event()
            self._peak = self.base

            def poll():
                while not self._stop.is_set():
                    self._peak = max(self._peak, _status_kb("VmRSS") or 0)
                    time.sleep(0.001)

            self._thread = threading.Thread(target=poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.reset:
            peak = _status_kb("VmHWM") or self.base
        else:
            self._stop.set()
            self._thread.join()
            peak = self._peak
        self.mb = max(0, peak - self.base) / 1024.0
        return False


def _saved_bytes(fn) -> int:
    """Bytes of distinct storages autograd saves for backward while running fn()."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    loss.backward()
    return sum(seen.values())


def _run_variant(
    kind: str,
    model_name: str,
    num_classes: int,
    image_size: int,
    steps: int,
    batch: int,
    device: str,
    omega: int | None,
    seed: int,
    precision: str = "32-true",
) -> dict:
    import contextlib

    import open_clip
    import torch.nn.functional as F

    from transmiter.methods.finetune import FinetuneCLIP, prompt_texts
    from transmiter.methods.skip_tuning import SkipTuningCLIP

    torch.manual_seed(seed)
    with expected_random_init():
        model = open_clip.create_model(model_name, pretrained=None, force_image_size=image_size)
    tokenizer = open_clip.get_tokenizer(model_name)
    per_class = max(batch, math.ceil((steps + 1) * batch / num_classes))
    data = SolidColourDataset(num_classes, per_class, image_size, augment=True, seed=seed)
    names = data.classnames
    dev = torch.device(device)
    out: dict = {}
    if precision not in ("32-true", "bf16-mixed"):
        raise ValueError(f"precision={precision!r}: use 32-true or bf16-mixed")

    def autocast():
        """What the trainer's precision does around every forward: bf16 autocast, fp32 weights."""
        if precision == "bf16-mixed":
            return torch.autocast(dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    if kind in ("ft", "ft_reference"):
        module = FinetuneCLIP(model, tokenizer, names).to(dev)
        gen = torch.Generator().manual_seed(seed)

        def make_batch():
            idx = torch.randint(len(data), (batch,), generator=gen).tolist()
            images = torch.stack([data[i][0] for i in idx]).to(dev)
            labels = torch.tensor([data.labels[i] for i in idx], device=dev)
            return images, labels

        batches = [make_batch() for _ in range(steps + 1)]
        out["text_tokens"] = int(module.train_token_ids.shape[1])

        def loss_of(b):
            return module.compute_loss(*b)

        if kind == "ft_reference":
            # FT as the reference runs it: every prompt at the tokenizer's full length (77 for CLIP) through
            # open_clip's encode_text; the project's FT drops the padding after the end token (exact)
            full_ids = tokenizer(prompt_texts(names, module.template)).to(dev)
            out["text_tokens"] = int(full_ids.shape[1])

            def loss_of(b):
                img = module.model.encode_image(b[0], normalize=True)
                txt = module.model.encode_text(full_ids, normalize=True)
                return F.cross_entropy(module.logits_against(img, txt).float(), b[1])
    else:
        module = SkipTuningCLIP(
            model,
            tokenizer,
            names,
            train_dataset=data,
            omega=omega,
            batch_size=batch,
            class_homogeneous=True,
            warmup_epochs=0,
            warmup_lr=None,
            extraction_batch_size=64,
        ).to(dev)
        module.setup_training_data()
        module.prepare_static()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast():
            module.prepare_epoch(0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out["extract_s_per_image"] = (time.perf_counter() - t0) / max(1, len(module.batch_sampler) * batch)
        plan = module.batch_sampler.rank_batches(0)
        plan = [plan[i % len(plan)] for i in range(steps + 1)]
        labels_all = module.train_labels_tensor
        batches = []
        for b in plan:
            idx = torch.as_tensor(b)
            batches.append((module.image_cache.read(idx).to(dev), labels_all[idx].to(dev)))
        out["cache_mb"] = module.image_cache.nbytes / 2**20
        out["omega"], out["text_omega"] = int(module.omega), int(module.text_omega)
        out["text_tokens"] = int(module.train_token_ids.shape[1])

        def loss_of(b):
            return module.compute_loss(*b)[0]

    module.train()
    params = [p for p in module.model.parameters() if p.requires_grad]
    out["trainable_params"] = int(sum(p.numel() for p in params))
    opt = torch.optim.SGD(params, lr=1e-5, momentum=0.9, weight_decay=5e-4)

    def step(b):
        with autocast():
            loss = loss_of(b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def run_all():
        step(batches[0])  # warm-up (allocates gradients and momentum buffers), not timed
        with autocast():
            out["saved_activations_mb"] = _saved_bytes(lambda: loss_of(batches[0])) / 2**20
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches[1:]:
            step(b)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    # memory: from just before the first step (weights and caches already in place) to the end, so gradients,
    # optimiser state and the activation peak all count
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        elapsed = run_all()
        out["peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        with _CpuPeak() as peak:
            elapsed = run_all()
        out["peak_mem_mb"] = peak.mb
    out["time_per_step_s"] = elapsed / steps
    return out


def _child(queue, args):
    try:
        torch.set_num_threads(args.pop("threads"))
        register_tiny_config(args["model_name"], args.pop("model_config"))
        queue.put(("ok", _run_variant(**args)))
    except Exception as exc:  # reported back to the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _wait_for_child(queue, proc, kind: str) -> tuple[str, object]:
    """The child's (status, payload); a child killed before it could answer (e.g. out of memory) is an
    error, not a parent blocked forever on the queue."""
    import queue as queue_mod

    while True:
        try:
            return queue.get(timeout=5.0)
        except queue_mod.Empty:
            if not proc.is_alive():
                raise RuntimeError(
                    f"benchmark of {kind} died in its subprocess without a result (exit code {proc.exitcode}; "
                    "a negative code is the signal, e.g. -9 = killed, often for memory)"
                ) from None


def compare_ft_vs_skip(
    model_name: str,
    num_classes: int,
    image_size: int,
    steps: int,
    batch: int,
    *,
    device: str | None = None,
    omega: int | None = None,
    seed: int = 0,
    isolate: bool = True,
    kinds: tuple[str, ...] = ("ft", "skip"),
    precision: str = "32-true",
) -> dict:
    """Time per step and peak memory of FT vs Skip Tuning side by side (see the module docstring); with
    "ft_reference" in `kinds`, also FT with full-length prompts, as the reference runs it. precision:
    "32-true", or "bf16-mixed" (bf16 autocast around every forward, fp32 weights, as the `gpu` trainer).

    Returns {"ft": {...}, "skip": {...}, ["ft_reference": {...},] "ratio": {metric: ft / skip}, "setup": {...}}.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = {}
    for kind in kinds:
        args = dict(
            kind=kind,
            model_name=model_name,
            num_classes=num_classes,
            image_size=image_size,
            steps=steps,
            batch=batch,
            device=device,
            omega=omega,
            seed=seed,
            precision=precision,
        )
        if isolate:
            import open_clip

            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            # the spawned child registers the (possibly project-local) architecture again
            child_args = dict(
                args, threads=torch.get_num_threads(), model_config=open_clip.get_model_config(model_name)
            )
            proc = ctx.Process(target=_child, args=(queue, child_args))
            proc.start()
            status, payload = _wait_for_child(queue, proc, kind)
            proc.join()
            if status != "ok":
                raise RuntimeError(f"benchmark of {kind} failed in its subprocess: {payload}")
            results[kind] = payload
        else:
            results[kind] = _run_variant(**args)
    ratio = {}
    for key in ("time_per_step_s", "peak_mem_mb", "saved_activations_mb", "trainable_params"):
        ft, sk = results["ft"].get(key), results["skip"].get(key)
        ratio[key] = (ft / sk) if ft is not None and sk else float("nan")
    results["ratio"] = ratio
    results["setup"] = {
        "model": model_name,
        "num_classes": num_classes,
        "image_size": image_size,
        "steps": steps,
        "batch": batch,
        "device": device,
        "isolated": isolate,
        "precision": precision,
    }
    return results
