"""Retrieval metrics, forgetting measures across episodes, and run-comparison reports: `metrics` (MRR@k / nDCG@k /
Recall@k by ir-measures or Pyserini's trec_eval; DPR top-k accuracy), `forgetting` (pure functions on score tables:
learned / forgotten negatives, overlap, sources), `verdict` (which episode to keep, and how it compares with the start
and the baselines), `analysis` (reads an episode run folder and applies the above) and `report` (markdown, JSON, plots).
"""
from .forgetting import consecutive_overlap, forgetting_by_episode, learned_pairs, source_contribution
from .metrics import evaluate_collection, evaluate_run, evaluate_with_trec_eval, qa_accuracy

__all__ = [
    "consecutive_overlap",
    "evaluate_collection",
    "evaluate_run",
    "evaluate_with_trec_eval",
    "forgetting_by_episode",
    "learned_pairs",
    "qa_accuracy",
    "source_contribution",
]
