"""Diagnostics of attention stacks: rank collapse, token similarity, query-gradient norms,
the faithfulness test of daGPAM and signed attention maps (docs/gpam.md).

>>> from probattn.diagnostics import rank_collapse, residual_profile, random_attention_stack
"""

from .callback import RankCollapseCallback
from .faithfulness import faithfulness_sweep
from .rank import layer_summary, rank_collapse, token_cosine_similarity, token_rms
from .residual import residual_profile, residual_states
from .stacks import gaussian_tokens, model_attention_stack, random_attention_stack, stack_profile, stack_states

__all__ = ["RankCollapseCallback", "faithfulness_sweep", "gaussian_tokens", "layer_summary", "model_attention_stack",
           "random_attention_stack", "rank_collapse", "residual_profile", "residual_states", "stack_profile",
           "stack_states", "token_cosine_similarity", "token_rms"]
