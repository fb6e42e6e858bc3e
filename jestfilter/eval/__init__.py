"""Evaluation: zero-shot classification and image↔text retrieval on an eval directory."""

from jestfilter.eval.dataset import DEFAULT_TEMPLATES, EvalSet, load_eval_set
from jestfilter.eval.evaluate import evaluate
from jestfilter.eval.metrics import retrieval_class_r1, retrieval_r1, zeroshot_top1

__all__ = ["DEFAULT_TEMPLATES", "EvalSet", "evaluate", "load_eval_set", "retrieval_class_r1", "retrieval_r1",
           "zeroshot_top1"]
