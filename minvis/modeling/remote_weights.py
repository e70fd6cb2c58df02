"""``MODEL.WEIGHTS`` given as an ``http(s)://`` URL: downloaded once into detectron2's
``PathManager`` cache (``$FVCORE_CACHE``), with a timeout (iopath sets none, so an unreachable
server would hang the run) and one-line errors naming the URL.
"""

import contextlib
import socket
from collections.abc import Iterator

from detectron2.utils.file_io import PathManager

DOWNLOAD_TIMEOUT_S = 60.0  # seconds without progress on a connection before giving up
URL_SCHEMES = ("http://", "https://")


class WeightsDownloadError(OSError):
    """A checkpoint URL that cannot be downloaded (an ``OSError``, like a missing file)."""


def is_url(path: str) -> bool:
    return path.startswith(URL_SCHEMES)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Set the default timeout of new sockets (urllib's, as iopath opens them) meanwhile."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def local_weights_path(url: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> str:
    """The cached local copy of the checkpoint at ``url``, downloaded on first use
    (``timeout_s`` per connection attempt and per read)."""
    try:
        with _socket_timeout(timeout_s):
            return PathManager.get_local_path(url)
    except OSError as error:  # urllib's URLError / HTTPError, timeouts, refused connections
        reason = getattr(error, "reason", None) or error
        raise WeightsDownloadError(
            f"cannot download {url} (MODEL.WEIGHTS): {reason}. Check the URL and the network, "
            "or download the file and pass its path."
        ) from None
