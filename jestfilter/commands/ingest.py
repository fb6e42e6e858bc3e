"""`jestfilter ingest URLS --out DIR`: download a URL + caption list into shards with img2dataset."""

from __future__ import annotations

import argparse

from jestfilter.data.options import SAMPLES_PER_SHARD

HELP = "download a url + caption list (parquet, csv, ...) into webdataset shards with img2dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("urls", metavar="URLS", help="url list: a file, or a folder of files of one format")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (an earlier run's folder resumes)")
    parser.add_argument("--image-size", type=int, default=64, metavar="N",
                        help="scale the shorter side down to this; smaller images stay")
    parser.add_argument("--samples-per-shard", type=int, default=SAMPLES_PER_SHARD, metavar="N",
                        help="samples per shard")
    parser.add_argument("--processes", type=int, default=1, metavar="N", help="download processes")
    parser.add_argument("--threads", type=int, default=16, metavar="N", help="threads per process")
    parser.add_argument("--url-col", default="url", metavar="NAME", help="column holding the url")
    parser.add_argument("--caption-col", default="caption", metavar="NAME", help="column holding the caption")
    parser.add_argument("--input-format", metavar="FORMAT",
                        help="img2dataset input format (default: from the file suffix)")
    parser.add_argument("--allow-private-urls", action="store_true",
                        help="also fetch http(s) URLs of loopback, private and link-local addresses (a mirror on "
                             "your own network); by default only public addresses are fetched")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="a download fails when the server keeps it waiting S seconds at once (img2dataset's "
                             "timeout)")
    parser.add_argument("--max-download-seconds", type=float, default=30.0, metavar="S",
                        help="a download fails when it takes over S seconds in all (a server sending a byte at "
                             "a time)")
    parser.add_argument("--max-download-bytes", type=int, metavar="N",
                        help="a download fails when its response holds over N bytes (default: "
                             "$JESTFILTER_MAX_SAMPLE_BYTES, else 64 MiB)")
    parser.add_argument("--max-image-pixels", type=int, metavar="N",
                        help="an image over N pixels fails, refused from its header before it is decoded "
                             "(img2dataset's max_image_area; default: $JESTFILTER_MAX_IMAGE_PIXELS, else 64 million)")
    parser.add_argument("--i2d", action="append", default=[], metavar="KEY=VALUE",
                        help="any other img2dataset.download option, repeatable, e.g. --i2d retries=2 "
                             "--i2d resize_mode=center_crop (values read as Python literals; "
                             "default: none)")


def run(args: argparse.Namespace) -> int:
    from jestfilter.datasets.ingest import ingest, parse_option

    summary = ingest(
        args.urls,
        args.out,
        image_size=args.image_size,
        samples_per_shard=args.samples_per_shard,
        processes=args.processes,
        threads=args.threads,
        url_col=args.url_col,
        caption_col=args.caption_col,
        input_format=args.input_format,
        options=dict(parse_option(text) for text in args.i2d),
        allow_private=args.allow_private_urls,
        timeout=args.timeout,
        max_seconds=args.max_download_seconds,
        max_bytes=args.max_download_bytes,
        max_pixels=args.max_image_pixels,
    )
    if summary.refused:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in summary.refused.most_common())
        print(f"{sum(summary.refused.values()):,} urls refused, never fetched ({reasons}): "
              f"{args.out}/_urls/refused.parquet lists them")
    print(f"{summary.count:,} urls: {summary.successes:,} downloaded, {summary.failed_to_download:,} failed to "
          f"download, {summary.failed_to_resize:,} failed to resize")  # fmt: skip
    for message, n in summary.errors.most_common(5):
        print(f"  {n:>7,}  {message}")
    print(f"shards: {summary.pattern or 'none'}  (per-sample status in {args.out}/*.parquet)")
    return 0
