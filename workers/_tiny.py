"""Small random-weight stand-ins for real checkpoints, generated locally (no hub here).

Each is written to a temporary folder and renamed into place, so concurrent workers never
see half a model. They load through the real transformers loading code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["CORPUS", "ensure_text_classifier"]

CORPUS = [
    "I love this movie, it is wonderful and great.",
    "This film was terrible, boring and far too long.",
    "What a fantastic idea, I am so happy about it.",
    "The food was bad and the service was slow.",
    "A man is eating food. A man is eating a piece of bread.",
    "The new movie is awesome. I have an idea!",
    "Sometimes things are fine, sometimes they are not.",
]


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=200,
                                                                   special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
    )
    fast.save_pretrained(path)


def ensure_text_classifier(path: Path) -> Path:
    """A tiny BERT sentiment classifier (labels NEGATIVE/POSITIVE) at ``path``."""
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        torch.manual_seed(0)
        _tokenizer(tmp)
        config = BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=128, num_labels=2,
                            id2label={0: "NEGATIVE", 1: "POSITIVE"},
                            label2id={"NEGATIVE": 0, "POSITIVE": 1})
        BertForSequenceClassification(config).save_pretrained(tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
