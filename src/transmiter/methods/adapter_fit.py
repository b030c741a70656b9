"""TransMiter phase 1, knowledge extraction: fit a :class:`LogitAdapter` on cached logits.

Inputs per row: the SOURCE model's zero-shot logits over the K names (C task classes + K-C aux) and
the fine-tuned source model's (teacher) logits over the C task classes. No labels, ever.

    loss = s * KL( softmax(teacher / T_t) || softmax(adapter(x)[:, :C] / tau) ),  s = tau^2 * T_t
    T_t = 0.5, tau = 1 (s = 0.5), KLDivLoss "batchmean" semantics, raw (un-standardised) logits.

Defaults follow the reference configuration: AdamW lr 1e-3, weight decay 1e-3 on all parameters,
global batch 128 (see ``LogitPairDataModule``), 10 epochs (set on the Trainer), per-step linear
warm-up over 5 % of the steps then cosine to 0; input noise std = 0.5 x the row's logit std with
probability 0.5.

Noise coin flip (``noise_mode``): default **"batch"**, as in the reference - one flip per global
optimiser step, drawn from a generator seeded identically on every DDP rank, so 1 GPU and N GPUs
see the same on/off sequence. ``"sample"`` flips per row instead (lower-variance; the expected
fraction of noisy rows is the same). Either way all draws come from this module's own seeded
generators (never global numpy / torch RNG), and their states are saved in checkpoints.

DDP: the loss is a per-process batch mean and DDP averages gradients, which equals the global
batch mean for equal per-process batches; epoch-level metrics are logged with ``sync_dist=True``.

    from transmiter.methods.adapter_fit import AdapterFitModule
    from transmiter.transfer.logit_data import LogitPairDataModule
    module = AdapterFitModule(K=1024, seed=cfg.seed)
    trainer = L.Trainer(max_epochs=10, ...)
    trainer.fit(module, datamodule=LogitPairDataModule(train=(zs_logits, teacher_logits), batch_size=128))
    adapter = module.fitted_adapter()           # frozen copy, ready for artifact / transfer
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor

from transmiter.transfer.adapter import LogitAdapter
from transmiter.transfer.logit_data import LogitPairDataModule, LogitPairDataset
from transmiter.transfer.training import LogitNoise, WarmupCosine, distillation_kl

__all__ = ["DEFAULT_EPOCHS", "AdapterFitModule", "LogitPairDataModule", "LogitPairDataset"]

DEFAULT_EPOCHS = 10  # reference schedule; epochs live on the Trainer (max_epochs)


class AdapterFitModule(L.LightningModule):
    """Knowledge-extraction module: the adapter learns to map source zero-shot logits to the teacher."""

    def __init__(
        self,
        adapter: LogitAdapter | None = None,
        *,
        K: int | None = None,
        adapter_kwargs: Mapping[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        warmup_ratio: float = 0.05,
        teacher_temperature: float = 0.5,
        temperature: float = 1.0,
        loss_coef: float = 1.0,
        noise_alpha: float = 0.5,
        noise_p: float = 0.5,
        noise_mode: str = "batch",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["adapter"])
        if adapter is None:
            if K is None:
                raise ValueError("AdapterFitModule needs either an adapter or K (total logit dimension)")
            kwargs = dict(adapter_kwargs or {})
            kwargs.setdefault("seed", seed)
            kwargs.setdefault("projection", "orthogonal")
            adapter = LogitAdapter(K, **kwargs)
        self.adapter = adapter
        self.noise = LogitNoise(noise_alpha, noise_p, noise_mode, seed=seed)

    @classmethod
    def from_settings(cls, K: int, settings: Mapping[str, Any], *, seed: int) -> AdapterFitModule:
        """The module for a `method.fit` block (the study and `transmiter.fit_adapter` both build it here);
        `epochs` and `batch_size` belong to the Trainer and the DataModule and are not read."""
        s = settings
        return cls(
            K=K,
            adapter_kwargs={
                "mlp_ratio": s["mlp_ratio"],
                "depth": s["depth"],
                "proj_dim": s["proj_dim"],  # None = K (the reference's square W)
                "dropout": s["dropout"],
                "seed": seed,
            },
            lr=s["lr"],
            weight_decay=s["weight_decay"],
            warmup_ratio=s["warmup_ratio"],
            teacher_temperature=s["teacher_temperature"],
            temperature=s["temperature"],
            noise_alpha=s["noise_alpha"],
            noise_p=s["noise_p"],
            noise_mode=s["noise_mode"],
            seed=seed,
        )

    # ---------------------------------------------------------------- core
    def forward(self, logits: Tensor) -> Tensor:
        return self.adapter(logits)

    def _loss(self, out: Tensor, teacher: Tensor) -> Tensor:
        hp = self.hparams
        return distillation_kl(
            out,
            teacher,
            teacher_temperature=hp.teacher_temperature,
            temperature=hp.temperature,
            coef=hp.loss_coef,
        )

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, augment: bool) -> Tensor:
        inputs, teacher = batch
        if teacher.ndim != 2 or teacher.shape[1] > inputs.shape[1]:
            raise ValueError(
                f"teacher logits must be [B, C] with C <= K; got teacher {tuple(teacher.shape)} and "
                f"inputs {tuple(inputs.shape)}"
            )
        C = teacher.shape[1]
        x = self.noise(inputs) if augment else inputs
        out = self.adapter(x)[:, :C]
        loss = self._loss(out, teacher)
        agree = (out.argmax(dim=-1) == teacher.argmax(dim=-1)).float().mean()
        B = inputs.shape[0]
        self.log(
            f"{stage}/kl",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=B,
            prog_bar=stage == "train",
        )
        self.log(f"{stage}/agreement", agree, on_step=False, on_epoch=True, sync_dist=True, batch_size=B)
        return loss

    def on_fit_start(self) -> None:
        self.noise.set_rank(self.global_rank)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train", augment=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val", augment=False)

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        opt = torch.optim.AdamW(self.adapter.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(total, hp.warmup_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # ---------------------------------------------------------------- checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["transmiter_noise_state"] = self.noise.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.noise.load_state_dict(checkpoint.get("transmiter_noise_state", {}))

    # ---------------------------------------------------------------- results
    def fitted_adapter(self, projection: str = "frozen") -> LogitAdapter:
        """An independent copy of the fitted adapter (frozen projection, no grads, eval mode)."""
        adapter = self.adapter.clone(projection=projection).eval()
        if projection == "frozen":
            adapter.requires_grad_(False)
        return adapter
