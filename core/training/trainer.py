"""One fine-tuning run's moving parts: the model, its temperature, the optimizer, epochs, held-out metrics.

Training goes through the SentenceTransformer's own preprocess and forward, so what is
trained is exactly what `encode` (and so search) computes. The image side is either the
model itself (a CLIP whose image tower learns too) or fixed vectors computed once (a
frozen image tower, or a text-only model learning to meet another model's image vectors).

Every epoch reseeds from (seed, epoch) and the learning rate is constant, so an epoch
run after a resume is the epoch an uninterrupted run would have run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sentence_transformers.util import batch_to_device
from tqdm import tqdm

from core.training.contrastive import Temperature, symmetric_info_nce
from core.quality.metrics import chance_recall_at, recall_at, target_ranks
from core.training.pairs import TrainingPairs, decode_images, encode_pair_images

RECALL_K = 10
EVAL_BATCH = 128


@dataclass(frozen=True)
class HeldOutMetrics:
    loss: float  # mean symmetric InfoNCE over held-out batches of the training batch size
    recall_at_10: float  # text -> image among the held-out products
    chance_recall_at_10: float


@dataclass
class FrozenImages:
    """Image vectors that do not change during training, in pair order."""

    train: torch.Tensor
    held_out: torch.Tensor


class ContrastiveTrainer:
    """Trains a SentenceTransformer with symmetric InfoNCE and measures it on held-out pairs."""

    def __init__(
        self,
        model,
        temperature: Temperature,
        pairs: TrainingPairs,
        frozen: FrozenImages | None,
        *,
        lr: float,
        weight_decay: float,
        batch_size: int,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.device = torch.device(model.device)
        self.trainable = torch.nn.ModuleDict({"model": model, "temperature": temperature}).to(self.device)
        self.temperature = temperature
        self.pairs = pairs
        self.frozen = frozen
        self.batch_size = batch_size
        self.progress = progress
        self.optimizer = torch.optim.AdamW(_parameter_groups(self.trainable, weight_decay), lr=lr)
        self.amp = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

    def train_epoch(self, epoch: int, seed: int) -> float:
        """One pass over the training pairs in a (seed, epoch)-determined order; the mean batch loss."""
        torch.manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.pairs.train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        batches = np.array_split(order.numpy(), max(1, len(order) // self.batch_size))
        self.trainable.train()
        losses = []
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", disable=not self.progress)
        for rows in bar:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                texts = self._embed([self.pairs.train[i].caption for i in rows])
                if self.frozen is not None:
                    images = self.frozen.train[torch.as_tensor(rows)].to(self.device)
                else:
                    images = self._embed(decode_images([self.pairs.train[i] for i in rows]))
                loss = symmetric_info_nce(texts, images, self.temperature.logit_scale())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", temperature=f"{self.temperature.value:.4f}")
        return float(np.mean(losses))

    @torch.no_grad()
    def held_out(self) -> HeldOutMetrics:
        """Held-out contrastive loss and text -> image Recall@10 with the current weights."""
        held = self.pairs.held_out
        texts = torch.as_tensor(self._encode([pair.caption for pair in held]))
        if self.frozen is not None:
            images = self.frozen.held_out
        else:
            images = encode_pair_images(self._encode, held, "held-out images", self.progress)
        scale = self.temperature.logit_scale().detach().cpu()
        batches = np.array_split(np.arange(len(held)), max(1, len(held) // self.batch_size))
        loss = sum(len(rows) * float(symmetric_info_nce(texts[rows], images[rows], scale)) for rows in batches) / len(held)
        products = pd.factorize(pd.Series([pair.product_id for pair in held]))[0]
        ranks = target_ranks(texts.numpy(), images.numpy(), products, products)
        return HeldOutMetrics(loss, recall_at(ranks, RECALL_K), chance_recall_at(RECALL_K, int(products.max()) + 1))

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().clone() for name, tensor in self.trainable.state_dict().items()}

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.trainable.load_state_dict(weights)

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def scaler_state(self) -> dict:
        return dict(self.scaler.state_dict())

    def load_scaler_state(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)

    def _embed(self, inputs: list) -> torch.Tensor:
        """The training forward pass: the model's own preprocess and forward, with gradients."""
        features = batch_to_device(self.model.preprocess(inputs), self.device)
        return self.model(features)["sentence_embedding"]

    def _encode(self, inputs: list) -> np.ndarray:
        return self.model.encode(
            inputs, batch_size=EVAL_BATCH, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


def frozen_image_vectors(encode, pairs: TrainingPairs, progress: bool) -> FrozenImages:
    """Encode every pair's image once with a tower that will not change."""
    return FrozenImages(
        train=encode_pair_images(encode, pairs.train, "frozen image vectors", progress),
        held_out=encode_pair_images(encode, pairs.held_out, "frozen held-out vectors", progress),
    )


def _parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, norms and the temperature are left alone, as in CLIP."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]
