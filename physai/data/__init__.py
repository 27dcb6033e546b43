"""Data: recording expert/DAgger episodes into LeRobotDataset v3 and loading them fast for training.

`physai.data.collect.collect` records episodes from a physai env (crash-safe appends through
`physai.data.writer.DatasetWriter`); `physai.data.format` defines the feature names and the
`meta/physai.json` spec record; `physai.data.frames` loads a whole dataset into memory once;
`physai.data.loader.MultiEmbodimentLoader` mixes datasets of several embodiments into per-embodiment
batches with cached normalization stats (`physai.bench.data` compares it against LeRobot's loader).
Submodules are imported lazily so `import physai.data` stays cheap (LeRobot takes seconds to import).
"""

from __future__ import annotations

__all__ = ["MultiEmbodimentLoader", "load_frames"]  # the recorder: physai.data.collect.collect


def __getattr__(name: str):
    if name == "MultiEmbodimentLoader":
        from physai.data.loader import MultiEmbodimentLoader

        return MultiEmbodimentLoader
    if name == "load_frames":
        from physai.data.frames import load_frames

        return load_frames
    raise AttributeError(f"module 'physai.data' has no attribute {name!r}")
