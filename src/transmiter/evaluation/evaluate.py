"""Scoring cached inputs (image features or logits) under a Lightning Trainer, DDP included.

    head = LinearHead(text_head)                       # logits = features @ text_headᵀ
    acc = evaluate_scores(features, labels, head, make_trainer)      # micro top-1 in %

Every rank scores a disjoint, unpadded shard (`UnrepeatedDistributedSampler`) and torchmetrics sums
correct/total across ranks, so N processes give exactly the number one process gives.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from transmiter.trainers import attached_trainer


class LinearHead(nn.Module):
    """Zero-shot classifier: logits = features @ headᵀ (the head already carries the logit scale)."""

    def __init__(self, head: torch.Tensor, mask: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("head", head.float())
        # Optional additive mask (0 / -inf) over classes, for protocols that evaluate a subset of a
        # joint label space.
        self.register_buffer("mask", None if mask is None else mask.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = features.float() @ self.head.T
        return logits if self.mask is None else logits + self.mask


class ScoreEvaluator(L.LightningModule):
    """Runs `scorer` over (inputs, labels) in `trainer.test` and reports micro top-1 accuracy."""

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        scorer: nn.Module,
        num_classes: int,
        batch_size: int = 1024,
    ):
        super().__init__()
        self.inputs, self.labels = inputs, labels.long()
        self.scorer = scorer
        self.batch_size = batch_size
        self.accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def test_dataloader(self) -> DataLoader:
        from transmiter.data.samplers import UnrepeatedDistributedSampler

        dataset = TensorDataset(self.inputs, self.labels)
        trainer = attached_trainer(self)
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler)

    def test_step(self, batch, batch_idx):
        inputs, labels = batch
        with torch.no_grad():
            logits = self.scorer(inputs)
        self.accuracy.update(logits, labels)
        self.log("test/acc", self.accuracy, on_step=False, on_epoch=True)


def evaluate_scores(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    scorer: nn.Module,
    make_trainer: Callable[[], L.Trainer],
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy (%) of `scorer(inputs)` against `labels`."""
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if len(labels) else 1
    num_classes = max(num_classes, int(labels.max()) + 1 if len(labels) else 1)
    module = ScoreEvaluator(inputs, labels, scorer, num_classes)
    trainer = make_trainer()
    results = trainer.test(module, verbose=False)
    return 100.0 * float(results[0]["test/acc"])
