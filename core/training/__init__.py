"""Fine-tuning on a catalog's own (image, caption) pairs: pairs, contrastive loss, trainer, checkpoints."""
