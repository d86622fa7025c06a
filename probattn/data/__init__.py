"""Corpora, tokenizers and batching."""

from .batching import RandomWindows, check_long_enough, fixed_eval_batches, sequential_windows
from .corpora import (
    NAMED_CORPORA,
    Corpus,
    data_search_path,
    default_text,
    load_corpus,
    read_text_file,
)
from .tokenizers import ByteTokenizer, CharTokenizer, Tokenizer, build_tokenizer, tokenizer_from_dict

__all__ = [
    "ByteTokenizer",
    "CharTokenizer",
    "Corpus",
    "NAMED_CORPORA",
    "RandomWindows",
    "Tokenizer",
    "build_tokenizer",
    "check_long_enough",
    "data_search_path",
    "default_text",
    "fixed_eval_batches",
    "load_corpus",
    "read_text_file",
    "sequential_windows",
    "tokenizer_from_dict",
]
