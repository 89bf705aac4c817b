"""Fine-tuning checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is one folder written whole and swapped in (core.atomic.replace_folder), so a
run killed while saving leaves the previous epoch's checkpoint intact. It holds the
weights after the last finished epoch, the best weights so far (early stopping returns
those), the optimizer's moments and the bookkeeping needed to continue exactly.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.atomic import recover_folder, replace_folder

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
WEIGHTS_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


class CheckpointError(ValueError):
    """No usable checkpoint, or one made with other settings; the message says what to do."""


@dataclass
class TrainingState:
    """Where a run stands after its last finished epoch (epoch 0: evaluated, not yet trained)."""

    settings: dict  # what must match to resume: base model, data, hyperparameters
    epoch: int = 0
    before: dict = field(default_factory=dict)  # held-out metrics of the base model
    history: list[dict] = field(default_factory=list)  # one entry per finished epoch
    best_epoch: int = 0
    best_loss: float = float("inf")
    stale_epochs: int = 0  # epochs since the held-out loss last improved
    scaler: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    state: TrainingState
    weights: dict[str, torch.Tensor]
    best_weights: dict[str, torch.Tensor]
    optimizer: dict


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint into a staging folder, then swap it in whole."""
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(_detached(checkpoint.weights), str(staging / WEIGHTS_FILE))
    save_file(_detached(checkpoint.best_weights), str(staging / BEST_FILE))
    tensors, optimizer_json = _split_optimizer_state(checkpoint.optimizer)
    save_file(tensors, str(staging / OPTIMIZER_FILE))
    document = {"state": asdict(checkpoint.state), "optimizer": optimizer_json}
    (staging / STATE_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
    replace_folder(staging, folder)


def load_checkpoint(folder: Path, settings: dict) -> Checkpoint:
    """The checkpoint in `folder`, refused when it was made with other `settings`."""
    recover_folder(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"Nothing to resume: {folder} holds no checkpoint. Run without --resume to start.")
    try:
        document = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        state = TrainingState(**document["state"])
        weights = load_file(str(folder / WEIGHTS_FILE))
        best_weights = load_file(str(folder / BEST_FILE))
        optimizer = _join_optimizer_state(load_file(str(folder / OPTIMIZER_FILE)), document["optimizer"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"The checkpoint in {folder} is damaged ({err}). Start again with --overwrite.") from err
    changed = sorted(name for name in set(settings) | set(state.settings) if settings.get(name) != state.settings.get(name))
    if changed:
        differences = ", ".join(f"{name} {state.settings.get(name)!r} -> {settings.get(name)!r}" for name in changed)
        raise CheckpointError(
            f"The checkpoint in {folder} was made with other settings ({differences}). Resume with the same "
            "catalog and options (only --epochs, --patience and --max-minutes may change), or start again with --overwrite."
        )
    return Checkpoint(state, weights, best_weights, optimizer)


def _detached(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch's optimizer state_dict as flat tensors plus a JSON document for the rest."""
    tensors, scalars = {}, {}
    for param_id, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}/{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], document: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *document["scalars"].items()]:
        param_id, name = flat.split("/", 1)
        state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": document["param_groups"]}
