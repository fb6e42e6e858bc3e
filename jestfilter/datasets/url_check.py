"""Which URLs of a list ``ingest`` may fetch: http(s) to public addresses only, unless told otherwise.

img2dataset fetches whatever it is given, ``file:///etc/passwd`` and ``http://127.0.0.1:8080/``
(or a cloud's metadata service at 169.254.169.254) included, and writes the answer into the
shards. So before img2dataset starts, every URL is checked and the refused ones are left out of
the list it is handed (img2dataset downloads itself; we do not patch it):

* ``not_http``: a scheme other than http or https (``file:``, ``ftp:``, ``data:``, ...);
* ``bad_url``: no host, or a URL that does not parse;
* ``unresolvable_host``: the host name does not resolve (now);
* ``private_address``: the host resolves to a loopback, private, link-local, multicast,
  reserved or otherwise non-public address. ``allow_private=True`` (``--allow-private-urls``)
  lets these through, for a mirror on your own network.

Limits: img2dataset resolves each host again when it downloads and follows HTTP redirects, so a
hostile DNS server or a redirect can still reach a private address after this check. For URL
lists you do not trust, also run ingest where the network itself blocks private ranges.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from jestfilter.errors import UsageError

NOT_HTTP = "not_http"
BAD_URL = "bad_url"
UNRESOLVABLE_HOST = "unresolvable_host"
PRIVATE_ADDRESS = "private_address"

Resolve = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    return [info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


def public(address: str) -> bool:
    """An address anyone on the internet could reach: not loopback, private, link-local,
    multicast, reserved or unspecified (an IPv4-mapped IPv6 address is judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def check_urls(urls: Iterable[str | None], allow_private: bool = False, threads: int = 16,
               resolve: Resolve = resolve) -> list[str | None]:
    """The reason to refuse each URL (in order), or None for one ``ingest`` may fetch. Each
    host is resolved once, ``threads`` at a time."""
    urls = list(urls)
    hosts: list[str | None] = []
    reasons: list[str | None] = []
    for url in urls:
        host, reason = _host(url)
        hosts.append(host)
        reasons.append(reason)
    unique = sorted({h for h, r in zip(hosts, reasons) if r is None})
    with ThreadPoolExecutor(max(1, threads)) as pool:
        verdicts = dict(zip(unique, pool.map(lambda h: _judge(h, allow_private, resolve), unique)))
    return [reason or verdicts[host] for host, reason in zip(hosts, reasons)]


def _host(url: str | None) -> tuple[str | None, str | None]:
    if not isinstance(url, str):
        return None, BAD_URL
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return None, BAD_URL
    if parts.scheme.lower() not in ("http", "https"):
        return None, NOT_HTTP
    return (host, None) if host else (None, BAD_URL)


def _judge(host: str, allow_private: bool, resolve: Resolve) -> str | None:
    try:
        addresses = resolve(host)
    except (OSError, UnicodeError, ValueError):
        return UNRESOLVABLE_HOST
    if not addresses:
        return UNRESOLVABLE_HOST
    if not allow_private and not all(public(a) for a in addresses):
        return PRIVATE_ADDRESS
    return None


ALLOWED_DIR = "allowed"  # parquet parts: the rows img2dataset is handed
REFUSED = "refused.parquet"  # url, reason: every row left out
SOURCE = "source.json"  # what the lists were made from, so a rerun reuses them


@dataclass
class CheckedUrls:
    folder: Path  # ``allowed/`` inside it is img2dataset's url_list (parquet)
    allowed: int
    refused: Counter  # reason → urls


def filter_url_lists(files: list[Path], input_format: str, url_col: str, folder: Path,
                     allow_private: bool = False, threads: int = 16, resolve: Resolve = resolve) -> CheckedUrls:
    """Check every URL of ``files`` (img2dataset's input formats); write the rows that pass to
    ``folder/allowed/NNNNN.parquet`` (in order) and the others to ``folder/refused.parquet``.

    A rerun into the same folder with the same lists and settings reuses them (no second round
    of DNS lookups that could answer differently and renumber img2dataset's shards); with other
    lists it refuses."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = {"files": [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
              "url_col": url_col, "allow_private": allow_private}
    if (folder / SOURCE).exists():
        if json.loads((folder / SOURCE).read_text()) != source:
            raise UsageError(f"{folder.parent} was started from other url lists or settings: use a new --out")
        refused = pq.read_table(folder / REFUSED).column("reason").to_pylist()
        allowed = sum(pq.ParquetFile(p).metadata.num_rows for p in (folder / ALLOWED_DIR).glob("*.parquet"))
        return CheckedUrls(folder, allowed, Counter(refused))
    (folder / ALLOWED_DIR).mkdir(parents=True, exist_ok=True)
    refused_rows: dict[str, list] = {"url": [], "reason": [], "file": []}
    allowed = 0
    for index, path in enumerate(files):
        table = read_url_table(path, input_format)
        urls = table.column(url_col).to_pylist()
        reasons = check_urls(urls, allow_private, threads, resolve)
        keep = pa.array([reason is None for reason in reasons])
        pq.write_table(table.filter(keep), folder / ALLOWED_DIR / f"{index:05d}.parquet")
        allowed += int(pc.sum(keep).as_py() or 0)
        for url, reason in zip(urls, reasons):
            if reason is not None:
                refused_rows["url"].append(None if url is None else str(url))
                refused_rows["reason"].append(reason)
                refused_rows["file"].append(path.name)
    pq.write_table(pa.table(refused_rows, schema=pa.schema([("url", pa.string()), ("reason", pa.string()),
                                                            ("file", pa.string())])), folder / REFUSED)
    (folder / SOURCE).write_text(json.dumps(source))  # last: the lists are complete
    return CheckedUrls(folder, allowed, Counter(refused_rows["reason"]))


def read_url_table(path: Path, input_format: str):
    """One url list as an arrow table, read the way img2dataset reads it (a txt list's one
    column is ``url``)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    if input_format == "parquet":
        return pq.read_table(path)
    with (gzip.open(path, "rb") if input_format.endswith(".gz") else open(path, "rb")) as file:
        kind = input_format.removesuffix(".gz")
        if kind == "txt":
            return csv.read_csv(file, read_options=csv.ReadOptions(column_names=["url"]))
        if kind == "csv":
            return csv.read_csv(file)
        if kind == "tsv":
            return csv.read_csv(file, parse_options=csv.ParseOptions(delimiter="\t"))
        if kind == "jsonl":
            return pa_json.read_json(file)
        return pa.Table.from_pandas(pd.read_json(file), preserve_index=False)
