"""Finding released weights in the Hugging Face cache (downloading them when online)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .config import TokenizerConfig
from .errors import WeightsNotFoundError


def hub_weights_path(config: TokenizerConfig) -> Path:
    """Local path of a preset's released checkpoint.

    The standard cache (`HF_HOME`, default `~/.cache/huggingface/hub`) is read first, with no
    network access (released files never change); otherwise `huggingface_hub.hf_hub_download`
    fetches the file. With `HF_HUB_OFFLINE=1` only the cache is read; when the Hub's host name does
    not resolve (a machine without network) the download is not attempted, instead of waiting
    through huggingface_hub's retries (about 25 s). Raises `WeightsNotFoundError` with the command
    that fetches the file when neither works.
    """
    if config.hub is None:
        raise WeightsNotFoundError(f"configuration {config.name or config.describe()} names no released weights")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    hub = config.hub
    cached = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision)
    if isinstance(cached, str):
        return Path(cached)
    try:
        unreachable = _unresolvable_endpoint()
        if unreachable:
            raise ConnectionError(unreachable)
        return Path(hf_hub_download(repo_id=hub.repo_id, filename=hub.filename, revision=hub.revision))
    except Exception as exc:  # offline, not cached, network or authorisation errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsNotFoundError(
            f"released weights for {config.name or 'this model'} ({hub.repo_id}/{hub.filename}) are not in the "
            f"Hugging Face cache and could not be downloaded ({type(exc).__name__}: {reason[:120]}); fetch them with "
            f"`huggingface-cli download {hub.repo_id} {hub.filename}` or pass the .ckpt path"
        ) from None


def _unresolvable_endpoint() -> str | None:
    """Why the Hugging Face endpoint cannot be reached, when its host name does not resolve and no
    proxy is configured (a proxy resolves names itself); None when a download is worth trying."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except OSError:
        return None
    return None
