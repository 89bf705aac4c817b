"""Does a loaded model fit an index? One check for the builder, the search engine and evaluate.

An index records, per model, its vector size and a probe: the model's vector for a fixed
sentence (`Encoder.probe`). Other weights of the same architecture (another fine-tune, a
re-trained checkpoint) give a different probe, so vectors from them would be silently
wrong against this index; the check refuses them instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.index import MANIFEST_FILE, IndexMismatchError, Manifest
from core.models import Encoder, ModelSpec

PROBE_MIN_COSINE = 0.98


def model_facts(encoder: Encoder) -> dict:
    """What an index records about a model: its vector size and its probe."""
    return {"dim": encoder.dim, "probe": encoder.probe().round(6).tolist()}


def search_problem(spec: ModelSpec, manifest: Manifest) -> str | None:
    """Why a model cannot search this index, read from the manifest alone (nothing is loaded);
    None when it can as far as the manifest records. `check_fits` still checks the weights on load."""
    if manifest.image_entry is None:
        return "this catalog has no photo index"
    image_entry = manifest.image_entry_for(spec.image_tower)
    if image_entry is None:
        built = " and ".join(f"'{name}'" for name in manifest.image_towers)
        return f"it reads photos with '{spec.image_tower}', this catalog's photos were indexed with {built}"
    recorded = manifest.models.get(spec.key)
    dims = {recorded.get("dim")} if isinstance(recorded, dict) else set()
    caption_entry = manifest.find(spec.key, "caption")
    dims |= {caption_entry.dim} if caption_entry is not None else set()
    wrong = sorted(dim for dim in dims - {None, image_entry.dim})
    if wrong:
        return f"its vectors have {wrong[0]} dimensions, this catalog's photo vectors {image_entry.dim}"
    return None


def check_fits(encoder: Encoder, manifest: Manifest, folder: Path) -> None:
    """Refuse a model whose image tower, vector size or weights differ from the index's.

    The model's image tower must have an image index here (an index may hold several, one per
    tower). The weights of every model whose vectors the index holds, the query model's and its
    image tower's, must match their recorded probes; a text model with no vectors here (a
    fine-tune of the text side only) is checked through its image tower alone."""
    key = encoder.spec.key
    tower = encoder.spec.image_tower
    image_entry = manifest.image_entry_for(tower)
    if image_entry is None:
        built = " and ".join(f"'{name}'" for name in manifest.image_towers)
        raise IndexMismatchError(
            f"Model '{key}' reads images with '{tower}', but this index was built with "
            f"{built or 'no image tower'}. Pick another model or "
            f"rebuild the index with it: `python -m core.build_index --models ...,{key} --out {folder}`."
        )
    if encoder.dim != image_entry.dim:
        raise IndexMismatchError(
            f"Model '{key}' makes {encoder.dim}-d vectors, the index in {folder} holds "
            f"{image_entry.dim}-d vectors: it was built by another model. Rebuild it with "
            f"`python -m core.build_index --models {key} ...`."
        )
    towers = [encoder] if encoder.image_encoder is encoder else [encoder, encoder.image_encoder]
    for model in towers:
        if model.spec.key == tower or manifest.find(model.spec.key, "caption") is not None:
            _check_probe(model, manifest, folder)


def _check_probe(encoder: Encoder, manifest: Manifest, folder: Path) -> None:
    key = encoder.spec.key
    recorded = manifest.models.get(key) or {}
    probe = recorded.get("probe") if isinstance(recorded, dict) else None
    if not probe:
        raise IndexMismatchError(
            f"{Path(folder) / MANIFEST_FILE} records no weights probe for '{key}', so it cannot be checked "
            f"against the model loaded now. Rebuild the index: `python -m core.build_index ... --out {folder}`."
        )
    recorded_probe = np.asarray(probe, np.float32)
    if recorded_probe.shape != (encoder.dim,):
        raise IndexMismatchError(
            f"The index in {folder} was built with a {recorded_probe.shape[0]}-d '{key}', the one loaded now makes "
            f"{encoder.dim}-d vectors. Rebuild the index with the current model."
        )
    agreement = float(np.dot(encoder.probe(), recorded_probe))
    if agreement < PROBE_MIN_COSINE:
        raise IndexMismatchError(
            f"The index in {folder} was built with other weights for '{key}' than the ones "
            f"loaded now (probe cosine {agreement:.3f}). Rebuild the index with the current model."
        )
