"""The index builder's pipeline: read -> encode -> write stages, driven by a swappable executor.

    reader.py       catalog rows -> decoded, preprocessed pixels + thumbnails (worker processes)
    encode_stage.py pixels and captions -> unit vectors on the device (autocast, pinned memory);
                    EncodePlan says which models run where, EncodeStage runs them (each through
                    core.models.Encoder, the loaded model of one key)
    writer.py       vectors + row records -> one shard folder on disk, written atomically
    executor.py     what drives the three stages: the Executor contract, LocalExecutor (DataLoader workers)
    ray_executor.py RayExecutor: the same stages as Ray Data reader tasks and an encode actor pool
    work.py         the resumable work folder: keyed by the build arguments, locked, shards
    assemble.py     finished shards -> thumbnails, items table, hnswlib files, manifest, swap
    progress.py     the bar, the on_progress callback and the per-stage clocks
    thumbnails.py   the small WebP beside the index that the result grid shows

Each stage is a plain object or function over plain data, so another executor can run
it elsewhere (a Ray Data task, an actor) without the others coming along.
"""


class BuildError(RuntimeError):
    """A build that cannot start or go on as asked (device, lock); the message says what to do."""
