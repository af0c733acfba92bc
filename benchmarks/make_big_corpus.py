"""A synthetic web-like corpus from the shared books, as JSON Lines and Parquet, for the `mtx data prepare` benchmark.

The five books of ``../shared/data`` (8.8 MB) are cut at blank lines into
documents of ~4 KB (1,933 of them) and written ``--copies`` times, each copy
with its own ids: ``NAME.jsonl`` (``{"id", "text"}`` per line) and
``NAME.parquet`` (columns ``id``, ``text``; one row group per copy). Write it
outside the repository::

    python benchmarks/make_big_corpus.py --out_dir /tmp/big --copies 1 --name small    # 8.8 MB
    python benchmarks/make_big_corpus.py --out_dir /tmp/big --copies 116 --name big    # ~1 GB

Parquet needs pyarrow (the ``[parquet]`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOOKS = ("war_and_peace", "don_quixote", "moby_dick", "tinyshakespeare", "pride_and_prejudice")
DOC_CHARS = 4000


def documents() -> list[str]:
    text = "".join((SHARED / f"{b}.txt").read_text(encoding="utf-8") for b in BOOKS).replace("\r\n", "\n")
    docs, current = [], []
    for paragraph in text.split("\n\n"):
        current.append(paragraph)
        if sum(map(len, current)) > DOC_CHARS:
            docs.append("\n\n".join(current))
            current = []
    if current:
        docs.append("\n\n".join(current))
    return docs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out_dir", required=True)
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--name", default="corpus")
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = documents()
    with open(out / f"{args.name}.jsonl", "w", encoding="utf-8") as f:
        for c in range(args.copies):
            for i, d in enumerate(docs):
                f.write(json.dumps({"id": f"{c}-{i}", "text": d}, ensure_ascii=False) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(out / f"{args.name}.parquet", schema) as w:
        for c in range(args.copies):
            w.write_table(pa.table({"id": [f"{c}-{i}" for i in range(len(docs))], "text": docs}, schema=schema))
    for suffix in ("jsonl", "parquet"):
        print(f"{out / f'{args.name}.{suffix}'}: {(out / f'{args.name}.{suffix}').stat().st_size / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
