"""Evaluation: metrics (accuracy, harmonic mean) and DDP-correct scoring of cached inputs.

    from transmiter.evaluation.evaluate import LinearHead, evaluate_scores
    acc = evaluate_scores(features, labels, LinearHead(text_head), make_trainer)   # % top-1
    from transmiter.evaluation.metrics import harmonic_mean
    harmonic_mean(base, novel)

Modules: ``metrics`` (pure Python: the report reads it without torch), ``evaluate`` (Lightning scoring),
``clip_eval`` (zero-shot evaluation of a CLIP model through the feature cache).
"""
