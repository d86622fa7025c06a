"""Support tokens: the change-of-variables view of causal self-attention.

Modules: ``attention_map`` (the map e(u) and its d x d Jacobian blocks), ``logdet`` (the same
determinants in the small dimension via Sylvester's identity), ``moments`` (the fused training
fast path), ``smooth`` (the smooth margin / log-barrier), ``gpt`` (margins of a GPT's layers from
its hook points), ``prior`` and ``objective`` (MAP training), ``support`` (support tokens),
``process`` (sequence likelihoods and the marginalisation check), ``tracking`` and
``support_analysis`` (margins over training, support-token stability), ``view`` (what a person
looks at). The study's commands are ``cli`` (``probattn support-tokens``, ``eval-robust``), its
registered experiment ``experiment`` (rendered by ``report``), and the decisive two-stage study
``study`` / ``study_summary`` (``python -m probattn.studies.support_tokens.study``). See
docs/support-tokens.md.
"""

from .attention_map import CausalAttentionMap, apply_map, attention_weights, jacobian_blocks
from .gpt import gpt_margins
from .logdet import logdet_jacobian, small_jacobian
from .process import marginalisation_gap, sequence_logprob
from .smooth import DEFAULT_DELTA, smooth_logdet
from .support import support_tokens, text_margins

__all__ = ["CausalAttentionMap", "DEFAULT_DELTA", "apply_map", "attention_weights", "gpt_margins",
           "jacobian_blocks", "logdet_jacobian", "marginalisation_gap", "sequence_logprob",
           "small_jacobian", "smooth_logdet", "support_tokens", "text_margins"]
