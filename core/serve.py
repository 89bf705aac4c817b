"""The API on Ray Serve: the same FastAPI app as an ingress deployment, the models as encoder deployments.

    python -m core.api --engine ray [--ray-address auto] [--replicas N]
    serve run deploy/serve.yaml          # or: serve deploy deploy/serve.yaml, on a cluster

The ingress replicas hold the catalogs (index files, hnswlib, ranking) and run core.api's app;
each model key is an encoder deployment whose replicas batch concurrent requests into one
forward pass (`@serve.batch`) and scale with the requests in flight (`target_ongoing_requests`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import ray
from PIL import Image
from ray import serve
from ray.serve.handle import DeploymentHandle

import core
from core import settings
from core.api_app import create_app
from core.devices import set_cpu_threads
from core.index import read_manifest
from core.models import ModelLoadError, ModelSpec, get_encoder
from core.search import SearchEngine
from core.service import SearchService, catalog_folders, searchable_models

APP_NAME = "vitrine"
# Requests one encoder replica takes at once: a batch can be no larger. The autoscaler adds a
# replica when more than TARGET_ONGOING are in flight per replica (one full batch waiting behind another).
MAX_BATCH = 16
BATCH_WAIT_S = 0.003
TARGET_ONGOING = 2 * MAX_BATCH
INGRESS_ONGOING = 64


@serve.deployment(max_ongoing_requests=4 * MAX_BATCH)
class ModelEncoder:
    """One model key's towers in a replica; concurrent requests' texts (or photos) share a forward pass."""

    def __init__(self, key: str, torch_threads: int) -> None:
        set_cpu_threads(torch_threads)
        self.encoder = get_encoder(key)

    def facts(self) -> tuple[ModelSpec, int, np.ndarray]:
        """What the ingress checks against each index (core/weights.py): the key's spec, dim and probe."""
        return self.encoder.spec, self.encoder.dim, self.encoder.probe()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.encoder.encode_texts(texts))

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def encode_images(self, images: list[Image.Image]) -> list[np.ndarray]:
        return list(self.encoder.encode_images(images))


class RemoteEncoder:
    """Stands in for core.models.Encoder in the ingress: the same calls, answered by a deployment."""

    def __init__(self, handle: DeploymentHandle, facts: tuple[ModelSpec, int, np.ndarray]) -> None:
        self.spec, self.dim, self._probe = facts
        self._handle = handle
        self.image_encoder: RemoteEncoder = self

    def probe(self) -> np.ndarray:
        return self._probe

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        replies = [self._handle.encode_texts.remote(text) for text in texts]
        return np.stack([reply.result() for reply in replies]).astype(np.float32).reshape(len(texts), self.dim)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        tower = self.image_encoder
        replies = [tower._handle.encode_images.remote(image) for image in images]
        return np.stack([reply.result() for reply in replies]).astype(np.float32).reshape(len(images), tower.dim)


@serve.deployment(max_ongoing_requests=INGRESS_ONGOING, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    """core.api's app over the catalogs, its engines encoding through the encoder deployments."""

    async def __init__(self, folders: list[str], encoders: dict[str, DeploymentHandle]) -> None:
        remote = {key: RemoteEncoder(handle, await handle.facts.remote()) for key, handle in encoders.items()}
        for encoder in remote.values():
            encoder.image_encoder = remote.get(encoder.spec.image_tower, encoder)

        def deployed(key: str, _device: str) -> RemoteEncoder:
            if key not in remote:
                raise ModelLoadError(f"Model '{key}' has no encoder deployment in this Serve application.")
            return remote[key]

        self.service = SearchService(
            [Path(folder) for folder in folders], open_engine=lambda folder: SearchEngine(folder, load_encoder=deployed)
        )

    def __serve_build_asgi_app__(self):
        return create_app(self.service)


def application(
    folders: Sequence[Path], replicas: int = 1, max_replicas: int | None = None, encoder_cpus: float = 1.0
) -> serve.Application:
    """The bound app: an encoder deployment per model key the catalogs can be searched with, and the ingress."""
    towers = {read_manifest(folder).image_entry.encoder for folder in folders}
    keys = sorted({key for tower in towers for key in searchable_models(tower)})
    threads = settings.current().torch_threads
    autoscaling = {
        "min_replicas": replicas,
        "initial_replicas": replicas,
        "max_replicas": max(replicas, max_replicas or replicas),
        "target_ongoing_requests": TARGET_ONGOING,
    }
    encoders = {
        key: ModelEncoder.options(
            name=f"encoder-{key}", autoscaling_config=autoscaling, ray_actor_options={"num_cpus": encoder_cpus}
        ).bind(key, threads)
        for key in keys
    }
    return Ingress.bind([str(folder) for folder in folders], encoders)


def build_app(args: dict) -> serve.Application:
    """The application builder `serve run` / `serve deploy` call (deploy/serve.yaml's `args`)."""
    index = args.get("index", [str(settings.current().index_dir)])
    return application(
        catalog_folders([Path(path) for path in ([index] if isinstance(index, str) else index)]),
        replicas=int(args.get("replicas", 1)),
        max_replicas=int(args["max_replicas"]) if "max_replicas" in args else None,
        encoder_cpus=float(args.get("encoder_cpus", 1.0)),
    )


def start(
    folders: Sequence[Path], host: str, port: int, replicas: int = 1, max_replicas: int | None = None,
    encoder_cpus: float = 1.0,
) -> None:
    """Deploy the app on the Ray this process is connected to, serving HTTP at host:port."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(folders, replicas, max_replicas, encoder_cpus), name=APP_NAME, route_prefix="/")


def run(
    folders: Sequence[Path], host: str, port: int, address: str | None, replicas: int, max_replicas: int | None
) -> int:
    """`python -m core.api --engine ray`: connect (or start a local Ray), deploy, serve until Ctrl-C."""
    env = {**settings.model_location_env(), "TOKENIZERS_PARALLELISM": "false"}
    code = {"py_modules": [os.path.dirname(core.__file__)], "env_vars": env}
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, runtime_env=code)
    except (ConnectionError, RuntimeError, ValueError) as err:
        print(f"error: could not start or reach Ray at {address or 'a local Ray'}: {err}", file=sys.stderr)
        return 2
    try:
        start(folders, host, port, replicas, max_replicas)
        print(f"Vitrine API on Ray Serve at http://{host}:{port} (docs at /docs); Ctrl-C stops it.", file=sys.stderr)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop request also undeploys
        while True:  # the deployment lives in Ray; this process only keeps it up
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
