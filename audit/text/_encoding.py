"""Tokenisation for text attribution: right-padded batches, special-token masks and word grouping.

Padding is done here, not by the tokenizer, so every method sees the same layout and can cut it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

# Prefixes tokenizers put on sub-word pieces: WordPiece continues with '##'; byte-level BPE and
# SentencePiece start a new word with 'Ġ' / '▁'.
_CONTINUATION = "##"
_WORD_START = ("Ġ", "▁")


@dataclass
class EncodedText:
    """One text as the model sees it, without padding."""

    text: str
    input_ids: list[int]
    token_type_ids: list[int] | None
    tokens: list[str]
    special: list[bool]
    word_ids: list[int | None]  # per token: index into `words`, None for special tokens
    words: list[str]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class PaddedBatch:
    """Right-padded tensors for a list of id sequences, on one device."""

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    token_type_ids: torch.Tensor | None  # [B, T] long
    lengths: list[int]


def pad_token_id(tokenizer: Any) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    if pid is None:
        raise ValueError(
            "the tokenizer has no padding token (tokenizer.pad_token_id is None); set one, e.g. "
            "tokenizer.pad_token = tokenizer.eos_token, before attributing batches of texts"
        )
    return int(pid)


def encode_texts(tokenizer: Any, texts: Sequence[str], *, max_length: int | None) -> list[EncodedText]:
    """Tokenise each text with special tokens, truncated to `max_length`, and group sub-words."""
    if not callable(tokenizer):
        raise TypeError("tokenizer must be a Hugging Face tokenizer (callable on a list of strings)")
    limit = max_length or model_max_length(tokenizer)
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(
        list(texts),
        truncation=True,
        max_length=limit,
        padding=False,
        return_special_tokens_mask=True,
        return_offsets_mapping=fast,
    )
    out: list[EncodedText] = []
    for i, text in enumerate(texts):
        ids = [int(t) for t in enc["input_ids"][i]]
        special = [bool(s) for s in enc["special_tokens_mask"][i]]
        tokens = [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]
        tt = enc["token_type_ids"][i] if "token_type_ids" in enc else None
        if fast:
            word_ids, words = _words_from_offsets(text, enc.word_ids(i), enc["offset_mapping"][i], special)
        else:
            word_ids, words = _words_from_pieces(tokens, special)
        out.append(
            EncodedText(
                text=text,
                input_ids=ids,
                token_type_ids=None if tt is None else [int(t) for t in tt],
                tokens=tokens,
                special=special,
                word_ids=word_ids,
                words=words,
            )
        )
    return out


def model_max_length(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a known limit report a huge sentinel value.
    return int(limit) if isinstance(limit, int) and 0 < limit <= 100_000 else 512


def _words_from_offsets(
    text: str, raw_word_ids: list[int | None], offsets: list[tuple[int, int]], special: list[bool]
) -> tuple[list[int | None], list[str]]:
    word_ids: list[int | None] = []
    spans: list[list[int]] = []
    seen: dict[int, int] = {}
    for wid, (start, end), is_special in zip(raw_word_ids, offsets, special):
        if is_special or wid is None:
            word_ids.append(None)
            continue
        if wid not in seen:
            seen[wid] = len(spans)
            spans.append([start, end])
        k = seen[wid]
        spans[k][0] = min(spans[k][0], start)
        spans[k][1] = max(spans[k][1], end)
        word_ids.append(k)
    return word_ids, [text[s:e].strip() for s, e in spans]


def _words_from_pieces(tokens: list[str], special: list[bool]) -> tuple[list[int | None], list[str]]:
    """Group pieces by their markers when the tokenizer gives no word ids (slow tokenizers)."""
    word_ids: list[int | None] = []
    words: list[str] = []
    previous_special = True
    for tok, is_special in zip(tokens, special):
        if is_special:
            word_ids.append(None)
            previous_special = True
            continue
        starts_word = previous_special or (
            not tok.startswith(_CONTINUATION)
            and (tok.startswith(_WORD_START) or not any(t.startswith(_WORD_START) for t in tokens))
        )
        piece = tok[len(_CONTINUATION):] if tok.startswith(_CONTINUATION) else tok.lstrip("".join(_WORD_START))
        if starts_word:
            words.append(piece)
        else:
            words[-1] += piece
        word_ids.append(len(words) - 1)
        previous_special = False
    return word_ids, words


def pad_sequences(
    ids: Sequence[Sequence[int]],
    token_types: Sequence[Sequence[int] | None] | None,
    *,
    pad_id: int,
    device: torch.device,
) -> PaddedBatch:
    """Right-pad id lists (and token-type lists) into tensors with an attention mask."""
    lengths = [len(s) for s in ids]
    width = max(lengths)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    types = None
    if token_types is not None and all(t is not None for t in token_types):
        types = torch.zeros((len(ids), width), dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[i, : len(seq)] = 1
        if types is not None:
            types[i, : len(seq)] = torch.as_tensor(list(token_types[i]), dtype=torch.long)  # type: ignore[index]
    return PaddedBatch(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        token_type_ids=None if types is None else types.to(device),
        lengths=lengths,
    )


def pad_encoded(encoded: Sequence[EncodedText], *, pad_id: int, device: torch.device) -> PaddedBatch:
    return pad_sequences(
        [e.input_ids for e in encoded], [e.token_type_ids for e in encoded], pad_id=pad_id, device=device
    )
