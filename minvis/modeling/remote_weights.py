"""``MODEL.WEIGHTS`` given as a URL: ``file://`` names a local file; ``http(s)://`` is downloaded
once into detectron2's cache folder (``$FVCORE_CACHE``), one cached file per exact URL (scheme,
host, port, path and query). A download has a timeout per read, an overall deadline and a
minimum rate (iopath has none of them, so a silent or trickling server would hang the run), and
is kept only if it starts as a checkpoint does; errors are one line naming the URL.
"""

import hashlib
import os
import time
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from iopath.common.file_io import file_lock, get_cache_dir

DOWNLOAD_TIMEOUT_S = 60.0  # seconds without progress on a connection before giving up
DOWNLOAD_DEADLINE_S = 4 * 3600.0  # for the whole download
MIN_RATE_B_S = 10_000.0  # bytes per second, averaged over each RATE_WINDOW_S
RATE_WINDOW_S = 60.0
URL_SCHEMES = ("http://", "https://", "file://")
_CHUNK = 1 << 20
_ZIP = b"PK\x03\x04"  # torch.save's archive
_PICKLE = tuple(b"\x80" + bytes([protocol]) for protocol in range(2, 6))  # detectron2 .pkl, legacy .pth
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")


class WeightsDownloadError(OSError):
    """A checkpoint URL that cannot be downloaded (an ``OSError``, like a missing file)."""


def is_url(path: str) -> bool:
    return path.startswith(URL_SCHEMES)


def local_file(path: str) -> str | None:
    """The local file ``MODEL.WEIGHTS`` names (a path or a ``file://`` URL); None for a download."""
    if not path.startswith("file://"):
        return None if "://" in path else path
    parts = urlsplit(path)
    if parts.netloc not in ("", "localhost"):
        raise WeightsDownloadError(f"{path} (MODEL.WEIGHTS): file:// URLs of another host are not supported")
    return urllib.request.url2pathname(parts.path)


def cache_path(url: str) -> Path:
    """Where ``url`` is cached: one folder per exact URL (the fragment aside), the file's own name."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}[scheme]
    key = f"{scheme}://{parts.hostname}:{port}{parts.path}?{parts.query}"
    name = PurePosixPath(unquote(parts.path)).name or "weights"
    return Path(get_cache_dir(), "minvis_weights", hashlib.sha256(key.encode()).hexdigest()[:16], name)


def _not_a_checkpoint(head: bytes, name: str) -> str | None:
    """Why a file starting with ``head`` is no checkpoint (a ``.pkl`` is a pickle, a ``.pth`` a
    zip archive or a legacy pickle), or None."""
    if head.startswith(_PICKLE) or (head.startswith(_ZIP) and not name.endswith(".pkl")):
        return None
    shown = head[:40].decode("utf-8", "replace").replace("\n", " ").strip()
    return f"the server sent no checkpoint (the response starts with {shown!r})"


def _download(
    url: str, dest: Path, timeout_s: float, deadline_s: float, min_rate: float, window_s: float
) -> None:
    """Download ``url`` to ``dest`` (as ``dest.partial``, renamed when complete and checked)."""
    partial = dest.with_name(dest.name + ".partial")
    start = window_start = time.monotonic()
    received = window_bytes = 0
    head = b""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            content_type = response.headers.get_content_type()
            if content_type.startswith(_TEXT_TYPES):
                raise WeightsDownloadError(f"the server sent {content_type}, not a checkpoint")
            while chunk := response.read1(_CHUNK):  # what has arrived: a trickle is seen as one
                out.write(chunk)
                head = head if len(head) >= 64 else head + chunk[:64]
                now = time.monotonic()
                received, window_bytes = received + len(chunk), window_bytes + len(chunk)
                if now - start > deadline_s:
                    raise WeightsDownloadError(f"the download did not finish within {deadline_s:g} s")
                if now - window_start >= window_s:
                    if window_bytes < min_rate * (now - window_start):
                        rate = window_bytes / (now - window_start)
                        raise WeightsDownloadError(f"too slow: {rate:.0f} bytes/s, below {min_rate:.0f}")
                    window_start, window_bytes = now, 0
            if response.length:  # bytes announced by Content-Length that never came
                raise WeightsDownloadError(
                    f"the connection closed after {received} of {received + response.length} bytes"
                )
        problem = _not_a_checkpoint(head, dest.name)
        if problem:
            raise WeightsDownloadError(problem)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def local_weights_path(
    url: str,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
    *,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
    min_rate: float = MIN_RATE_B_S,
    rate_window_s: float = RATE_WINDOW_S,
) -> str:
    """The local file of the checkpoint at ``url``: a ``file://`` URL's file, else the cached
    download, downloaded on first use (``timeout_s`` per connection attempt and per read)."""
    path = local_file(url)
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path} (MODEL.WEIGHTS {url}) does not exist")
        return path
    try:
        dest = cache_path(url)
        with file_lock(str(dest)):  # one download when several processes start at once
            if not dest.is_file():
                _download(url, dest, timeout_s, deadline_s, min_rate, rate_window_s)
    except (OSError, ValueError) as error:  # urllib's URLError / HTTPError, timeouts, refused connections
        reason = getattr(error, "reason", None) or error
        raise WeightsDownloadError(
            f"cannot download {url} (MODEL.WEIGHTS): {reason}. Check the URL and the network, "
            "or download the file and pass its path."
        ) from None
    return str(dest)
