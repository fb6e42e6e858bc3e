"""Tokenise each distinct caption once: a run reads the web data many times (B = 5b a step
for hundreds of steps) and open_clip's tokenizer costs ~35 µs a caption, as much as decoding
a small JPEG."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Tokenizer = Callable[[list[str]], torch.Tensor]


class CachedTokenizer:
    """``tokenizer(texts)`` with every caption's token ids kept (as int32 bytes) up to
    ``max_bytes``; past that, new captions are tokenised each time they come."""

    def __init__(self, tokenizer: Tokenizer, max_bytes: int = 64 * 2**20):
        self.tokenizer, self.max_bytes = tokenizer, max_bytes
        self.rows: dict[str, bytes] = {}
        self.bytes = 0
        self.width: int | None = None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [text for text in dict.fromkeys(texts) if text not in self.rows]
        fresh = {}
        if missing:
            tokens = self.tokenizer(missing)
            self.width = tokens.shape[1]
            fresh = {text: row.tobytes() for text, row in zip(missing, tokens.numpy().astype(np.int32))}
            for text, row in fresh.items():
                if self.bytes + len(row) > self.max_bytes:
                    break
                self.rows[text] = row
                self.bytes += len(row)
        if not texts:
            return torch.empty(0, self.width or 0, dtype=torch.long)
        joined = b"".join(self.rows.get(text) or fresh[text] for text in texts)
        return torch.from_numpy(np.frombuffer(joined, dtype=np.int32).reshape(len(texts), -1).astype(np.int64))
