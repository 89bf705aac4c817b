"""Randomly initialised models saved in the exact hub layouts of the three model keys.

This workplace reaches no model hub, so tests, benchmarks and the fine-tuning demo
build their own models here: tiny ones for tests (seconds to make), full-size ones
for benchmarks (a random ViT-B/32 costs the same to run as the trained one).
The folders load through the same code path as the real downloads.

    python -m core.random_models --size tiny --to /tmp/models
"""

from __future__ import annotations

import argparse
import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    DistilBertConfig,
    DistilBertModel,
    DistilBertTokenizer,
)

CLIP_KEY = "clip-ViT-B-32"
MULTILINGUAL_KEY = "clip-ViT-B-32-multilingual-v1"
FASHION_KEY = "fashion-clip"

# Characters the tiny tokenizers know; anything else maps to the unknown token.
_ALPHABET = string.ascii_letters + string.digits + string.punctuation + "äöüßéèêàçñáíóúÄÖÜÉ"


@dataclass(frozen=True)
class Sizes:
    """Architecture sizes; `full` matches the released models' cost."""

    clip_text_width: int
    clip_vision_width: int
    clip_layers: int
    clip_heads: int
    projection_dim: int
    image_size: int
    patch_size: int
    bert_width: int
    bert_layers: int
    bert_heads: int
    bert_vocab: int


SIZES = {
    "tiny": Sizes(32, 32, 2, 2, 24, 32, 8, 32, 2, 2, 0),
    "small": Sizes(128, 128, 4, 4, 128, 64, 16, 128, 2, 4, 0),
    "full": Sizes(512, 768, 12, 8, 512, 224, 32, 768, 6, 12, 119547),
}


def _clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """A character-level BPE vocabulary in CLIP's file format (no merges needed)."""
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    for ch in sorted(set(_ALPHABET)):
        tokens += [ch, ch + "</w>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token="<|endoftext|>", model_max_length=77
    )


def _bert_tokenizer(folder: Path) -> DistilBertTokenizer:
    """A character-level WordPiece vocabulary in BERT's file format."""
    chars = sorted(set(_ALPHABET.lower()))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return DistilBertTokenizer(str(folder / "vocab.txt"), model_max_length=512)


def _random_clip(size: str, seed: int, tokenizer: CLIPTokenizer) -> tuple[CLIPModel, CLIPImageProcessor]:
    """A randomly initialised transformers CLIP of the given size, and its image processor."""
    s = SIZES[size]
    torch.manual_seed(seed)
    vocab = 49408 if size == "full" else len(tokenizer)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=s.clip_text_width,
            intermediate_size=4 * s.clip_text_width,
            num_hidden_layers=s.clip_layers,
            num_attention_heads=s.clip_heads,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=s.clip_vision_width,
            intermediate_size=4 * s.clip_vision_width,
            num_hidden_layers=s.clip_layers,
            num_attention_heads=s.clip_heads,
            image_size=s.image_size,
            patch_size=s.patch_size,
        ),
        projection_dim=s.projection_dim,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": s.image_size}, crop_size={"height": s.image_size, "width": s.image_size}
    )
    return CLIPModel(config), image_processor


def make_clip(folder: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Save a random CLIP in the layout of sentence-transformers/clip-ViT-B-32."""
    hf_dir = folder / "_hf"
    _rmtree(folder)
    tokenizer = _clip_tokenizer(hf_dir)
    model, image_processor = _random_clip(size, seed, tokenizer)
    model.save_pretrained(hf_dir)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(hf_dir)
    hf_dir.rename(folder / "0_CLIPModel")
    _write_modules(folder, [("0_CLIPModel", "CLIPModel")])
    return folder


def make_fashion_clip(folder: Path, size: str = "tiny", seed: int = 2) -> Path:
    """Save a random CLIP in the layout of patrickjohncyh/fashion-clip: a plain transformers
    checkpoint (config.json naming CLIPModel, model.safetensors, preprocessor_config.json, the
    tokenizer's vocab.json, merges.txt and tokenizer files), no sentence-transformers modules.json."""
    _rmtree(folder)
    tokenizer = _clip_tokenizer(folder)
    model, image_processor = _random_clip(size, seed, tokenizer)
    model.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_multilingual(folder: Path, clip_dim: int, size: str = "tiny", seed: int = 1) -> Path:
    """Save a random DistilBERT + mean pooling + Dense(->clip_dim) in the multilingual layout."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    s = SIZES[size]
    torch.manual_seed(seed)
    hf_dir = folder / "_hf"
    tokenizer = _bert_tokenizer(hf_dir)
    config = DistilBertConfig(
        vocab_size=s.bert_vocab or len(tokenizer),
        dim=s.bert_width,
        hidden_dim=4 * s.bert_width,
        n_layers=s.bert_layers,
        n_heads=s.bert_heads,
        max_position_embeddings=512,
    )
    DistilBertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=128)
    pooling = Pooling(s.bert_width, pooling_mode="mean")
    dense = Dense(s.bert_width, clip_dim, bias=False, activation_function=torch.nn.Identity())
    SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(folder))
    _rmtree(hf_dir)
    _write_modules(folder, [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")])
    return folder


def make_models(root: Path, size: str = "tiny") -> Path:
    """The three model keys under `root`, ready for VITRINE_MODELS_DIR."""
    make_clip(root / CLIP_KEY, size)
    make_multilingual(root / MULTILINGUAL_KEY, SIZES[size].projection_dim, size)
    make_fashion_clip(root / FASHION_KEY, size)
    return root


def _write_modules(folder: Path, modules: list[tuple[str, str]]) -> None:
    """modules.json as the hub repos have it (legacy `sentence_transformers.models.*` names)."""
    entries = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)
    ]
    (folder / "modules.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"__version__": {"sentence_transformers": "2.0.0"}}), encoding="utf-8"
    )


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--to", type=Path, required=True, help="folder to hold one sub-folder per model key")
    args = parser.parse_args(argv)
    print(make_models(args.to, args.size))


if __name__ == "__main__":
    main()
