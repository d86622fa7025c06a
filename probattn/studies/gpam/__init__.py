"""Dual attention with negative weights (daGPAM): the language-model, deep-LM and translation
experiments (docs/gpam.md).

The mechanism itself (``probattn.attention.gpam``) and the rank-collapse diagnostics
(``probattn.diagnostics``) are core tools; this package holds only the study's experiments::

    experiment.py       probattn experiment gpam        (report.py renders it)
    deep_experiment.py  probattn experiment gpam-deep   (deep_report.py)
    deep_table1.py      probattn experiment gpam-deep --scale table1: daGPAM against its rivals
                        (deep_table1_report.py)
    nmt_experiment.py   probattn experiment nmt
"""
