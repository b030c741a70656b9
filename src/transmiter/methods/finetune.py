"""Full fine-tuning (FT) of CLIP, the Skip Tuning paper's baseline.

    from transmiter.methods.finetune import FinetuneCLIP
    module = FinetuneCLIP(model, tokenizer, base_names, "a bad photo of a {}, a type of pet.",
                          eval_classnames={"base": base_names, "novel": novel_names})
    trainer = L.Trainer(max_epochs=module.max_epochs, precision="bf16-mixed")   # fp32 on CPU
    trainer.fit(module, datamodule=dm)            # batches (image, label, index); batch size 4 is the DataModule's
    module.set_eval_order("base", "novel")        # test dataloader i is scored against class set i
    trainer.test(module, dataloaders=[base_test_loader, novel_test_loader])   # logs test/base/acc, test/novel/acc

    # the same checkpoint evaluates any class list (base2novel: fine-tune on base, test on base and novel):
    FinetuneCLIP.load_from_checkpoint(path, model=fresh_model, tokenizer=tok, weights_only=True,
                                      eval_classnames={"novel": novel_names})

Training: every block of both towers, vision ln_post + proj, text ln_final + text_projection
(`freeze_for_finetuning(model, 0)`); conv1, class/positional/token embeddings, ln_pre and logit_scale stay
frozen. Each step: cross-entropy over ALL training classes, logits = exp(logit_scale) · cos(img, txt), the
text tower run on one prompt per class (one per-dataset template; underscores in names become spaces).
SGD (momentum 0.9, weight decay 5e-4, lr 1e-5), cosine over `epochs` stepped per epoch, no warm-up.
Precision is the Trainer's business (fp32 on CPU, bf16-mixed on GPU); nothing here casts the model.

Evaluation (`validation_step` on the training classes, `test_step`, `predict_step`, `forward`): a plain
full forward from pixels against a text head built from the GIVEN class names at the start of every
evaluation epoch; accuracy through torchmetrics (correct DDP reduction). A non-finite training loss raises
`NonFiniteLossError` (naming the epoch and step) on every rank, so training stops and a ModelCheckpoint keeps
the last good checkpoint. Hyper-parameters are saved as plain Python values (weights-only loadable).
`ClipTuningModule` is the shared base of FinetuneCLIP and SkipTuningCLIP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from transmiter.distributed import exclude_from_ddp_sync
from transmiter.methods.schedules import build_epoch_scheduler
from transmiter.models.towers import encode_text, freeze_for_finetuning, trim_text_tokens
from transmiter.trainers import attached_trainer

__all__ = ["ClipTuningModule", "FinetuneCLIP", "prompt_texts"]

TEXT_CHUNK = 256  # prompts per text-encoder call when building evaluation heads


def prompt_texts(classnames: Sequence[str], template: str) -> list[str]:
    """One prompt per class: the template filled with the name, underscores replaced by spaces."""
    return [template.format(str(c).replace("_", " ").strip()) for c in classnames]


def _plain_names(names: Sequence[str], what: str) -> list[str]:
    out = [str(n) for n in names]  # also turns OmegaConf ListConfig into plain python
    if not out:
        raise ValueError(f"{what}: at least one class name is needed")
    return out


def _plain_eval_sets(eval_classnames, train_names: list[str]) -> dict[str, list[str]]:
    if eval_classnames is None:
        return {"train": list(train_names)}
    if isinstance(eval_classnames, Mapping):
        sets = {str(k): _plain_names(v, f"eval_classnames[{k!r}]") for k, v in eval_classnames.items()}
        if not sets:
            raise ValueError("eval_classnames: give at least one class set")
        return sets
    return {"eval": _plain_names(eval_classnames, "eval_classnames")}


def _check_template(template: str) -> str:
    template = str(template)
    if template.count("{}") != 1:
        raise ValueError(f"template={template!r} must contain exactly one '{{}}' for the class name")
    return template


class ClipTuningModule(L.LightningModule):
    """Shared base: prompts, evaluation heads, val/test/predict steps, the non-finite loss guard."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        classnames: Sequence[str],
        template: str,
        eval_classnames: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.classnames = _plain_names(classnames, "classnames")
        self.template = _check_template(template)
        self.eval_sets = _plain_eval_sets(eval_classnames, self.classnames)
        self.eval_order: list[str] = [next(iter(self.eval_sets))]
        self.test_metrics = nn.ModuleDict(
            {
                self._metric_key(name): MulticlassAccuracy(num_classes=max(2, len(names)), average="micro")
                for name, names in self.eval_sets.items()
            }
        )
        self.val_metric = MulticlassAccuracy(num_classes=max(2, len(self.classnames)), average="micro")
        self.register_buffer("train_token_ids", self.tokenize(self.classnames), persistent=False)
        self._heads: dict[str, torch.Tensor] = {}
        # identical on every rank by construction: DDP need not broadcast them before every forward
        exclude_from_ddp_sync(self, ["train_token_ids"])

    # -- prompts and heads -------------------------------------------------------------------------------
    @staticmethod
    def _metric_key(name: str) -> str:
        return "set_" + "".join(ch if ch.isalnum() else "_" for ch in name)

    def tokenize(self, classnames: Sequence[str]) -> torch.Tensor:
        """Prompt token ids, trimmed after the longest prompt's end token where that is exact."""
        return trim_text_tokens(self.model, self.tokenizer(prompt_texts(classnames, self.template)))

    @torch.no_grad()
    def text_features(self, classnames: Sequence[str]) -> torch.Tensor:
        """L2-normalised text features [C, D] of one prompt per class, with the current weights."""
        ids = self.tokenize(classnames).to(self.device)
        feats = [
            encode_text(self.model, ids[i : i + TEXT_CHUNK], normalize=True).float()
            for i in range(0, ids.shape[0], TEXT_CHUNK)
        ]
        return torch.cat(feats)

    def logit_scale_exp(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def logits_against(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """exp(logit_scale) · cos (+ the model's logit_bias if it has one): rows images, columns classes."""
        logits = self.logit_scale_exp() * image_features @ text_features.to(image_features.dtype).T
        bias = getattr(self.model, "logit_bias", None)
        return logits + bias if bias is not None else logits

    def set_eval_order(self, *names: str) -> None:
        """Which class set each test / predict dataloader (by index) is scored against."""
        unknown = [n for n in names if n not in self.eval_sets]
        if unknown or not names:
            raise ValueError(f"unknown evaluation class set(s) {unknown}; known: {list(self.eval_sets)}")
        self.eval_order = list(names)

    def _set_for(self, dataloader_idx: int) -> str:
        if dataloader_idx >= len(self.eval_order):
            raise ValueError(
                f"test/predict dataloader {dataloader_idx} has no class set: eval order is {self.eval_order}. "
                f"Call module.set_eval_order(...) with one of {list(self.eval_sets)} per dataloader."
            )
        return self.eval_order[dataloader_idx]

    def _build_heads(self, names: Sequence[str]) -> None:
        self._heads = {}
        for name in names:
            classes = self.classnames if name == "__train__" else self.eval_sets[name]
            self._heads[name] = self.text_features(classes)

    def forward(self, images: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        """Logits of a full forward against `classnames` (default: the first eval set); head built fresh."""
        names = list(classnames) if classnames is not None else self.eval_sets[self.eval_order[0]]
        head = self.text_features(names)
        return self.logits_against(self.model.encode_image(images, normalize=True), head)

    def _eval_logits(self, images: torch.Tensor, head_name: str) -> torch.Tensor:
        return self.logits_against(self.model.encode_image(images, normalize=True), self._heads[head_name])

    # -- validation / test / predict -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.train()  # Lightning keeps the mode it is given; a model loaded for inference may be in eval mode

    def on_train_epoch_start(self) -> None:
        self._heads = {}

    def on_validation_epoch_start(self) -> None:
        self._build_heads(["__train__"])

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        images, labels = batch[0], batch[1]
        logits = self._eval_logits(images, "__train__")
        self.val_metric.update(logits.float(), labels)
        self.log(
            "val/loss",
            F.cross_entropy(logits.float(), labels),
            on_epoch=True,
            sync_dist=True,
            add_dataloader_idx=False,
        )
        self.log("val/acc", self.val_metric, on_epoch=True, prog_bar=True, add_dataloader_idx=False)

    def on_test_epoch_start(self) -> None:
        self._build_heads(sorted(set(self.eval_order)))

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        images, labels = batch[0], batch[1]
        name = self._set_for(dataloader_idx)
        logits = self._eval_logits(images, name)
        metric = self.test_metrics[self._metric_key(name)]
        metric.update(logits.float(), labels)
        self.log(f"test/{name}/acc", metric, on_epoch=True, add_dataloader_idx=False)

    def on_predict_epoch_start(self) -> None:
        self._build_heads(sorted(set(self.eval_order)))

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        name = self._set_for(dataloader_idx)
        out = {"logits": self._eval_logits(images, name).float()}
        if isinstance(batch, list | tuple) and len(batch) > 1:
            out["labels"] = batch[1]
        if isinstance(batch, list | tuple) and len(batch) > 2:
            out["index"] = batch[2]
        return out

    # -- training helpers ----------------------------------------------------------------------------------
    def warn_epoch_mismatch(self, epochs: int) -> None:
        trainer = attached_trainer(self)
        if trainer is not None and trainer.max_epochs not in (None, -1, epochs):
            rank_zero_warn(
                f"{type(self).__name__}: the cosine schedule spans {epochs} epochs but Trainer(max_epochs="
                f"{trainer.max_epochs}); set max_epochs=module.max_epochs for the intended schedule."
            )

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


class FinetuneCLIP(ClipTuningModule):
    """The FT baseline: every block of both towers fine-tuned, CE over all training classes per step."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        classnames: Sequence[str],
        template: str = "a photo of a {}.",
        *,
        lr: float = 1e-5,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        epochs: int = 10,
        warmup_epochs: int = 0,
        warmup_lr: float | None = None,
        eval_classnames: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    ):
        super().__init__(model, tokenizer, classnames, template, eval_classnames)
        if epochs < 1:
            raise ValueError(f"epochs={epochs} must be >= 1")
        self.save_hyperparameters(
            {
                "classnames": self.classnames,
                "template": self.template,
                "lr": float(lr),
                "momentum": float(momentum),
                "weight_decay": float(weight_decay),
                "epochs": int(epochs),
                "warmup_epochs": int(warmup_epochs),
                "warmup_lr": None if warmup_lr is None else float(warmup_lr),
                "eval_classnames": {k: list(v) for k, v in self.eval_sets.items()},
            }
        )
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.epochs, self.warmup_epochs = int(epochs), int(warmup_epochs)
        self.warmup_lr = None if warmup_lr is None else float(warmup_lr)
        freeze_for_finetuning(self.model, 0)

    @property
    def max_epochs(self) -> int:
        return self.epochs

    def compute_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CE over all training classes of exp(logit_scale) · cos(image, prompt) — full forward of both towers."""
        img = self.model.encode_image(images, normalize=True)
        txt = encode_text(self.model, self.train_token_ids, normalize=True)
        logits = self.logits_against(img, txt)
        return F.cross_entropy(logits.float(), labels)

    def training_step(self, batch, batch_idx: int):
        images, labels = batch[0], batch[1]
        loss = self.compute_loss(images, labels)
        bs = labels.shape[0]
        # the same keys Lightning gives on_step+on_epoch; the epoch mean is reduced over DDP ranks
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=bs)
        return loss

    def configure_optimizers(self):
        self.warn_epoch_mismatch(self.epochs)
        params = self.trainable_parameters()
        optimizer = torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        scheduler = build_epoch_scheduler(optimizer, self.epochs, self.warmup_epochs, self.warmup_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
