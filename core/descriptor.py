"""The small file that turns a sentence-transformers folder into a Vitrine model key.

A fine-tuned model lives in `$VITRINE_MODELS_DIR/<key>/` next to the hub models; the
folder name is its key and `vitrine.json` says what the weights are: which model they
came from and which image tower their text vectors are meant to meet.

    {"base": "clip-ViT-B-32", "image_tower": "self", "encodes_images": true, "hint": "..."}

`image_tower` is "self" when the model's own image tower was trained (it needs its own
image index), or another key when its text vectors live in that key's image space.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

DESCRIPTOR_FILE = "vitrine.json"
SELF_TOWER = "self"


class DescriptorError(ValueError):
    """A descriptor that cannot be used; the message says which field is wrong."""


@dataclass(frozen=True)
class Descriptor:
    """What a local model folder holds and which image vectors its text vectors pair with."""

    base: str
    image_tower: str
    encodes_images: bool
    hint: str = ""
    val_fraction: float | None = None  # the held-out share fine-tuning kept out, for honest evaluation

    def __post_init__(self) -> None:
        for name in ("base", "image_tower"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DescriptorError(f"'{name}' must be a non-empty string, not {value!r}")
        if not isinstance(self.encodes_images, bool):
            raise DescriptorError(f"'encodes_images' must be true or false, not {self.encodes_images!r}")
        if not isinstance(self.hint, str):
            raise DescriptorError(f"'hint' must be a string, not {self.hint!r}")
        if self.image_tower == SELF_TOWER and not self.encodes_images:
            raise DescriptorError("'image_tower' is \"self\" but 'encodes_images' is false")
        fraction = self.val_fraction
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1):
            raise DescriptorError(f"'val_fraction' must be a number between 0 and 1, not {fraction!r}")


def read_descriptor(folder: Path) -> Descriptor:
    """The folder's descriptor, or DescriptorError saying what is wrong with it."""
    path = Path(folder) / DESCRIPTOR_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DescriptorError(f"{path} is not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise DescriptorError(f"{path} must hold a JSON object")
    missing = [name for name in ("base", "image_tower", "encodes_images") if name not in data]
    if missing:
        raise DescriptorError(f"{path} lacks {', '.join(missing)}")
    known = {name: data[name] for name in Descriptor.__dataclass_fields__ if name in data}
    try:
        return Descriptor(**known)
    except DescriptorError as err:
        raise DescriptorError(f"{path}: {err}") from None


def write_descriptor(folder: Path, descriptor: Descriptor) -> Path:
    """Write the descriptor last: its presence is what makes the folder a listed model."""
    path = Path(folder) / DESCRIPTOR_FILE
    temporary = path.with_name(f".{DESCRIPTOR_FILE}.tmp")
    temporary.write_text(json.dumps(asdict(descriptor), indent=2, ensure_ascii=False), encoding="utf-8")
    temporary.replace(path)
    return path
