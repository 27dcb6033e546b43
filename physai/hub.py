"""Checkpoints on the Hugging Face Hub, through `huggingface_hub` (no hand-written client).

`resolve_checkpoint(src)`: a local checkpoint folder as it is; an `owner/name` that is not a local
folder is a Hub model repo, downloaded once (only the checkpoint's files) into huggingface_hub's
cache. Offline (`HF_HUB_OFFLINE=1`) that is a `CheckpointError` saying the Hub is offline, distinct
from a local folder that lacks `config.json`. `push_checkpoint(dir, repo_id)` uploads a checkpoint
folder (weights, config, normalization, model card) with `HfApi.upload_folder`.
"""

from __future__ import annotations

import os
from pathlib import Path

from physai.errors import CheckpointError

CHECKPOINT_FILES = ["config.json", "model.safetensors", "normalization.safetensors", "card.json", "README.md"]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(p and p not in (".", "..") for p in parts) and not text.startswith(("/", "~"))


def resolve_checkpoint(src: str | os.PathLike) -> Path:
    path = Path(src).expanduser()
    if path.exists() or not looks_like_repo_id(str(src)):
        return path  # a local folder (the loader says what it lacks), or a path that is not a repo id
    repo = str(src)
    if hub_offline():
        raise CheckpointError(f"checkpoint '{repo}' is not a local folder, and as a Hub repo id it cannot be "
                              f"downloaded: the Hub is offline (HF_HUB_OFFLINE=1)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo, allow_patterns=CHECKPOINT_FILES))
    except Exception as e:  # network, auth, missing repo: one clear error with the cause attached
        raise CheckpointError(f"checkpoint '{repo}' is not a local folder and could not be downloaded from the "
                              f"Hub ({type(e).__name__}: {e})") from e


def push_checkpoint(directory: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                    commit_message: str = "physai checkpoint") -> str:
    """Upload a checkpoint folder to the Hub model repo `repo_id` (created if missing); returns its URL."""
    from huggingface_hub import HfApi

    from physai.checkpoint import read_config

    d = Path(directory)
    read_config(d)  # a complete checkpoint, or a clear error before anything is uploaded
    if not looks_like_repo_id(repo_id):
        raise CheckpointError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    if hub_offline():
        raise CheckpointError(f"cannot push to '{repo_id}': the Hub is offline (HF_HUB_OFFLINE=1)")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(d), repo_type="model", commit_message=commit_message,
                      allow_patterns=CHECKPOINT_FILES)
    return str(url)
