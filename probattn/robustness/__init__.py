"""Robustness to input perturbations: embedding noise, token substitution, deletion, swap."""

from .evaluate import RobustnessConfig, evaluate_robustness, format_table
from .perturb import TOKEN_KINDS, delete, gaussian_embedding_noise, substitute, swap

__all__ = ["RobustnessConfig", "TOKEN_KINDS", "delete", "evaluate_robustness", "format_table",
           "gaussian_embedding_noise", "substitute", "swap"]
