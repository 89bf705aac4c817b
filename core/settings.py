"""Every setting Vitrine reads from the environment, with its default folder or value.

Nothing else in the project reads a `VITRINE_*` variable: code asks `current()` and passes
the values it needs on. `current()` reads the environment on each call (it is cheap), so a
test or a bench that points a variable elsewhere is honoured without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR_ENV = "VITRINE_MODELS_DIR"
INDEX_DIR_ENV = "VITRINE_INDEX_DIR"
CACHE_DIR_ENV = "VITRINE_CACHE_DIR"
FAST_PATH_ENV = "VITRINE_FAST_PATH"
API_URL_ENV = "VITRINE_API_URL"
TORCH_THREADS_ENV = "VITRINE_TORCH_THREADS"
PUBLIC_URL_ENV = "VITRINE_PUBLIC_URL"
ALLOW_BUILDS_ENV = "VITRINE_ALLOW_BUILDS"
SPACE_ID_ENV = "SPACE_ID"  # set by Hugging Face in every Space
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
# Passed on to processes that load models elsewhere (Ray workers), so they find the same weights.
MODEL_LOCATION_ENV = (MODELS_DIR_ENV, "HF_HOME", HUB_OFFLINE_ENV, "HF_ENDPOINT")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX_DIR = PROJECT_ROOT / "index_data"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "vitrine"
FAST_PATH_MODES = ("auto", "on", "off")
# A server's torch threads per process (core/api.py, Serve replicas): one, measured in the README's
# API section: requests run side by side, and more threads per forward pass only fight each other.
DEFAULT_TORCH_THREADS = 1
_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


@dataclass(frozen=True)
class Settings:
    """The environment's choices, resolved to folders and values."""

    models_dir: Path | None  # offline model folders, one per key; None: the hub (and its cache)
    index_dir: Path  # where the app and the API find catalogs
    cache_dir: Path  # downloads and records Vitrine makes itself
    fast_path: str  # "auto", "on" or "off" (see core/fastpath.py)
    hub_offline: bool
    api_url: str | None  # a Vitrine API the app sends its searches to, instead of loading models
    torch_threads: int  # intra-op threads of a server process (the API, a Serve replica)
    public_url: str | None = None  # where phones reach the app (a booth's QR code); None: the browser's address
    # May the app index a folder or path of this server? "auto": only for a visitor on this machine
    # (localhost) and never on a Hugging Face Space; "on" or "off" decide for everyone (ui/first_run.py).
    allow_builds: str = "auto"
    space_id: str | None = None  # the Hugging Face Space this runs as, if any

    @property
    def fastpath_record_dir(self) -> Path:
        """Beside the offline models when there are some (the verdict travels with them)."""
        return self.models_dir / ".fastpath" if self.models_dir is not None else self.cache_dir / "fastpath"


def _folder(value: str | None) -> Path | None:
    value = (value or "").strip()
    return Path(value).expanduser() if value else None


def current(environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings as the environment gives them now."""
    fast_path = environ.get(FAST_PATH_ENV, "auto").strip().lower()
    return Settings(
        models_dir=_folder(environ.get(MODELS_DIR_ENV)),
        index_dir=_folder(environ.get(INDEX_DIR_ENV)) or DEFAULT_INDEX_DIR,
        cache_dir=_folder(environ.get(CACHE_DIR_ENV)) or DEFAULT_CACHE_DIR,
        fast_path=fast_path if fast_path in FAST_PATH_MODES else "auto",
        hub_offline=environ.get(HUB_OFFLINE_ENV, "").strip() == "1",
        api_url=environ.get(API_URL_ENV, "").strip().rstrip("/") or None,
        torch_threads=_positive_int(environ.get(TORCH_THREADS_ENV), DEFAULT_TORCH_THREADS),
        public_url=environ.get(PUBLIC_URL_ENV, "").strip().rstrip("/") or None,
        allow_builds=_mode(environ.get(ALLOW_BUILDS_ENV, "")),
        space_id=environ.get(SPACE_ID_ENV, "").strip() or None,
    )


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int((value or "").strip())
    except ValueError:
        return default
    return number if number > 0 else default


def _mode(value: str) -> str:
    value = value.strip().lower()
    return "on" if value in _ON else "off" if value in _OFF else "auto"


def model_location_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables that say where models come from, to pass on to another process."""
    return {key: environ[key] for key in MODEL_LOCATION_ENV if key in environ}
