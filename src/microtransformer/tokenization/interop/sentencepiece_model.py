"""Our special tokens inside a SentencePiece ``.model``, and the settings a model was trained with.

A ``.model`` file is a serialized ``ModelProto`` (sentencepiece_model.proto):
field 1 the pieces, field 2 the ``TrainerSpec``, field 3 the ``NormalizerSpec``.
Protocol buffers *merge* a message that appears twice and *append* to a
repeated field, so adding to a model is appending bytes:

* each special token becomes a ``CONTROL`` piece (field 1) after the ordinary
  pieces, so its id is ours. ``CONTROL``, not ``USER_DEFINED``: SentencePiece
  matches user-defined pieces inside input text, which would break our
  injection-safe default (special-token text in input is ordinary text);
  control pieces are only ever produced by id, like ours.
* a second ``TrainerSpec`` (field 2) sets ``bos_id``/``eos_id``/``pad_id`` and
  ``bos_piece``/``eos_piece``/``pad_piece`` for the roles we have, so
  ``sp.bos_id()`` and ``encode(..., add_bos=True)`` use our tokens.
  SentencePiece's unknown token is its own piece ``<unk>`` (id 0, an ordinary
  id here): a special token with the ``unk`` role stays a plain control piece,
  and ``mask`` has no SentencePiece field.

The model we trained stays a byte-for-byte prefix of the saved file, so
loading strips the suffix and the fingerprint (which hashes the trained model)
does not change. No protobuf library is needed for this.

>>> proto = trained + special_pieces_suffix([SpecialToken("<|bos|>", "bos")], first_id=1000)  # doctest: +SKIP
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from microtransformer.errors import TokenizerFormatError
from microtransformer.tokenization.special import SpecialToken

CONTROL = 3
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
# TrainerSpec field numbers of each role's id and piece.
_ROLE_FIELDS = {"unk": (40, 45), "bos": (41, 46), "eos": (42, 47), "pad": (43, 48)}
_WIRE_VARINT, _WIRE_64, _WIRE_LEN, _WIRE_32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int32/int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, _WIRE_LEN) + _varint(len(payload)) + payload


def special_pieces_suffix(specials: Sequence[SpecialToken], first_id: int) -> bytes:
    """Bytes to append to a model of ``first_id`` pieces: our specials as CONTROL pieces + their roles."""
    out = bytearray()
    for tok in specials:
        piece = _len_field(1, tok.content.encode("utf-8")) + _key(2, _WIRE_32) + struct.pack("<f", 0.0)
        piece += _key(3, _WIRE_VARINT) + _varint(CONTROL)
        out += _len_field(1, piece)
    spec = bytearray()
    for i, tok in enumerate(specials):
        if tok.role in ("bos", "eos", "pad"):
            id_field, piece_field = _ROLE_FIELDS[tok.role]
            spec += _key(id_field, _WIRE_VARINT) + _varint(first_id + i)
            spec += _len_field(piece_field, tok.content.encode("utf-8"))
    if spec:
        out += _len_field(2, bytes(spec))
    return bytes(out)


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each top-level field of a serialized message."""
    pos, n = 0, len(data)

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            if pos >= n:
                raise TokenizerFormatError("the SentencePiece model is truncated")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while pos < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            yield field, wire, varint()
        elif wire == _WIRE_LEN:
            size = varint()
            if pos + size > n:
                raise TokenizerFormatError("the SentencePiece model is truncated")
            yield field, wire, data[pos : pos + size]
            pos += size
        elif wire in (_WIRE_32, _WIRE_64):
            width = 4 if wire == _WIRE_32 else 8
            yield field, wire, data[pos : pos + width]
            pos += width
        else:
            raise TokenizerFormatError(f"not a SentencePiece model (protobuf wire type {wire})")


@dataclass(frozen=True)
class ModelSettings:
    """What decides how a ``.model`` tokenizes, beyond its pieces (proto2 defaults where unset)."""

    model_type: str = "unigram"
    byte_fallback: bool = False
    normalization: str = "nmt_nfkc"
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    treat_whitespace_as_suffix: bool = False
    n_user_defined: int = 0


def read_settings(proto: bytes) -> ModelSettings:
    """The trainer and normalizer settings of a serialized ``ModelProto`` (later fields win, as in protobuf)."""
    values: dict[str, object] = {}
    n_user = 0
    for field, wire, value in _fields(proto):
        if field == 1 and wire == _WIRE_LEN:
            for f, w, v in _fields(value):  # type: ignore[arg-type]
                if f == 3 and w == _WIRE_VARINT and v == 4:
                    n_user += 1
        elif field == 2 and wire == _WIRE_LEN:
            for f, w, v in _fields(value):  # type: ignore[arg-type]
                if f == 3 and w == _WIRE_VARINT:
                    values["model_type"] = MODEL_TYPES.get(v, str(v))  # type: ignore[arg-type]
                elif f == 35 and w == _WIRE_VARINT:
                    values["byte_fallback"] = bool(v)
                elif f == 24 and w == _WIRE_VARINT:
                    values["treat_whitespace_as_suffix"] = bool(v)
        elif field == 3 and wire == _WIRE_LEN:
            names = {1: "normalization", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}
            for f, w, v in _fields(value):  # type: ignore[arg-type]
                if f == 1 and w == _WIRE_LEN:
                    values["normalization"] = bytes(v).decode("utf-8", "replace")  # type: ignore[arg-type]
                elif f in names and w == _WIRE_VARINT:
                    values[names[f]] = bool(v)
    return ModelSettings(**values, n_user_defined=n_user)  # type: ignore[arg-type]
