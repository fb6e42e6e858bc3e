"""The text tower on fewer token positions: the padding after the longest caption cut off
(exact), or every caption cut to ``context`` tokens (a cheaper, approximate scoring view).

open_clip's CLIP text tower is causal and pools at the end-of-text token (the highest id), so
positions after a caption's end never reach its embedding: dropping the padding columns
changes nothing but the cost. Cutting a caption shorter does change it (a caption of more
than ``context`` tokens keeps its first ``context − 1`` and ends with the end-of-text token,
as open_clip's tokenizer cuts long captions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import text_global_pool

PAD = 0  # open_clip's SimpleTokenizer pads with 0


def can_shorten(model: torch.nn.Module) -> bool:
    """True for open_clip's CLIP text tower with causal attention and end-of-text pooling."""
    return isinstance(model, CLIP) and model.attn_mask is not None and model.text_pool_type == "argmax"


def encode_text(model: torch.nn.Module, texts: torch.Tensor, normalize: bool = False,
                context: int | None = None) -> torch.Tensor:
    """``model.encode_text(texts)`` on the columns up to the longest caption's end, or on
    ``context`` tokens when that is shorter; any other text tower runs as it is."""
    if not can_shorten(model):
        return model.encode_text(texts, normalize=normalize)
    columns = texts.ne(PAD).any(dim=0).nonzero()
    used = int(columns.max()) + 1 if len(columns) else texts.shape[1]
    if context is not None and context < used:
        cut = texts[:, context:].ne(PAD).any(dim=1)
        end = texts.max(dim=1).values  # the end-of-text id of each row
        texts = texts[:, :context].clone()
        texts[cut, -1] = end[cut]
    else:
        texts = texts[:, :used]
    length = texts.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(texts).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, texts, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) \
            else x @ model.text_projection
    return F.normalize(x, dim=-1) if normalize else x
