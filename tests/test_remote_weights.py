"""MODEL.WEIGHTS as an http(s) URL: served from a local HTTP server, downloaded once into
detectron2's cache, loaded with the safe loaders; unreachable URLs fail fast with one line."""

import datetime
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from minvis.modeling import CheckpointLoadError, MinVISCheckpointer
from minvis.modeling.remote_weights import WeightsDownloadError


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
    assert (cache / "models" / "minvis.pth").read_bytes() == (folder / "minvis.pth").read_bytes()


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
