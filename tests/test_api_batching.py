"""Micro-batching: concurrent callers share forward passes and each gets exactly its own vectors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from core.batching import MicroBatcher
from core.models import CLIP_KEY, MULTILINGUAL_KEY, get_encoder


def wait_for(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_requests_that_queue_during_a_pass_share_the_next_one():
    passes: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def run(items: list[int], batch_size: int) -> np.ndarray:
        passes.append(list(items))
        first_started.set()
        release.wait()
        return np.array([[item, item * 10] for item in items], dtype=np.float32)

    batcher = MicroBatcher(run, max_batch=8, wait_s=0.0)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher, [1], 1)
        first_started.wait()
        later = [pool.submit(batcher, [n, n + 100], 1) for n in range(2, 6)]
        wait_for(lambda: len(batcher._queue) == 4)
        release.set()
        results = [first.result(), *(future.result() for future in later)]
    assert passes == [[1], [2, 102, 3, 103, 4, 104, 5, 105]]
    assert results[0].tolist() == [[1, 10]]
    for n, vectors in zip(range(2, 6), results[1:]):
        assert vectors.tolist() == [[n, n * 10], [n + 100, (n + 100) * 10]]


def test_a_failed_pass_fails_each_of_its_callers_and_the_batcher_goes_on():
    def run(items: list[str], batch_size: int) -> np.ndarray:
        if "bad" in items:
            raise ValueError("cannot encode")
        return np.ones((len(items), 2), dtype=np.float32)

    batcher = MicroBatcher(run)
    with pytest.raises(ValueError, match="cannot encode"):
        batcher(["bad"], 1)
    assert batcher(["good", "fine"], 1).shape == (2, 2)


def test_a_batch_is_cut_at_max_batch():
    sizes: list[int] = []
    gate = threading.Event()

    def run(items: list[int], batch_size: int) -> np.ndarray:
        sizes.append(len(items))
        gate.wait()
        return np.zeros((len(items), 1), dtype=np.float32)

    batcher = MicroBatcher(run, max_batch=3, wait_s=0.0)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher, [0], 1)]
        wait_for(lambda: sizes == [1])
        futures += [pool.submit(batcher, [n], 1) for n in range(7)]
        wait_for(lambda: len(batcher._queue) == 7)
        gate.set()
        for future in futures:
            future.result()
    assert sizes == [1, 3, 3, 1]


@pytest.mark.parametrize("key", [CLIP_KEY, MULTILINGUAL_KEY])
def test_concurrent_encodes_equal_one_at_a_time_encodes(tiny_models, fashion_catalog, key):
    encoder = get_encoder(key)
    texts = [f"{colour} {thing}" for colour in ("red", "navy blue", "black") for thing in ("dress", "leather shoes for men", "watch")]
    texts += ["a much longer description of a summer outfit with a hat, sandals and a small bag"] * 2
    images = [Image.open(item.image_path).convert("RGB") for item in fashion_catalog.items[:6]]
    alone_texts = np.stack([encoder._encode_texts_now([text], 64)[0] for text in texts])
    tower = encoder.image_encoder
    alone_images = np.stack([tower._encode_images_now([image], 32)[0] for image in images])
    with ThreadPoolExecutor(16) as pool:
        text_jobs = [pool.submit(encoder.encode_texts, [text]) for text in texts]
        image_jobs = [pool.submit(encoder.encode_images, [image]) for image in images]
        pair = pool.submit(encoder.encode_texts, texts[:2])
        together_texts = np.concatenate([job.result() for job in text_jobs])
        together_images = np.concatenate([job.result() for job in image_jobs])
    assert np.abs(together_texts - alone_texts).max() <= 1e-5
    assert np.abs(together_images - alone_images).max() <= 1e-5
    assert np.abs(pair.result() - alone_texts[:2]).max() <= 1e-5
