"""Fine-tune a model on your own catalog's (image, caption) pairs and save it as a new model key.

    python -m core.finetune --images ../shared/data/fashion-products/images \\
        --captions ../shared/data/fashion-products/products.csv --base clip-ViT-B-32 --out models/my-shop

Symmetric InfoNCE over in-batch negatives (core/training/contrastive.py) on the training products;
the held-out products (core/quality/holdout.py) are measured before training and after every
epoch (contrastive loss and text -> image Recall@10). Each epoch ends in a checkpoint
(`--resume` continues from the last finished one), training stops early when the held-out
loss has not improved for `--patience` epochs, and the best epoch's weights are saved in
the base model's own folder layout with a `vitrine.json` descriptor, so a folder under
$VITRINE_MODELS_DIR becomes a model key the builder, the search and the app offer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core import cli, settings
from core.catalog import Catalog
from core.training.checkpoint import CHECKPOINT_DIR, Checkpoint, CheckpointError, TrainingState, load_checkpoint, save_checkpoint
from core.training.contrastive import INITIAL_TEMPERATURE, Temperature
from core.training.trainer import ContrastiveTrainer, FrozenImages, HeldOutMetrics, frozen_image_vectors
from core.devices import require_device
from core.descriptor import DESCRIPTOR_FILE, SELF_TOWER, Descriptor, write_descriptor
from core.quality.holdout import DEFAULT_VAL_FRACTION
from core.models import (
    REGISTRY,
    ModelLoadError,
    ModelSpec,
    get_encoder,
    get_spec,
    load_private_copy,
    save_in_layout_of,
)
from core.training.pairs import TrainingPairs, training_pairs

REPORT_FILE = "finetune_report.json"
VISION_PARAMETERS = (".vision_model.", ".visual_projection.")
# Options that may differ between a run and its --resume; every other one must match.
RESUMABLE_CHANGES = ("out", "epochs", "patience", "max_seconds", "device", "resume", "overwrite")


class FinetuneError(ValueError):
    """Options that cannot work together; the message says which and what to use instead."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything one fine-tuning run needs besides the catalog."""

    base: str
    out: Path
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 0.1
    val_fraction: float = DEFAULT_VAL_FRACTION
    patience: int = 2
    freeze_image_tower: bool = False
    text_only: bool = False  # train only a text encoder against frozen image vectors of its tower
    temperature: float | None = None  # a fixed temperature; None learns it, starting at 0.07
    seed: int = 0
    device: str = "auto"
    limit: int | None = None
    max_seconds: float | None = None  # do not start an epoch that would end after this
    resume: bool = False
    overwrite: bool = False

    def resume_settings(self, catalog: Catalog) -> dict:
        chosen = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in RESUMABLE_CHANGES}
        return {**chosen, "catalog": catalog.fingerprint()}


@dataclass
class FinetuneReport:
    """What a run did and how much better the model got on products it never trained on."""

    model: str
    out: str
    base: str
    image_tower: str
    device: str
    train_pairs: int
    held_out_pairs: int
    skipped: int
    epochs: int  # finished epochs, over all resumed runs
    best_epoch: int  # 0 means no epoch beat the base model, whose weights were kept
    stopped: str
    before: dict
    after: dict
    temperature: float
    seconds: float
    history: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        b, a = self.before, self.after
        lines = [
            f"Fine-tuned {self.base} -> {self.model} on {self.train_pairs} pairs ({self.held_out_pairs} held out, "
            f"{self.skipped} rows skipped) on {self.device} in {self.seconds:.0f} s; {self.stopped}.",
            f"{'held-out':<22}{'before':>9}{'after':>9}{'chance':>9}",
            f"  {'contrastive loss':<20}{b['loss']:>9.3f}{a['loss']:>9.3f}{'':>9}",
            f"  {'text->image R@10':<20}{b['recall_at_10']:>9.3f}{a['recall_at_10']:>9.3f}"
            f"{a['chance_recall_at_10']:>9.3f}",
            f"Saved the weights of epoch {self.best_epoch} to {self.out} (temperature {self.temperature:.4f}).",
        ]
        if self.best_epoch == 0:
            lines.append("No epoch improved the held-out loss: the folder holds the base model's weights.")
        return "\n".join(lines)


def finetune(
    catalog: Catalog, config: FinetuneConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> FinetuneReport:
    """Run (or resume) fine-tuning and write the model folder; see the module docstring."""
    started = time.perf_counter()
    spec, text_only = _check_config(config)
    device = require_device(config.device)
    run_settings = {**config.resume_settings(catalog), "text_only": text_only}
    checkpoint_dir = config.out / CHECKPOINT_DIR
    resumed = load_checkpoint(checkpoint_dir, run_settings) if config.resume else None
    if resumed is None:
        _check_out_is_free(config.out, config.overwrite)
    pairs = training_pairs(catalog, config.val_fraction, config.limit, progress)
    if resumed is None:
        shutil.rmtree(config.out, ignore_errors=True)
        config.out.mkdir(parents=True)
    model = load_private_copy(config.base, device)
    trainer = ContrastiveTrainer(
        model,
        Temperature(config.temperature or INITIAL_TEMPERATURE, learnable=config.temperature is None),
        pairs,
        _frozen_images(model, spec, text_only, config, pairs, device, progress),
        lr=config.lr,
        weight_decay=config.weight_decay,
        batch_size=config.batch_size,
        progress=progress,
    )
    if resumed is not None:
        trainer.load_weights(resumed.weights)
        trainer.load_optimizer_state(resumed.optimizer)
        trainer.load_scaler_state(resumed.state.scaler)
        state, best_weights = resumed.state, resumed.best_weights
        log(f"Resuming after epoch {state.epoch} from {checkpoint_dir}.")
    else:
        before = trainer.held_out()
        log(_metrics_line("before training", before))
        state = TrainingState(settings=run_settings, before=asdict(before), best_loss=before.loss)
        best_weights = trainer.weights()
        _save(checkpoint_dir, state, trainer, best_weights)

    stopped, best_weights = _run_epochs(trainer, state, best_weights, config, started, log)
    trainer.load_weights(best_weights)
    after = state.before if state.best_epoch == 0 else state.history[state.best_epoch - 1]
    report = FinetuneReport(
        model=config.out.name,
        out=str(config.out),
        base=config.base,
        image_tower=_image_tower(spec, config, text_only),
        device=device,
        train_pairs=len(pairs.train),
        held_out_pairs=len(pairs.held_out),
        skipped=len(pairs.skipped),
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        stopped=stopped,
        before=state.before,
        after={name: after[name] for name in ("loss", "recall_at_10", "chance_recall_at_10")},
        temperature=trainer.temperature.value,
        seconds=time.perf_counter() - started,
        history=state.history,
    )
    _write_model(model, spec, config, report)
    return report


def _run_epochs(
    trainer: ContrastiveTrainer, state: TrainingState, best_weights: dict, config: FinetuneConfig, started: float,
    log: Callable[[str], None],
) -> tuple[str, dict]:
    """Train until --epochs, early stopping or the time budget; checkpoint after every epoch.
    Returns why training stopped and the best weights so far."""
    stopped, epoch_seconds = f"finished {config.epochs} epochs", []
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if state.stale_epochs >= config.patience:
            stopped = f"stopped early: no held-out improvement for {state.stale_epochs} epochs"
            break
        elapsed = time.perf_counter() - started
        if config.max_seconds is not None and epoch_seconds and elapsed + max(epoch_seconds) > config.max_seconds:
            stopped = f"stopped at the time budget of {config.max_seconds:.0f} s"
            break
        epoch_started = time.perf_counter()
        train_loss = trainer.train_epoch(epoch, config.seed)
        metrics = trainer.held_out()
        if metrics.loss < state.best_loss:
            state.best_epoch, state.best_loss, state.stale_epochs = epoch, metrics.loss, 0
            best_weights = trainer.weights()
        else:
            state.stale_epochs += 1
        state.epoch = epoch
        epoch_seconds.append(time.perf_counter() - epoch_started)
        state.history.append(
            {"epoch": epoch, "train_loss": train_loss, **asdict(metrics), "temperature": trainer.temperature.value,
             "seconds": epoch_seconds[-1]}
        )
        state.scaler = trainer.scaler_state()
        _save(config.out / CHECKPOINT_DIR, state, trainer, best_weights)
        log(_metrics_line(f"epoch {epoch} (train loss {train_loss:.3f})", metrics))
    return stopped, best_weights


def _check_config(config: FinetuneConfig) -> tuple[ModelSpec, bool]:
    """The base model's spec and whether only a text encoder trains; refuse what cannot work."""
    spec = get_spec(config.base)
    key = config.out.name
    if key in REGISTRY or key == config.base or not key or key.startswith("."):
        raise FinetuneError(f"--out must name a new model folder; '{key}' cannot be the key of a fine-tuned model.")
    if config.text_only and spec.encodes_images:
        raise FinetuneError(
            f"--text-only-multilingual trains a text-only model against its image tower's vectors, but "
            f"'{config.base}' has its own image tower: use --freeze-image-tower to train only its text side."
        )
    if config.freeze_image_tower and not spec.encodes_images:
        raise FinetuneError(f"'{config.base}' has no image tower of its own to freeze; its images are always frozen.")
    for name, value, low in (("--epochs", config.epochs, 1), ("--batch-size", config.batch_size, 2), ("--patience", config.patience, 1)):
        if value < low:
            raise FinetuneError(f"{name} must be at least {low}, not {value}.")
    if config.lr <= 0 or not 0 < config.val_fraction < 1:
        raise FinetuneError("--lr must be positive and --val-fraction between 0 and 1.")
    if config.temperature is not None and not 0 < config.temperature <= 1:
        raise FinetuneError(f"--temperature must be in (0, 1], not {config.temperature}.")
    return spec, not spec.encodes_images


def _check_out_is_free(out: Path, overwrite: bool) -> None:
    """A new run writes into an empty folder, or replaces an earlier fine-tune when asked to."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    earlier_run = (out / CHECKPOINT_DIR).is_dir() or (out / REPORT_FILE).is_file()
    if overwrite and earlier_run:
        return
    if overwrite:
        raise FinetuneError(f"--overwrite only replaces an earlier fine-tuning folder, and {out} is not one.")
    raise FinetuneError(
        f"{out} already exists. Pass --resume to continue its training, --overwrite to start again, "
        "or choose another --out."
    )


def _frozen_images(model, spec: ModelSpec, text_only: bool, config: FinetuneConfig, pairs: TrainingPairs,
                   device: str, progress: bool) -> FrozenImages | None:
    """Image vectors computed once when the image side does not train, else None."""
    if text_only:
        tower = get_encoder(spec.image_tower, device)
        return frozen_image_vectors(tower.encode_images, pairs, progress)
    if not config.freeze_image_tower:
        return None
    frozen = [p for name, p in model.named_parameters() if any(part in f".{name}" for part in VISION_PARAMETERS)]
    if not frozen:
        raise FinetuneError(f"Found no image tower parameters in '{config.base}' to freeze.")
    for parameter in frozen:
        parameter.requires_grad_(False)
    return frozen_image_vectors(
        lambda images: model.encode(images, normalize_embeddings=True, show_progress_bar=False), pairs, progress
    )


def _image_tower(spec: ModelSpec, config: FinetuneConfig, text_only: bool) -> str:
    """A trained image tower makes the model its own tower; a frozen one keeps the base's image space."""
    return spec.image_tower if text_only or config.freeze_image_tower else SELF_TOWER


def _save(folder: Path, state: TrainingState, trainer: ContrastiveTrainer, best_weights: dict) -> None:
    save_checkpoint(folder, Checkpoint(state, trainer.weights(), best_weights, trainer.optimizer_state()))


def _write_model(model, spec: ModelSpec, config: FinetuneConfig, report: FinetuneReport) -> None:
    """Model files first, descriptor last: a half-written folder is never listed as a model."""
    (config.out / DESCRIPTOR_FILE).unlink(missing_ok=True)
    save_in_layout_of(config.base, model, config.out)
    (config.out / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    before, after = report.before["recall_at_10"], report.after["recall_at_10"]
    write_descriptor(
        config.out,
        Descriptor(
            base=config.base,
            image_tower=report.image_tower,
            encodes_images=spec.encodes_images,
            hint=f"Fine-tuned from {config.base} ({dt.date.today().isoformat()}): held-out text->image "
            f"Recall@10 {before:.2f} -> {after:.2f}.",
            val_fraction=config.val_fraction,
        ),
    )


def _metrics_line(when: str, metrics: HeldOutMetrics) -> str:
    return (
        f"{when}: held-out loss {metrics.loss:.3f}, text->image Recall@10 {metrics.recall_at_10:.3f} "
        f"(chance {metrics.chance_recall_at_10:.3f})"
    )


def default_out(base: str) -> Path | None:
    """Where a run saves without --out: beside the other models, so the app lists it at once."""
    root = settings.current().models_dir
    return root / f"{base}-finetuned" if root is not None else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.finetune", description=__doc__.split("\n\n")[0])
    source = cli.add_catalog_flags(parser)
    source.add_argument("--limit", type=cli.positive, help="use only the first N catalog rows")
    parser.add_argument("--base", required=True, help="model key to start from")
    parser.add_argument("--out", type=Path, help="new model folder (default: $VITRINE_MODELS_DIR/<base>-finetuned)")
    parser.add_argument("--epochs", type=int, default=FinetuneConfig.epochs, help="at most this many epochs (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size,
                        help="pairs per batch; each caption has batch-size - 1 negatives (%(default)s)")
    parser.add_argument("--lr", type=float, default=FinetuneConfig.lr, help="constant AdamW learning rate (%(default)s)")
    parser.add_argument("--weight-decay", type=float, default=FinetuneConfig.weight_decay, help="(%(default)s)")
    parser.add_argument("--val-fraction", type=float, default=FinetuneConfig.val_fraction,
                        help="held-out share of products (%(default)s)")
    parser.add_argument("--patience", type=int, default=FinetuneConfig.patience,
                        help="stop after this many epochs without held-out improvement (%(default)s)")
    parser.add_argument("--temperature", type=float, help="fix the softmax temperature (default: learn it from 0.07)")
    parser.add_argument("--freeze-image-tower", action="store_true", help="train only the text side of a CLIP model")
    parser.add_argument("--text-only-multilingual", action="store_true",
                        help="train only a text-only model (multilingual) against frozen CLIP image vectors")
    parser.add_argument("--seed", type=int, default=FinetuneConfig.seed, help="(%(default)s)")
    cli.add_device_flag(parser)
    parser.add_argument("--max-minutes", type=float, help="do not start an epoch that would end after this many minutes")
    parser.add_argument("--resume", action="store_true", help="continue from the last finished epoch in --out")
    parser.add_argument("--overwrite", action="store_true", help="start again even if --out exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(
        lambda: _run(args), ModelLoadError, FinetuneError, CheckpointError,
        on_interrupt="add --resume to the same command to continue after the last finished epoch.",
    )


def _run(args: argparse.Namespace) -> int:
    out = args.out or default_out(args.base)
    if out is None:
        raise FinetuneError("Give --out (or set VITRINE_MODELS_DIR to save beside the other models).")
    config = FinetuneConfig(
        base=args.base, out=out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, val_fraction=args.val_fraction, patience=args.patience,
        freeze_image_tower=args.freeze_image_tower, text_only=args.text_only_multilingual,
        temperature=args.temperature, seed=args.seed, device=args.device, limit=args.limit,
        max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None,
        resume=args.resume, overwrite=args.overwrite,
    )
    report = finetune(cli.catalog_of(args, name=out.name), config, progress=not args.quiet)
    print(report.describe())
    root = settings.current().models_dir
    if root is None or out.resolve().parent != root.resolve():
        print(f"To use it in Vitrine, place {out} in the folder VITRINE_MODELS_DIR names (beside the hub models).")
    else:
        print(f"Index with it: python -m core.build_index ... --models {out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
