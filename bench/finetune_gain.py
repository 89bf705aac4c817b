"""How much fine-tuning on the shared photos teaches a randomly initialised CLIP, in bounded time.

Makes a random CLIP in the exact hub layout of clip-ViT-B-32 (core/random_models.py,
"small" by default), fine-tunes it with core.finetune on the fashion-products photos and
captions until the time budget, and prints held-out text -> image Recall@10 before and
after, next to chance. A random start is the honest setting here: no hub weights reach
this machine, and it shows the pipeline learning from nothing but the catalog.

    python -m bench.finetune_gain --minutes 10
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from bench.setup import DATA
from core.catalog import from_folder
from core.models import CLIP_KEY, clear_cache
from core.random_models import SIZES, make_clip
from core.settings import MODELS_DIR_ENV
from core.training.finetune import FinetuneConfig, finetune


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="time budget for the whole run (at most 15)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="random CLIP size")
    parser.add_argument("--limit", type=int, help="use only the first N products")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--data", type=Path, default=DATA, help="the fashion-products folder")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 15:
        parser.error("--minutes must be in (0, 15]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "products.csv").is_file():
        print(f"skipped: the fashion-products data is not at {args.data}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-") as work:
        root = Path(work)
        make_clip(root / CLIP_KEY, args.size, seed=0)
        os.environ[MODELS_DIR_ENV] = str(root)
        clear_cache()
        catalog = from_folder(args.data / "images", args.data / "products.csv", name="fashion")
        config = FinetuneConfig(
            base=CLIP_KEY, out=root / "bench-finetuned", epochs=1000, batch_size=args.batch_size, lr=args.lr,
            val_fraction=args.val_fraction, patience=3, limit=args.limit, max_seconds=args.minutes * 60,
        )
        report = finetune(catalog, config, progress=False)
    device = torch.cuda.get_device_name() if report.device == "cuda" else f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores, {args.threads} torch threads"
    print()
    print(f"random '{args.size}' CLIP -> fine-tuned on {report.train_pairs} pairs, measured on {report.held_out_pairs} held-out products")
    print(f"{report.epochs} epochs in {report.seconds / 60:.1f} min on {device} (batch {args.batch_size}, lr {args.lr}); {report.stopped}")
    print(f"{'held-out':<24}{'before':>9}{'after':>9}{'chance':>9}")
    print(f"  {'text->image Recall@10':<22}{report.before['recall_at_10']:>9.3f}{report.after['recall_at_10']:>9.3f}"
          f"{report.after['chance_recall_at_10']:>9.3f}")
    print(f"  {'contrastive loss':<22}{report.before['loss']:>9.3f}{report.after['loss']:>9.3f}")
    print("per epoch (held-out R@10): " + ", ".join(f"{h['recall_at_10']:.3f}" for h in report.history))
    return 0


if __name__ == "__main__":
    sys.exit(main())
