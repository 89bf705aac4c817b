"""Retrieval quality of a model on an index: how often a product's own caption finds its photo.

Queries are the captions of held-out products (core/quality/holdout.py: the products fine-tuning
leaves out), sampled with a fixed seed; each must find its own product among all products
of the index. Search is exact over the index's stored image vectors of the model's own
image tower, so the numbers measure the model, not HNSW. With a label column, image -> image
precision@10 counts how many of a photo's 10 nearest other products share its label. Chance
levels print beside. Several models are measured on the same queries and shown side by side.

    python -m core.evaluate --index index_data/fashion --model clip-ViT-B-32 --label-column subCategory
    python -m core.evaluate --index index_data/fashion3 --models clip-ViT-B-32,fashion-clip
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import cli
from core.descriptor import read_descriptor
from core.devices import require_device
from core.facets import FilterError, Filters, describe_filters, parse_filter_args
from core.quality.holdout import DEFAULT_VAL_FRACTION, held_out_mask
from core.index import IndexMismatchError, IndexReader
from core.models import CLIP_KEY, REGISTRY, ModelLoadError, get_encoder, get_spec
from core.quality.metrics import (
    chance_mrr,
    chance_recall_at,
    label_precision_at,
    mean_reciprocal_rank,
    recall_at,
    target_ranks,
)
from core.weights import check_fits

RECALL_KS = (1, 5, 10)
PRECISION_K = 10


class EvaluationError(ValueError):
    """The index cannot be evaluated as asked; the message says why and what to do."""


@dataclass
class EvaluationReport:
    """Text -> image Recall@k and MRR (and optionally label precision), each with its chance level."""

    index: str
    model: str
    image_tower: str
    products: int
    queries: int
    val_fraction: float
    seed: int
    recall: dict[int, float]
    chance_recall: dict[int, float]
    mrr: float
    chance_mrr: float
    label_column: str | None = None
    label_queries: int = 0
    precision_at_10: float | None = None
    chance_precision_at_10: float | None = None
    notes: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)  # only products passing these were queried and ranked

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def describe(self) -> str:
        lines = [
            f"Model {self.model} (images: {self.image_tower}) on {self.index}: {self.queries} held-out caption "
            f"queries (val fraction {self.val_fraction}, seed {self.seed}) against {self.products} products"
            + (f" with {describe_filters(self.filters)}." if self.filters else "."),
            f"{'text -> image':<16}{'model':>8}{'chance':>9}",
        ]
        for k in RECALL_KS:
            lines.append(f"  {f'Recall@{k}':<14}{self.recall[k]:>8.3f}{self.chance_recall[k]:>9.3f}")
        lines.append(f"  {'MRR':<14}{self.mrr:>8.3f}{self.chance_mrr:>9.3f}")
        if self.label_column is not None:
            lines.append(
                f"image -> image precision@{PRECISION_K} by {self.label_column}: {self.precision_at_10:.3f} "
                f"(chance {self.chance_precision_at_10:.3f}) over {self.label_queries} queries"
            )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def evaluate_index(
    folder: Path,
    model: str = CLIP_KEY,
    *,
    label_column: str | None = None,
    queries: int = 1000,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    device: str = "auto",
    filters: Filters | None = None,
) -> EvaluationReport:
    """Measure `model` on the index in `folder` (see the module docstring for the protocol).

    With `filters` (as SearchEngine.search takes them), only the passing products are queried
    and ranked: quality within a category, as a shopper who filtered on it sees it."""
    if queries < 1:
        raise EvaluationError(f"--queries must be at least 1, not {queries}.")
    if not 0.0 < val_fraction <= 1.0:
        raise EvaluationError(f"--val-fraction must be in (0, 1], not {val_fraction}.")
    reader = IndexReader(folder)
    try:
        allowed = reader.allowed_rows(filters)
    except FilterError as err:
        raise EvaluationError(str(err)) from err
    rows = np.arange(reader.count) if allowed is None else allowed.rows
    if not len(rows):
        raise EvaluationError(f"No product passes {describe_filters(filters)}; nothing to evaluate.")
    items = reader.items.iloc[rows].reset_index(drop=True)
    captions = items["caption"].fillna("").astype(str).str.strip()
    if not (captions != "").any():
        raise EvaluationError(
            f"The index in {folder} has no captions, so there are no caption queries to evaluate with. "
            "Rebuild it from a catalog with a caption column."
        )
    metadata = [json.loads(m) if m else {} for m in items["metadata"]]
    if label_column is not None:
        columns = sorted({key for row in metadata for key in row})
        if label_column not in columns:
            raise EvaluationError(
                f"Label column '{label_column}' is not in the index's metadata; available columns: "
                f"{', '.join(columns) or 'none'}."
            )
    encoder = get_encoder(model, require_device(device))
    check_fits(encoder, reader.manifest, reader.folder)

    products, product_ids = pd.factorize(items["id"].astype(str))
    first_row = pd.Series(np.arange(len(items))).groupby(products).first().to_numpy()
    captioned = captions.to_numpy() != ""
    caption_row = pd.Series(np.flatnonzero(captioned)).groupby(products[captioned]).first()
    candidates = caption_row.index.to_numpy()[held_out_mask(product_ids[caption_row.index], val_fraction)]
    if not len(candidates):
        raise EvaluationError(
            f"No held-out product with a caption at --val-fraction {val_fraction}; raise it (up to 1.0)."
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(queries, len(candidates)), replace=False))
    query_vectors = encoder.encode_texts(captions.iloc[caption_row.loc[chosen].to_numpy()].tolist())
    gallery = np.asarray(reader.for_tower(encoder.spec.image_tower).image_vectors[rows], dtype=np.float32)
    ranks = target_ranks(query_vectors, gallery, products, chosen)
    count = len(product_ids)
    report = EvaluationReport(
        index=str(folder),
        model=model,
        image_tower=encoder.spec.image_tower,
        products=count,
        queries=len(chosen),
        val_fraction=val_fraction,
        seed=seed,
        recall={k: recall_at(ranks, k) for k in RECALL_KS},
        chance_recall={k: chance_recall_at(k, count) for k in RECALL_KS},
        mrr=mean_reciprocal_rank(ranks),
        chance_mrr=chance_mrr(count),
        notes=_holdout_notes(model, val_fraction),
        filters={key: list(values) for key, values in (filters or {}).items()},
    )
    if label_column is not None:
        labels = np.array([metadata[row].get(label_column, "") for row in first_row], dtype=object)
        labelled = chosen[labels[chosen] != ""]
        report.label_column, report.label_queries = label_column, len(labelled)
        report.precision_at_10, report.chance_precision_at_10 = label_precision_at(
            gallery[first_row[labelled]], labelled, gallery, products, labels, PRECISION_K
        )
    return report


def compare_table(reports: Sequence[EvaluationReport]) -> str:
    """The headline figures of several models on the same queries, one column per model."""
    width = max(12, *(len(report.model) + 2 for report in reports))
    rows = [("", [report.model for report in reports])]
    rows += [(f"Recall@{k}", [f"{report.recall[k]:.3f}" for report in reports]) for k in RECALL_KS]
    rows.append(("MRR", [f"{report.mrr:.3f}" for report in reports]))
    if all(report.precision_at_10 is not None for report in reports):
        rows.append((f"P@{PRECISION_K} {reports[0].label_column}", [f"{report.precision_at_10:.3f}" for report in reports]))
    first = reports[0]
    lines = [f"Side by side: the same {first.queries} held-out caption queries against {first.products} products."]
    lines += [f"{name:<16}" + "".join(f"{value:>{width}}" for value in values) for name, values in rows]
    return "\n".join(lines)


def _holdout_notes(model: str, val_fraction: float) -> list[str]:
    """Warn when a fine-tuned model trained on some of the queried products."""
    if model in REGISTRY:
        return []
    trained_with = read_descriptor(Path(get_spec(model).hub_id)).val_fraction
    if trained_with is not None and trained_with < val_fraction:
        return [
            f"'{model}' was fine-tuned with --val-fraction {trained_with}: some queries are products it trained on. "
            f"Pass --val-fraction {trained_with} for a held-out measurement."
        ]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="index folder (index_data/<name>)")
    parser.add_argument("--model", action="append", default=[],
                        help="model key (a hub key or a fine-tuned local model); repeat it to compare models")
    parser.add_argument("--models", default="", help="comma-separated model keys, measured on the same queries")
    parser.add_argument("--label-column", help="metadata column for image -> image precision@10, e.g. subCategory")
    parser.add_argument("--queries", type=int, default=1000, help="at most this many held-out caption queries")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                        help="held-out share of products to draw queries from (use finetune's value)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the query sample")
    cli.add_device_flag(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="evaluate within the products with this metadata value (repeatable, as core.search)")
    args = parser.parse_args(argv)
    keys = [*args.model, *(key.strip() for key in args.models.split(",") if key.strip())]
    keys = list(dict.fromkeys(keys)) or [CLIP_KEY]

    def evaluate() -> int:
        filters = parse_filter_args(args.filter)
        reports = [
            evaluate_index(
                args.index,
                key,
                label_column=args.label_column,
                queries=args.queries,
                val_fraction=args.val_fraction,
                seed=args.seed,
                device=args.device,
                filters=filters,
            )
            for key in keys
        ]
        if args.json:
            several = json.dumps([asdict(report) for report in reports], indent=2, ensure_ascii=False)
            print(reports[0].to_json() if len(reports) == 1 else several)
        else:
            tables = [report.describe() for report in reports] + ([compare_table(reports)] if len(reports) > 1 else [])
            print("\n\n".join(tables))
        return 0

    return cli.run(evaluate, EvaluationError, FilterError, IndexMismatchError, ModelLoadError)


if __name__ == "__main__":
    sys.exit(main())
