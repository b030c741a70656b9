"""Evaluation: metrics (accuracy, harmonic mean) and DDP-correct scoring of cached inputs.

acc = evaluate_scores(features, labels, LinearHead(text_head), make_trainer)   # % top-1
harmonic_mean(base, novel)
"""

from transmiter.evaluation.evaluate import LinearHead, ScoreEvaluator, evaluate_scores
from transmiter.evaluation.metrics import harmonic_mean, summarize_groups

__all__ = ["LinearHead", "ScoreEvaluator", "evaluate_scores", "harmonic_mean", "summarize_groups"]
