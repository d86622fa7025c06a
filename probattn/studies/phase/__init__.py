"""Phase transitions in attention: the copy task, the closed-form posterior over the attention
scores, samplers, order-parameter theory and MAP training (docs/phase-transitions.md).

Modules are small and imported on demand::

    from probattn.studies.phase.task import make_copy_task
    from probattn.studies.phase.posterior import CopyPosterior
    from probattn.studies.phase.theory import TheoryConfig, find_transition

The study's command is ``cli`` (``probattn phase-diagram``); its registered experiment is
``experiment`` (``probattn experiment phase``: ``compute`` measures, ``report`` and ``findings``
render).
"""
