"""Data sets to start from: the Fashion-MNIST demo builder and img2dataset ingest of URL lists."""
