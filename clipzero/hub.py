"""Finding pretrained weights in the local caches, and fetching them only when the hub can be reached.

open_clip alone asks the hub before it looks in its cache, and offline it retries for about 46 s before a bare
RuntimeError. Here the cache is consulted first (a cached model loads with no network at all); when a file is
missing, the hub is probed once with a short timeout, and an unreachable hub is a fast, clear
:class:`ModelUnavailableError`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

from .errors import ModelUnavailableError

__all__ = [
    "HUB_WEIGHTS",
    "OFFLINE_MODEL",
    "cached_hub_file",
    "fetch_hub_extras",
    "file_sha256",
    "files_digest",
    "hub_cache_dir",
    "hub_endpoint",
    "hub_offline",
    "offline_error",
    "probe",
    "require_hub_file",
    "require_url_file",
    "url_cache_dir",
    "weight_candidates",
]

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """A file's sha256 (hex), remembered by path, size and modification time: a file is read once per change."""
    stat = os.stat(path)
    return _file_sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def files_digest(*paths: str | os.PathLike[str]) -> str:
    """A short hash (16 hex digits) of several files' contents, in order: the id of weights on disk."""
    combined = hashlib.sha256()
    for path in paths:
        combined.update(file_sha256(path).encode())
    return combined.hexdigest()[:16]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "huggingface" / "hub"


def url_cache_dir() -> Path:
    """Where open_clip keeps weights downloaded from plain URLs."""
    return Path("~/.cache/clip").expanduser()


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


HUB_WEIGHTS = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def weight_candidates(hub: str) -> tuple[str, list[str]]:
    """The repository and the file names to try, best first, for an open_clip ``hf_hub`` entry.

    ``org/repo/`` means open_clip's default names (safetensors preferred); ``org/repo/file.bin`` means that file,
    with its safetensors twin tried first, as open_clip does.
    """
    repo, filename = os.path.split(hub)
    if not filename or filename == HUB_WEIGHTS[1]:
        return repo.rstrip("/"), list(HUB_WEIGHTS)
    stem, suffix = os.path.splitext(filename)
    return repo, ([stem + ".safetensors"] if suffix in (".bin", ".pth") else []) + [filename]


def cached_hub_file(repo_id: str, filenames: list[str]) -> Path | None:
    """The first of ``filenames`` present in the hub cache for ``repo_id`` (main revision), or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache_dir()))
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Try to reach ``url`` within ``timeout`` seconds, DNS included. Returns None if it answered, else why not."""
    result: list[str | None] = []

    def attempt() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                result.append(None)
        except urllib.error.HTTPError:
            result.append(None)  # the server answered; the status does not matter for reachability
        except Exception as exc:  # URLError, socket timeouts, SSL errors
            reason = getattr(exc, "reason", exc)
            result.append(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)  # DNS lookups ignore socket timeouts; the thread bounds them
    if not result:
        return f"no answer within {timeout:.0f} s"
    return result[0]


#: The model that always loads, with no network: it ships inside clipzero.
OFFLINE_MODEL = "clipzero-shapes"


def offline_error(spec: str, why: str, detail: str) -> ModelUnavailableError:
    """The one error for a model that is not here and cannot be fetched now.

    Its first line says that there is no network (``why``) and that ``--model clipzero-shapes`` works offline; the
    next lines say what is missing (``detail``) and how to fix it.
    """
    return ModelUnavailableError(
        f"model {spec!r} is not available offline: {why}; `--model {OFFLINE_MODEL}` works offline (it ships with "
        f"clipzero)\n  {detail}\n  {_advice()}"
    )


def _advice() -> str:
    return (
        "To fix: run once with internet access so the weights are cached; or set HF_ENDPOINT to a mirror you can "
        "reach; or pass local weights (ARCH:/path/to/weights.safetensors, or a directory holding "
        "open_clip_config.json and weights); or pick a model that is here (`clipzero models --cached`)."
    )


def require_hub(spec: str, repo_id: str, filenames: list[str]) -> None:
    """Raise the offline error for ``repo_id``'s files unless the hub can be reached now (HF_HUB_OFFLINE unset, and
    the endpoint answers within :data:`PROBE_TIMEOUT_S`)."""
    where = f"{repo_id} ({' or '.join(filenames)}) is not in the Hugging Face cache at {hub_cache_dir()}"
    if hub_offline():
        raise offline_error(spec, "no network (HF_HUB_OFFLINE is set)", where)
    endpoint = hub_endpoint()
    problem = probe(endpoint)
    if problem is not None:
        raise offline_error(spec, f"no network ({endpoint} cannot be reached: {problem})", where)


def require_url(spec: str, url: str) -> None:
    """Raise the offline error unless ``url`` (weights open_clip downloads from a plain address) answers now."""
    problem = probe(url)
    if problem is not None:
        target = url_cache_dir() / os.path.basename(url)
        raise offline_error(spec, f"no network ({url} cannot be reached: {problem})", f"{target} does not exist")


def require_hub_file(spec: str, repo_id: str, filenames: list[str]) -> Path:
    """A local path for the first available of ``filenames`` in ``repo_id``: from the cache, else downloaded.

    Raises:
        ModelUnavailableError: not cached, and offline or the hub cannot be reached or lacks the file.
    """
    found = cached_hub_file(repo_id, filenames)
    if found is not None:
        return found
    cache = hub_cache_dir()
    require_hub(spec, repo_id, filenames)
    endpoint = hub_endpoint()
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, cache_dir=str(cache), endpoint=endpoint))
        except Exception as exc:  # EntryNotFoundError, RepositoryNotFoundError, network errors
            errors.append(f"{filename}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise ModelUnavailableError(f"model {spec!r}: could not download from {endpoint}/{repo_id}: {'; '.join(errors)}")


def fetch_hub_extras(repo_id: str, folder: Path, patterns: list[str]) -> None:
    """Best effort: bring tokenizer files of an hf-hub repo into its cached snapshot when the hub is reachable."""
    if hub_offline() or probe(hub_endpoint()) is not None:
        return
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, allow_patterns=patterns, cache_dir=str(hub_cache_dir()), endpoint=hub_endpoint())
    except Exception:
        pass  # the caller reports a missing tokenizer with its own message


def require_url_file(spec: str, url: str) -> Path:
    """A local path for weights served from a plain URL: open_clip's cache, else downloaded."""
    target = url_cache_dir() / os.path.basename(url)
    if target.is_file():
        return target
    require_url(spec, url)
    from open_clip.pretrained import download_pretrained_from_url

    try:
        return Path(download_pretrained_from_url(url, cache_dir=str(url_cache_dir())))
    except Exception as exc:
        raise ModelUnavailableError(f"model {spec!r}: download from {url} failed: {exc}") from exc
