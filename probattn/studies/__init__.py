"""The studies: one package per study, holding its science, its commands and its experiments.

``support_tokens`` (docs/support-tokens.md), ``gpam`` (docs/gpam.md) and ``phase``
(docs/phase-transitions.md). A study's ``cli.py`` holds its commands (registered in
``probattn.cli.EXTRA_COMMANDS``), its ``experiment.py`` the registered experiment's ``run``
(``probattn.experiments.EXPERIMENTS``) and its ``report.py`` that experiment's report sections.
General tools a study uses (attention mechanisms, robustness perturbations, diagnostics, the
translation toolkit) stay in the core packages, where any study can use them.
"""
