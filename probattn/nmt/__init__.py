"""Machine translation: parallel corpora, subword vocabulary, the trainer task, decoding, BLEU."""
