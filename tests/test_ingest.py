"""`jestfilter ingest`: img2dataset's real downloader against a loopback HTTP server of Fashion-MNIST files."""

import functools
import http.server
import json
import signal
import struct
import threading
import time
import zlib

import polars as pl
import pytest
import webdataset as wds
from PIL import Image

from jestfilter.cli import main
from jestfilter.datasets.captions import CLASS_NOUNS
from jestfilter.datasets.fashion_mnist import load_fashion_mnist
from jestfilter.datasets.ingest import parse_option


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def image_site(tmp_path_factory):
    """Serve real Fashion-MNIST pictures (PNG and JPEG, one enlarged) on 127.0.0.1; url → (caption, size)."""
    site = tmp_path_factory.mktemp("site")
    fashion = load_fashion_mnist()
    files = {}
    for i in range(5):
        image = Image.fromarray(fashion.test_images[i])
        name, size = f"item{i}.{'png' if i % 2 else 'jpg'}", (28, 28)
        if i == 4:
            image, size = image.resize((128, 96)), (85, 64)  # shorter side scaled down to 64
        image.save(site / name)
        files[name] = (f"product shot: {CLASS_NOUNS[fashion.test_labels[i]][0]}", size)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {f"{base}/{name}": value for name, value in files.items()}, f"{base}/missing.png"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def loopback_only(monkeypatch):
    # img2dataset's workers inherit the environment: never route loopback through a proxy
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def test_ingest_downloads_into_shards_with_captions_and_reports_the_404(image_site, tmp_path, capsys, loopback_only):
    served, missing = image_site
    urls = tmp_path / "urls.parquet"
    rows = [(url, caption) for url, (caption, _) in served.items()] + [(missing, "a photo of nothing")]
    pl.DataFrame(rows, schema=["url", "caption"], orient="row").write_parquet(urls)
    out = tmp_path / "shards"

    ctrl_c = signal.getsignal(signal.SIGINT)
    assert main(["ingest", str(urls), "--out", str(out), "--samples-per-shard", "4", "--threads", "2",
                 "--allow-private-urls"]) == 0  # the test site is on 127.0.0.1
    assert signal.getsignal(signal.SIGINT) is ctrl_c  # the caller's Ctrl-C handling is left as it was

    stdout = capsys.readouterr().out
    assert "6 urls: 5 downloaded, 1 failed to download, 0 failed to resize" in stdout
    assert "404" in stdout
    assert f"{out}/{{00000..00001}}.tar" in stdout
    got = {}
    shards = wds.WebDataset(f"{out}/{{00000..00001}}.tar", shardshuffle=False)
    for image, caption, meta in shards.decode("pil").to_tuple("jpg", "txt", "json"):
        got[meta["url"]] = (caption, image.size)
    assert got == served
    assert json.loads((out / "sizes.json").read_text()) == {"00000.tar": 4, "00001.tar": 1}  # the 404 is the last url
    status = pl.read_parquet(list(out.glob("*.parquet"))).filter(pl.col("url") == missing)
    assert status["status"].to_list() == ["failed_to_download"]


def test_a_second_run_resumes_without_downloading_twice(image_site, tmp_path, capsys, loopback_only):
    served, _ = image_site
    urls = tmp_path / "urls.csv"
    pl.DataFrame({"link": list(served), "alt": [c for c, _ in served.values()]}).write_csv(urls)
    args = ["ingest", str(urls), "--out", str(tmp_path / "out"), "--url-col", "link", "--caption-col", "alt",
            "--i2d", "retries=1", "--i2d", "resize_mode='keep_ratio'", "--allow-private-urls"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    shard = tmp_path / "out" / "00000.tar"
    written = shard.stat().st_mtime_ns
    assert main(args) == 0  # every shard has its _stats.json: nothing to redo
    assert shard.stat().st_mtime_ns == written
    assert capsys.readouterr().out.splitlines()[-2:] == first.splitlines()[-2:]
    assert sum(1 for _ in wds.WebDataset(str(shard))) == len(served)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: [str(d / "nope.parquet")], "url list not found"),
        (lambda d: [str(d / "urls.parquet"), "--input-format", "xml"], "unknown input format 'xml'"),
        (lambda d: [str(d / "urls.dat")], "cannot tell the input format"),
        (lambda d: [str(d / "urls.parquet"), "--caption-col", "text"], "no column 'text'"),
        (lambda d: [str(d / "urls.parquet"), "--i2d", "image_sise=3"], "no option 'image_sise'"),
        (lambda d: [str(d / "urls.parquet"), "--i2d", "retries"], "use KEY=VALUE"),
        (lambda d: [str(d / "urls.parquet"), "--processes", "0"], "processes must be positive"),
    ],
)
def test_bad_arguments_fail_fast_with_one_line(tmp_path, capsys, make_args, message):
    pl.DataFrame({"url": ["http://127.0.0.1:9/a.jpg"], "caption": ["x"]}).write_parquet(tmp_path / "urls.parquet")
    (tmp_path / "urls.dat").write_text("http://127.0.0.1:9/a.jpg\n")
    assert main(["ingest", *make_args(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_img2dataset_options_are_read_as_python_literals():
    assert parse_option("retries=2") == ("retries", 2)
    assert parse_option("resize_mode=center_crop") == ("resize_mode", "center_crop")
    assert parse_option("disallowed_header_directives=[]") == ("disallowed_header_directives", [])
    assert parse_option("max_aspect_ratio=2.5") == ("max_aspect_ratio", 2.5)


def test_only_http_urls_of_public_addresses_are_fetched_unless_a_private_mirror_is_allowed(
        image_site, tmp_path, capsys, loopback_only):
    served, _ = image_site
    local = next(iter(served))  # http://127.0.0.1:PORT/item0.jpg
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    port = local.split(":")[2].split("/")[0]
    refused = {f"file://{secret}": "not_http", "ftp://127.0.0.1/a.jpg": "not_http", "http:///no-host.jpg": "bad_url",
               "http://no-such-host.invalid/a.jpg": "unresolvable_host"}
    private = {local: "private_address", f"http://localhost:{port}/item1.png": "private_address",
               "http://10.0.0.7/a.jpg": "private_address", "http://169.254.169.254/latest/meta-data/": "private_address",
               "http://[::1]:9/a.jpg": "private_address", "http://224.0.0.1/a.jpg": "private_address"}
    urls = tmp_path / "urls.parquet"
    pl.DataFrame({"url": [*refused, *private], "caption": ["a caption"] * (len(refused) + len(private))}).write_parquet(urls)

    out = tmp_path / "public-only"
    assert main(["ingest", str(urls), "--out", str(out), "--threads", "2"]) == 0
    assert f"{len(refused) + len(private)} urls refused, never fetched" in capsys.readouterr().out
    listed = pl.read_parquet(out / "_urls" / "refused.parquet")
    assert dict(zip(listed["url"], listed["reason"])) == {**refused, **private}
    assert not list(out.glob("*.tar"))

    out = tmp_path / "mirror"
    assert main(["ingest", str(urls), "--out", str(out), "--threads", "2", "--allow-private-urls"]) == 0
    assert "2 downloaded" in capsys.readouterr().out  # the loopback site; the other private ones do not answer
    listed = pl.read_parquet(out / "_urls" / "refused.parquet")
    assert dict(zip(listed["url"], listed["reason"])) == refused  # file:// stays refused
    fetched = b"".join(path.read_bytes() for path in out.glob("*.tar"))
    assert b"root:x:0:0" not in fetched


def test_a_public_address_is_one_anyone_could_reach():
    from jestfilter.datasets.url_check import check_urls, public

    assert all(map(public, ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]))
    assert not any(map(public, ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1",
                                "::ffff:127.0.0.1"]))
    # a name that resolves to a public and a private address is refused (either may be used)
    names = {"cdn.example": ["93.184.215.14"], "split.example": ["93.184.215.14", "10.0.0.1"]}
    assert check_urls(["https://cdn.example/a.jpg", "https://split.example/b.jpg", "HTTP://cdn.example:8080/c"],
                      resolve=names.__getitem__) == [None, "private_address", None]


class HostileHandler(QuietHandler):
    """An endless body, a body dripping a byte at a time, and what QuietHandler serves."""

    def do_GET(self):
        if self.path not in ("/endless.jpg", "/drip.jpg"):
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        try:
            while True:
                self.wfile.write(bytes(1 << 16) if self.path == "/endless.jpg" else b"\xff")
                self.wfile.flush()
                if self.path == "/drip.jpg":
                    time.sleep(0.3)  # never long enough for the per-read timeout
        except OSError:  # the client gave up
            return


def huge_png(width: int, height: int) -> bytes:
    """A grey PNG of zeros: a few hundred KB announcing width × height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(height)), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_a_download_is_bounded_in_bytes_seconds_and_pixels(tmp_path, capsys, loopback_only):
    site = tmp_path / "site"
    site.mkdir()
    Image.fromarray(load_fashion_mnist().test_images[0]).save(site / "good.jpg")
    (site / "huge.png").write_bytes(huge_png(20_000, 20_000))  # 389 KB, 400 million pixels decoded
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(HostileHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = tmp_path / "urls.parquet"
    names = ["good.jpg", "endless.jpg", "drip.jpg", "huge.png"]
    pl.DataFrame({"url": [f"{base}/{n}" for n in names], "caption": names}).write_parquet(urls)
    started = time.monotonic()
    try:
        assert main(["ingest", str(urls), "--out", str(tmp_path / "out"), "--threads", "4", "--allow-private-urls",
                     "--max-download-bytes", "1000000", "--max-download-seconds", "3",
                     "--max-image-pixels", "10000000"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 60
    assert "4 urls: 1 downloaded, 2 failed to download, 1 failed to resize" in capsys.readouterr().out
    status = pl.read_parquet(list((tmp_path / "out").glob("*.parquet")))
    errors = dict(zip(status["caption"], status["error_message"]))
    assert errors["good.jpg"] is None
    assert errors["endless.jpg"] == "response over 1,000,000 bytes"
    assert errors["drip.jpg"] == "download took over 3 s"
    assert "CV_IO_MAX_IMAGE_PIXELS" in errors["huge.png"]  # refused from its header, never decoded
