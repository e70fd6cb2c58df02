"""MODEL.WEIGHTS as an http(s) URL: served from local HTTP servers, downloaded once per exact URL
into detectron2's cache folder, loaded with the safe loaders; unreachable, slow or wrong answers
(an HTML page) fail in one line naming the URL and leave nothing cached. file:// URLs are files."""

import contextlib
import datetime
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from minvis.modeling import CheckpointLoadError, MinVISCheckpointer
from minvis.modeling.remote_weights import WeightsDownloadError, cache_path, local_weights_path


class CountingServer:
    """``http://127.0.0.1:<ephemeral port>/`` serving ``folder``; counts GET requests per path."""

    def __init__(self, folder: Path) -> None:
        self.hits: dict[str, int] = {}
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "CountingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FVCORE_CACHE", str(folder))  # where detectron2's PathManager caches URLs
    return folder


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[CountingServer, Path]]:
    folder = tmp_path / "www"
    (folder / "models").mkdir(parents=True)
    with CountingServer(folder) as server:
        yield server, folder / "models"


def test_url_is_downloaded_once_and_loaded(served, cache: Path) -> None:
    server, folder = served
    source = nn.Linear(3, 2)
    torch.save({"model": source.state_dict(), "iteration": 7}, folder / "minvis.pth")
    url = f"{server.url}/models/minvis.pth"
    for _ in range(2):
        target = nn.Linear(3, 2)
        extra = MinVISCheckpointer(target, strict=True).load(url)
        assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)
        assert extra["iteration"] == 7
    assert server.hits == {"/models/minvis.pth": 1}  # the second load read the cache
    assert cache_path(url).read_bytes() == (folder / "minvis.pth").read_bytes()
    assert cache_path(url).is_relative_to(cache)


def test_downloaded_files_go_through_the_safe_loader(served, cache: Path) -> None:
    server, folder = served
    torch.save({"model": {}, "made": datetime.datetime(2022, 1, 1)}, folder / "unsafe.pth")
    with pytest.raises(CheckpointLoadError, match="unsafe.pth"):
        MinVISCheckpointer(nn.Linear(3, 2)).load(f"{server.url}/models/unsafe.pth")


def test_missing_file_on_the_server(served, cache: Path) -> None:
    server, _ = served
    url = f"{server.url}/models/nothing.pth"
    with pytest.raises(WeightsDownloadError, match=r"cannot download .*nothing.pth \(MODEL.WEIGHTS\)") as e:
        MinVISCheckpointer(nn.Linear(3, 2)).load(url)
    assert "\n" not in str(e.value) and "not found" in str(e.value).lower()
    for left in ("nothing.pth", "nothing.pth.tmp"):  # nothing half-written left in the cache
        assert not (cache / "models" / left).exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_url_is_a_one_line_error(cache: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/model.pth"  # nothing listens there
    with pytest.raises(WeightsDownloadError, match=r"cannot download http://127.0.0.1:\d+/model.pth") as e:
        MinVISCheckpointer(nn.Linear(3, 2)).load(url)
    assert "\n" not in str(e.value)


def test_silent_server_times_out_instead_of_hanging(cache: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/model.pth"
        checkpointer = MinVISCheckpointer(nn.Linear(3, 2))
        checkpointer.download_timeout_s = 0.5
        start = time.monotonic()
        with pytest.raises(WeightsDownloadError, match="timed out"):
            checkpointer.load(url)
    assert time.monotonic() - start < 10


@contextlib.contextmanager
def answering(respond: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` answering every GET with ``respond(handler)``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with contextlib.suppress(ConnectionError):  # the client gave up
                respond(self)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes, content_type: str, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


def trickle(handler: BaseHTTPRequestHandler) -> None:
    """A zip's first bytes, then one byte every 50 ms, for at most 20 s (of the 1 MB announced)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(10**6))
    handler.end_headers()
    handler.wfile.write(b"PK\x03\x04")
    for _ in range(400):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.05)


def test_the_same_path_on_two_servers_is_two_checkpoints(tmp_path, cache: Path) -> None:
    sources = [nn.Linear(3, 2) for _ in range(2)]
    urls = []
    with contextlib.ExitStack() as stack:
        for index, source in enumerate(sources):
            folder = tmp_path / f"www{index}"
            (folder / "models").mkdir(parents=True)
            torch.save({"model": source.state_dict()}, folder / "models" / "minvis.pth")
            urls.append(f"{stack.enter_context(CountingServer(folder)).url}/models/minvis.pth")
        urls.append(urls[0] + "?version=2")  # another query: another file (served the same here)
        for url, source in zip(urls, [*sources, sources[0]]):
            target = nn.Linear(3, 2)
            MinVISCheckpointer(target, strict=True).load(url)
            assert torch.equal(target.weight, source.weight), url
    assert len({cache_path(url) for url in urls}) == 3


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<!DOCTYPE html><html>Sign in to download</html>", "text/html", "the server sent text/html"),
        (b"<!DOCTYPE html><html>Sign in</html>", "application/octet-stream", "starts with '<!DOCTYPE html>"),
        (b"PK\x03\x04 a zip is not a pickle", "application/octet-stream", "starts with 'PK"),
    ],
    ids=["html", "html-as-binary", "zip-as-pkl"],
)
def test_a_response_that_is_no_checkpoint_is_not_cached(cache: Path, body, content_type, expected) -> None:
    with answering(lambda handler: send(handler, body, content_type)) as server:
        url = f"{server}/models/model_final.pkl"
        for _ in range(2):  # nothing cached: the second load asks the server again
            with pytest.raises(WeightsDownloadError) as error:
                MinVISCheckpointer(nn.Linear(3, 2)).load(url)
            message = str(error.value)
            assert message.startswith(f"cannot download {url} (MODEL.WEIGHTS): ") and expected in message
            assert "\n" not in message and str(cache) not in message
    assert not [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_a_redirect_is_followed_and_cached_under_the_url_asked_for(served, cache: Path) -> None:
    server, folder = served
    source = nn.Linear(3, 2)
    torch.save({"model": source.state_dict()}, folder / "minvis.pth")

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"{server.url}/models/minvis.pth")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with answering(redirect) as mirror:
        url = f"{mirror}/latest/minvis.pth"
        target = nn.Linear(3, 2)
        MinVISCheckpointer(target, strict=True).load(url)
    assert torch.equal(target.weight, source.weight)
    assert cache_path(url).read_bytes() == (folder / "minvis.pth").read_bytes()


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"deadline_s": 1.0}, "did not finish within 1 s"),
        ({"min_rate": 1000.0, "rate_window_s": 0.5}, "too slow"),
    ],
    ids=["deadline", "min-rate"],
)
def test_a_trickling_server_fails_instead_of_hanging(cache: Path, limits, expected) -> None:
    with answering(trickle) as server:
        url = f"{server}/model.pth"
        start = time.monotonic()
        with pytest.raises(
            WeightsDownloadError, match=rf"cannot download {url} \(MODEL.WEIGHTS\): .*{expected}"
        ):
            local_weights_path(url, timeout_s=5.0, **limits)
        assert time.monotonic() - start < 5
    assert not cache_path(url).exists()


def test_a_connection_closed_early_is_not_cached(cache: Path) -> None:
    with answering(
        lambda handler: send(handler, b"PK\x03\x04" + bytes(96), "application/zip", 1000)
    ) as server:
        url = f"{server}/model.pth"
        with pytest.raises(WeightsDownloadError, match="the connection closed after 100 of 1000 bytes"):
            local_weights_path(url)
    assert not cache_path(url).exists()


def test_file_urls_name_local_files(tmp_path: Path) -> None:
    source = nn.Linear(3, 2)
    path = tmp_path / "my weights.pth"
    torch.save({"model": source.state_dict()}, path)
    target = nn.Linear(3, 2)
    MinVISCheckpointer(target, strict=True).load(path.as_uri())  # file:///.../my%20weights.pth
    assert torch.equal(target.weight, source.weight)
    with pytest.raises(FileNotFoundError, match="nothing.pth .*does not exist"):
        MinVISCheckpointer(nn.Linear(3, 2)).load((tmp_path / "nothing.pth").as_uri())
