"""TransMiter core on logit tensors: auxiliary vocabulary, adapter, Procrustes transfer, artifacts, EFT.

Pipeline (all on cached logits over K = C task classes + K - C auxiliary names, same order everywhere):

    aux = select_auxiliary_names(classnames, K=1024, seed=seed)              # vocabulary.py
    fit: AdapterFitModule on (source zero-shot logits, teacher logits)      # methods/adapter_fit.py
    moved = transfer_adapter(fitted, source_logits, target_logits, lam=500)  # transfer.py (no backprop)
    figures = transfer_figures(fitted, source_logits, target_logits, Q)      # alignment.py (residuals, CKA)
    refined: TransMiterPlusModule(moved, class_ids=base_ids)                # methods/transmiter_plus.py
    save_adapter_artifact(...) / load_adapter_artifact(...)                  # artifact.py
    baselines: eft_logits, base_change, ensemble, self_ensemble              # logit_arithmetic.py
    costs: adapter_cost(adapter)                                             # adapter_cost.py

Decisions (details in each module's docstring):
* Standardisation uses sigma + eps in both directions (the reference omits eps on the way out), so a
  fresh adapter is exactly the identity.
* The orthogonal W uses PyTorch's parametrisation with the matrix-exp map even when proj_dim > K
  (PyTorch's default Householder map there is broken by weight decay). The adapter forward runs in
  fp32 with autocast disabled.
* Noise coin flip: once per GLOBAL batch by default (reference), drawn from a generator seeded
  identically on every rank; ``noise_mode="sample"`` flips per row. Own seeded generators only.
* lam is absolute by default (reference 500); ``scale_lam_by_n=True`` uses lam * N.
* TransMiter+ re-wraps W in the orthogonal parametrisation (starting exactly at W_new) by default;
  ``projection="free"`` trains it as a plain (tied) matrix.
* Transfer runs under inference mode; only the final copy into the returned module leaves it, so the
  result holds ordinary (non-inference) tensors with requires_grad=False.
"""

from transmiter.transfer.adapter import AdapterConfig, LogitAdapter, standardize_logits
from transmiter.transfer.adapter_cost import adapter_cost, adapter_flops_per_sample, adapter_param_count
from transmiter.transfer.alignment import linear_cka, transfer_figures
from transmiter.transfer.artifact import (
    AdapterArtifactMeta,
    ArtifactCorruptedError,
    ArtifactMismatchError,
    LoadedAdapter,
    load_adapter_artifact,
    save_adapter_artifact,
)
from transmiter.transfer.logit_arithmetic import base_change, eft_logits, ensemble, self_ensemble
from transmiter.transfer.procrustes import (
    CrossCovariance,
    accumulate_cross_covariance,
    regularized_procrustes,
)
from transmiter.transfer.transfer import TransferResult, transfer_adapter, transfer_adapter_with_details
from transmiter.transfer.vocabulary import AuxiliaryVocabularyError, load_vocabulary, select_auxiliary_names

__all__ = [
    "AdapterArtifactMeta",
    "AdapterConfig",
    "ArtifactCorruptedError",
    "ArtifactMismatchError",
    "AuxiliaryVocabularyError",
    "CrossCovariance",
    "LoadedAdapter",
    "LogitAdapter",
    "TransferResult",
    "accumulate_cross_covariance",
    "adapter_cost",
    "adapter_flops_per_sample",
    "adapter_param_count",
    "base_change",
    "eft_logits",
    "ensemble",
    "linear_cka",
    "load_adapter_artifact",
    "load_vocabulary",
    "regularized_procrustes",
    "save_adapter_artifact",
    "select_auxiliary_names",
    "self_ensemble",
    "standardize_logits",
    "transfer_adapter",
    "transfer_adapter_with_details",
    "transfer_figures",
]
