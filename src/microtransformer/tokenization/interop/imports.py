"""Other libraries' tokenizer files loaded as our tokenizers, with the same ids.

``MicroTransformerTokenizer.from_pretrained`` comes here for anything that is
not a directory ``save`` wrote:

==================================  ==============  ================================================
source                              engine          what must hold
==================================  ==============  ================================================
HF directory / ``tokenizer.json``   ``hf-bytelevel`` BPE with a ByteLevel pre-tokenizer (GPT-2 style,
                                                    any Split regex before it), no normalizer
HF (byte fallback)                  ``hf-bpe``      BPE with ``byte_fallback``, no normalizer or
                                                    pre-tokenizer (our ``sentencepiece`` export)
``.tiktoken``                       ``bpe``         give ``pattern`` (``"gpt4"``, ``"nanochat"``, a
                                                    regex) and ``special_tokens`` if it has any
SentencePiece ``.model``            ``sentencepiece`` BPE, ``byte_fallback``, identity (or nmt_nfkc)
                                                    normalization, no dummy prefix, no whitespace
                                                    removal: the settings our engine trains with
minbpe ``.model`` (``minbpe v1``)   ``reference``   special tokens right after the merges
==================================  ==============  ================================================

Hugging Face tokenizers run in HF's own Rust code, SentencePiece models in
SentencePiece, ``.tiktoken`` ranks in tiktoken, so ids are the original
library's by construction; :func:`parity` checks it on text anyway
(``mtx tokenizer convert``). Anything else is refused with a message naming
what is unsupported (e.g. a WordPiece or Unigram model, a Metaspace
pre-tokenizer): it would load, but not with the same ids or an exact decode.

>>> tok = import_file(Path("cl100k_base.tiktoken"), pattern="gpt4", special_tokens=["<|endoftext|>"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microtransformer.errors import ConfigError, MicroTransformerError, TokenizerFormatError
from microtransformer.io import sha256_file
from microtransformer.tokenization.interop.hf_export import HF_CONFIG_FILE, HF_SPECIAL_MAP_FILE, HF_TOKENIZER_FILE, strip_specials
from microtransformer.tokenization.interop.sentencepiece_model import read_settings, special_pieces_suffix
from microtransformer.tokenization.reference import ReferenceTokenizer
from microtransformer.tokenization.reference_bpe import ReferenceBPE
from microtransformer.tokenization.special import (
    ROLES,
    SpecialToken,
    SpecialTokensSpec,
    parse_special_tokens,
    resolve_pattern,
)

if TYPE_CHECKING:
    from microtransformer.tokenization.base import MicroTransformerTokenizer

MINBPE_HEADER = "minbpe v1"
#: minbpe's ``BasicTokenizer`` has no split pattern (the whole text is one chunk).
WHOLE_TEXT_PATTERN = r"[\s\S]+"


def is_hf_dir(path: Path) -> bool:
    return (path / HF_TOKENIZER_FILE).is_file()


def import_file(path: Path, *, pattern: str | None = None, special_tokens: SpecialTokensSpec = None) -> MicroTransformerTokenizer:
    """Import one file by its kind: ``tokenizer.json``, ``.tiktoken``, or a SentencePiece/minbpe ``.model``.

    Whatever the other library raises on a damaged file becomes a
    :class:`TokenizerFormatError` naming the file.
    """
    try:
        return _import_file(path, pattern=pattern, special_tokens=special_tokens)
    except MicroTransformerError:
        raise
    except Exception as exc:  # tokenizers/tiktoken/sentencepiece raise many kinds on bad input
        raise TokenizerFormatError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path, *, pattern: str | None, special_tokens: SpecialTokensSpec) -> MicroTransformerTokenizer:
    if path.suffix == ".json":
        _no_args(path, pattern, special_tokens)
        return _import_hf(path, special_tokens=None)
    if path.suffix == ".tiktoken":
        return import_tiktoken(path, pattern=pattern, special_tokens=special_tokens)
    if path.suffix == ".model":
        data = path.read_bytes()
        if data.startswith(MINBPE_HEADER.encode("ascii")):
            _no_args(path, pattern, special_tokens)
            return import_minbpe(path)
        if pattern is not None:
            raise ConfigError("a SentencePiece model does its own splitting; it takes no pattern")
        return import_sentencepiece(path, special_tokens=special_tokens)
    raise TokenizerFormatError(
        f"{path} is not a tokenizer file this can import: expected a directory, a Hugging Face tokenizer.json, "
        "a .tiktoken file, or a SentencePiece or minbpe .model file"
    )


def _no_args(path: Path, pattern: str | None, special_tokens: SpecialTokensSpec) -> None:
    if pattern is not None or special_tokens is not None:
        raise ConfigError(f"{path} names its own pattern and special tokens; pattern= and special_tokens= are for .tiktoken files")


def _import_specials(special_tokens: SpecialTokensSpec) -> tuple[SpecialToken, ...]:
    """Imports have no special tokens unless the file or the caller names some (not our defaults)."""
    return () if special_tokens is None else parse_special_tokens(special_tokens)


# --------------------------------------------------------------------- tiktoken
def import_tiktoken(
    path: Path, *, pattern: str | None, special_tokens: SpecialTokensSpec = None
) -> MicroTransformerTokenizer:
    """A ``.tiktoken`` ranks file (``base64(token) rank`` lines) as the ``bpe`` engine; specials get ids after the ranks."""
    from microtransformer.tokenization.bpe import BPETokenizer, parse_tiktoken_file

    if pattern is None:
        raise ConfigError(
            f"{path.name} holds ranks but no split pattern: pass pattern= (--pattern on the command line), e.g. "
            "'gpt4' for cl100k-style files, 'nanochat', or the regex the ranks were trained with"
        )
    tok = BPETokenizer(parse_tiktoken_file(path.read_bytes()), resolve_pattern(pattern))  # type: ignore[arg-type]
    tok._set_specials(_import_specials(special_tokens))
    return tok


# ---------------------------------------------------------------- SentencePiece
def import_sentencepiece(path: Path, *, special_tokens: SpecialTokensSpec = None) -> MicroTransformerTokenizer:
    """A SentencePiece BPE ``.model`` as the ``sentencepiece`` engine.

    Control pieces at the end with ids after the ordinary pieces (what our
    ``save`` writes) become our special tokens again, with the bos/eos/pad
    roles the model gives them; ``special_tokens`` adds more after those.
    """
    import sentencepiece as spm

    from microtransformer.tokenization.sentencepiece_bpe import SentencePieceTokenizer

    proto = path.read_bytes()
    try:
        settings = read_settings(proto)
    except TokenizerFormatError as exc:
        raise TokenizerFormatError(f"{path} is not a valid SentencePiece model: {exc}") from exc
    problems = []
    if settings.model_type != "bpe":
        problems.append(f"model_type {settings.model_type} (only bpe)")
    if not settings.byte_fallback:
        problems.append("byte_fallback=false (unknown characters would become <unk> and be lost)")
    if settings.normalization not in ("identity", "nmt_nfkc"):
        problems.append(f"normalization {settings.normalization!r} (identity or nmt_nfkc)")
    if settings.add_dummy_prefix:
        problems.append("add_dummy_prefix=true (decode could not give back the text exactly)")
    if settings.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces=true (lossy)")
    if not settings.escape_whitespaces or settings.treat_whitespace_as_suffix:
        problems.append("whitespace not escaped as a '▁' prefix")
    if settings.n_user_defined:
        problems.append(f"{settings.n_user_defined} user-defined pieces (matched inside input text)")
    if problems:
        raise TokenizerFormatError(
            f"{path}: unsupported SentencePiece model: {'; '.join(problems)}. The sentencepiece engine holds "
            "lossless BPE models (train with model_type=bpe, byte_fallback=True, add_dummy_prefix=False, "
            "remove_extra_whitespaces=False, normalization_rule_name=identity)"
        )
    try:
        sp = spm.SentencePieceProcessor(model_proto=proto)
    except RuntimeError as exc:
        raise TokenizerFormatError(f"{path} is not a valid SentencePiece model: {exc}") from exc
    n = sp.get_piece_size()
    first = n
    while first > 0 and sp.is_control(first - 1):
        first -= 1
    roles = {sp.bos_id(): "bos", sp.eos_id(): "eos", sp.pad_id(): "pad"}
    trailing = tuple(SpecialToken(sp.id_to_piece(i), roles.get(i)) for i in range(first, n))
    suffix = special_pieces_suffix(trailing, first) if trailing else b""
    if trailing and proto.endswith(suffix):
        proto, specials = proto[: -len(suffix)], trailing
    else:
        specials = ()
    normalization = "nfkc" if settings.normalization == "nmt_nfkc" else "identity"
    tok = SentencePieceTokenizer(proto, normalization)
    extra = _import_specials(special_tokens)
    tok._set_specials(_merge_specials(specials, extra))
    return tok


def _merge_specials(found: Sequence[SpecialToken], extra: Sequence[SpecialToken]) -> tuple[SpecialToken, ...]:
    names = {t.content for t in found}
    return tuple(found) + tuple(t for t in extra if t.content not in names)


# ------------------------------------------------------------------------ minbpe
def import_minbpe(path: Path) -> MicroTransformerTokenizer:
    """A minbpe ``.model`` (``minbpe v1``, pattern, specials, merges) as the ``reference`` engine.

    minbpe's ``save`` writes: the version line, the split pattern (empty for
    ``BasicTokenizer``), the number of special tokens, one ``token id`` line
    each, then one ``id1 id2`` line per merge (merge i makes id 256 + i).
    """

    try:
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines[0].strip() != MINBPE_HEADER:
            raise ValueError(f"first line is {lines[0][:40]!r}, not {MINBPE_HEADER!r}")
        pattern = lines[1].strip() or WHOLE_TEXT_PATTERN
        n_special = int(lines[2])
        special_ids: dict[str, int] = {}
        for line in lines[3 : 3 + n_special]:
            token, idx = line.strip().rsplit(" ", 1)
            special_ids[token] = int(idx)
        merges = [tuple(map(int, line.split())) for line in lines[3 + n_special :] if line.strip()]
        if any(len(m) != 2 for m in merges):
            raise ValueError("a merge line does not hold two ids")
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise TokenizerFormatError(f"{path} is not a valid minbpe model: {exc}") from exc
    n_ordinary = 256 + len(merges)
    ordered = sorted(special_ids, key=special_ids.get)  # type: ignore[arg-type]
    want = list(range(n_ordinary, n_ordinary + len(ordered)))
    if [special_ids[t] for t in ordered] != want:
        raise TokenizerFormatError(
            f"{path}: special token ids {sorted(special_ids.values())} do not follow the {len(merges)} merges "
            f"(expected {want}); this tokenizer keeps special tokens right after the ordinary vocabulary"
        )
    try:
        tok = ReferenceTokenizer([(a, b) for a, b in merges], pattern, tie_break="first")
    except ConfigError as exc:
        raise TokenizerFormatError(f"{path} is not a valid minbpe model: {exc}") from exc
    tok._set_specials(parse_special_tokens(ordered))
    return tok


# ------------------------------------------------------------------ Hugging Face
def import_hf(path: Path, *, special_tokens: SpecialTokensSpec = None) -> MicroTransformerTokenizer:
    """A Hugging Face directory or ``tokenizer.json`` with a BPE model, as ``hf-bytelevel`` or ``hf-bpe``.

    Errors from ``tokenizers`` on a damaged file become :class:`TokenizerFormatError`.
    """
    try:
        return _import_hf(path, special_tokens=special_tokens)
    except MicroTransformerError:
        raise
    except Exception as exc:  # the Rust side raises a bare Exception on bad JSON
        raise TokenizerFormatError(f"cannot import the Hugging Face tokenizer at {path}: {exc}") from exc


def _import_hf(path: Path, *, special_tokens: SpecialTokensSpec) -> MicroTransformerTokenizer:
    """See :func:`import_hf`.

    Special tokens are the ``special`` added tokens; their roles come from
    ``tokenizer_config.json``/``special_tokens_map.json`` when present. Added
    tokens that are also the last entries of the model vocabulary (GPT-2's
    ``<|endoftext|>``) are taken out of it, so ids stay the same.
    """
    from tokenizers import Tokenizer

    from microtransformer.tokenization.hf_bpe import HFByteFallbackTokenizer, HFByteLevelTokenizer

    if special_tokens is not None:
        raise ConfigError("a Hugging Face tokenizer names its own special tokens; special_tokens= is for .tiktoken files")
    directory, file = (path, path / HF_TOKENIZER_FILE) if path.is_dir() else (path.parent, path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        model = data["model"]
        kind = model.get("type")
        vocab: dict[str, int] = dict(model["vocab"]) if kind == "BPE" else {}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise TokenizerFormatError(f"{file} is not a valid Hugging Face tokenizer.json ({exc})") from exc
    if kind != "BPE":
        raise TokenizerFormatError(
            f"{file}: unsupported Hugging Face model type {kind!r}; only BPE (ByteLevel, or byte fallback) "
            "tokenizers can be imported"
        )
    byte_level = _uses_bytelevel(data)
    problems = _hf_problems(data, byte_level)
    if problems:
        raise TokenizerFormatError(f"{file}: unsupported Hugging Face tokenizer: {'; '.join(problems)}")
    added = sorted(data.get("added_tokens") or [], key=lambda t: t["id"])
    plain = [t["content"] for t in added if not t.get("special")]
    if plain:
        raise TokenizerFormatError(
            f"{file}: non-special added tokens {plain[:5]} are matched inside input text, which this tokenizer "
            "does not do; only special added tokens are supported"
        )
    n_vocab = len(vocab)
    in_vocab = [t for t in added if vocab.get(t["content"]) == t["id"]]
    n_ordinary = n_vocab - len(in_vocab)
    ids = [t["id"] for t in added]
    if ids != list(range(n_ordinary, n_ordinary + len(added))) or sorted(vocab.values()) != list(range(n_vocab)):
        raise TokenizerFormatError(
            f"{file}: token ids must be 0..{n_vocab - 1} for the vocabulary with special tokens right after the "
            f"ordinary ones; the special tokens have ids {ids[:8]}"
        )
    for t in in_vocab:
        del vocab[t["content"]]
    model["vocab"] = vocab

    tk = Tokenizer.from_str(strip_specials(json.dumps(data)))
    roles, padding_side, max_length = _hf_roles(directory, data)
    specials = []
    taken: set[str] = set()
    for t in added:
        role = next((r for r in ROLES if roles.get(r) == t["content"] and r not in taken), None)
        if role:
            taken.add(role)
        specials.append(SpecialToken(t["content"], role))
    engine = HFByteLevelTokenizer if byte_level else HFByteFallbackTokenizer
    tok = engine(tk, _split_regex(data) if byte_level else None)  # type: ignore[arg-type]
    tok._set_specials(specials, padding_side)
    tok.model_max_length = max_length
    return tok


def _pre_tokenizers(data: dict[str, Any]) -> list[dict[str, Any]]:
    pre = data.get("pre_tokenizer")
    if pre is None:
        return []
    return list(pre.get("pretokenizers", [])) if pre.get("type") == "Sequence" else [pre]


def _uses_bytelevel(data: dict[str, Any]) -> bool:
    return any(p.get("type") == "ByteLevel" for p in _pre_tokenizers(data))


def _split_regex(data: dict[str, Any]) -> str | None:
    for p in _pre_tokenizers(data):
        if p.get("type") == "Split":
            return p.get("pattern", {}).get("Regex")
    return None


def _hf_problems(data: dict[str, Any], byte_level: bool) -> list[str]:
    model = data["model"]
    problems = []
    if data.get("normalizer") is not None:
        problems.append(f"normalizer {data['normalizer'].get('type')} (lossy or not byte-exact)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            problems.append(f"model {key}={model[key]!r}")
    pres = _pre_tokenizers(data)
    if byte_level:
        for p in pres:
            if p.get("type") == "ByteLevel" and p.get("add_prefix_space"):
                problems.append("ByteLevel(add_prefix_space=True) adds a space that decode cannot take back exactly")
            elif p.get("type") not in ("ByteLevel", "Split"):
                problems.append(f"pre-tokenizer {p.get('type')}")
    else:
        if not model.get("byte_fallback"):
            problems.append("neither a ByteLevel pre-tokenizer nor byte_fallback (text outside the vocabulary is lost)")
        problems.extend(f"pre-tokenizer {p.get('type')} (only ByteLevel tokenizers may pre-split)" for p in pres)
    return problems


def _hf_roles(directory: Path, data: dict[str, Any]) -> tuple[dict[str, str], str, int | None]:
    """Role -> token from HF's config files, the padding side and ``model_max_length`` (when they exist)."""
    cfg: dict[str, Any] = {}
    for name in (HF_SPECIAL_MAP_FILE, HF_CONFIG_FILE):  # the config wins
        try:
            loaded = json.loads((directory / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict):
            cfg.update(loaded)
    roles = {}
    for role in ROLES:
        value = cfg.get(f"{role}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            roles[role] = value
    padding = data.get("padding") or {}
    if "pad" not in roles and padding.get("pad_token"):
        roles["pad"] = padding["pad_token"]
    side = cfg.get("padding_side") or padding.get("direction", "right")
    side = {"Right": "right", "Left": "left"}.get(side, side)
    max_length = cfg.get("model_max_length")
    if not isinstance(max_length, int) or max_length >= 1 << 40:  # HF's "unknown" is a huge int
        max_length = None
    return roles, side if side in ("left", "right") else "right", max_length


# ---------------------------------------------------------------------- parity
@dataclass(frozen=True)
class Parity:
    """How many strings were compared, and the first one whose ids differ (None when all agree)."""

    n_strings: int
    mismatch: tuple[str, list[int], list[int]] | None = None

    def line(self, library: str) -> str:
        if self.mismatch is None:
            return f"parity: identical ids to {library} on {self.n_strings} held-out strings"
        text, ours, theirs = self.mismatch
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        return (
            f"parity: MISMATCH with {library} on {text[:60]!r}: first difference at token {at}: "
            f"ours {ours[at:at + 5]} vs theirs {theirs[at:at + 5]}"
        )


def reference_encoder(
    path: Path, *, pattern: str | None = None, special_tokens: SpecialTokensSpec = None
) -> tuple[str, Callable[[str], list[int]]]:
    """The original library's encode for ``path`` (ordinary text), and its name."""
    if path.is_dir() or path.suffix == ".json":
        from tokenizers import Tokenizer

        tk = Tokenizer.from_file(str(path / HF_TOKENIZER_FILE if path.is_dir() else path))
        tk.encode_special_tokens = True  # our default: special-token text is ordinary text
        return "Hugging Face tokenizers", lambda t: tk.encode(t, add_special_tokens=False).ids
    if path.suffix == ".tiktoken":
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe


        # expected_hash: tiktoken caches files by path, so a file rewritten in place would load stale ranks
        ranks = load_tiktoken_bpe(str(path), expected_hash=sha256_file(path))
        enc = tiktoken.Encoding("import", pat_str=resolve_pattern(pattern) or "", mergeable_ranks=ranks, special_tokens={})
        return "tiktoken", enc.encode_ordinary
    data = path.read_bytes()
    if data.startswith(MINBPE_HEADER.encode("ascii")):

        tok = import_minbpe(path)
        bpe = ReferenceBPE(tok.merges, tok.pattern)
        return "minbpe's algorithm (reference BPE on the file's merges)", bpe.encode_ordinary
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=data)
    return "SentencePiece", lambda t: sp.encode(t)


def sample_strings(documents: Iterable[str], n: int) -> list[str]:
    """Up to ``n`` strings to compare ids on: a few that stress byte handling, then paragraphs of ``documents``.

    An imported tokenizer was trained elsewhere, so any corpus is held out for it.
    """
    out = ["", "Hello, world!", "  two  spaces\n\n\tand tabs", "naïve café 東京 🙂👩\u200d👧", "x = 12345 + 67.8"][:n]
    for doc in documents:
        for para in doc.split("\n\n"):
            if len(out) >= n:
                return out
            if para.strip():
                out.append(para[:2000])
    return out


def parity(tok: MicroTransformerTokenizer, encode: Callable[[str], list[int]], texts: Sequence[str]) -> Parity:
    """Compare ``tok.encode`` with ``encode`` on ``texts``; stop at the first difference."""
    for text in texts:
        ours, theirs = tok.encode(text), encode(text)
        if ours != theirs:
            return Parity(len(texts), (text, ours, theirs))
    return Parity(len(texts))
