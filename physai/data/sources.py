"""Where a recipe's data comes from: a physai env id (recorded with its family's expert) or a LeRobot
dataset given by path or Hub repo id (trained on as it is, no simulator needed).

`data.datasets` entries are `(env id, episodes, weight[, recording overrides])` for envs and
`(dataset, weight)` for datasets. A dataset is a local folder holding `meta/info.json` (physai's own
recordings, or anything LeRobot recorded or edited), else a Hub repo id `owner/name`, downloaded
once under `<data.root>/hub/` with `huggingface_hub` (offline, that is a `DatasetError` that says
so, distinct from a local folder that is not a dataset).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from physai.errors import ConfigError, DatasetError
from physai.hub import hub_offline, looks_like_repo_id
from physai.sim.family import families

HUB_DIR = "hub"


def is_env_id(source: Any) -> bool:
    """Whether a body family provides `source` as a gymnasium env id."""
    return isinstance(source, str) and any(source in f.env_ids or f.owns(source) for f in families())


def is_dataset_entry(entry: tuple) -> bool:
    return not is_env_id(entry[0])


def resolve_dataset(source: str | os.PathLike, root: str | Path = "data") -> Path:
    """The local folder of a dataset entry's source: the path itself, or a Hub dataset's download."""
    from physai.data.format import is_dataset

    path = Path(source).expanduser()
    if is_dataset(path):
        return path.absolute()
    text = str(source)
    if path.exists():
        raise ConfigError(f"data.datasets: '{text}' exists but is not a LeRobot dataset (no meta/info.json)")
    if not looks_like_repo_id(text):
        raise ConfigError(f"data.datasets: '{text}' is neither a physai env id, a local LeRobot dataset, "
                          f"nor a Hub repo id (owner/name)")
    local = Path(root) / HUB_DIR / text.replace("/", "__")
    if is_dataset(local):
        return local.absolute()
    if hub_offline():
        raise DatasetError(f"data.datasets: '{text}' is not a local folder, and the Hub is offline "
                           f"(HF_HUB_OFFLINE=1): download it first, or pass its local path")
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id=text, repo_type="dataset", local_dir=local)
    except Exception as e:  # network, auth, missing repo: one clear error, the cause attached
        raise DatasetError(f"data.datasets: could not download the Hub dataset '{text}' "
                           f"({type(e).__name__}: {e})") from e
    if not is_dataset(local):
        raise DatasetError(f"data.datasets: the Hub repo '{text}' is not a LeRobot dataset (no meta/info.json)")
    return local.absolute()


def dataset_entry_spec(source: str | os.PathLike, root: str | Path = "data"):
    """The `EmbodimentSpec` of a dataset entry's data (stored, registered by robot_type, or inferred)."""
    from physai.data.format import dataset_spec

    return dataset_spec(resolve_dataset(source, root))[0]
