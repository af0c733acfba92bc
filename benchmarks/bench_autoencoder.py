"""Exported auto-encoder tokenizers next to hf-bytelevel and bpe of the same vocab size, on a held-out file.

For every ``--tokenizer`` directory (an ``mtx autoencoder export`` output) this
trains an ``hf-bytelevel`` and a ``bpe`` tokenizer of the same vocab size on
the same training files (``--data_dir`` minus ``--exclude``), then measures
each tokenizer in a fresh process (so peak RSS is its own): bytes per token on
``--heldout``, encode MB/s (median of ``--repeats`` encodes of the whole file),
peak RSS after one encode and after all repeats, and how many of the
non-byte ids the encoded file uses (vocabulary utilization as emitted ids,
fallback pieces included).

    python benchmarks/bench_autoencoder.py --tokenizer tok_8192/ tok_32768/ \\
        --data_dir /work/shared/data --exclude pride_and_prejudice.txt README.md \\
        --heldout /work/shared/data/pride_and_prejudice.txt --work_dir /tmp/bench_ae
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import json, statistics, sys, time
from microtransformer.tokenization import MicroTransformerTokenizer
def rss():  # VmHWM: this process's own peak (ru_maxrss after fork+exec can report the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, heldout, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = MicroTransformerTokenizer.from_pretrained(path)
loaded = rss()
text = open(heldout, encoding="utf-8").read()
nb = len(text.encode("utf-8"))
times = []
for r in range(repeats):
    t = time.perf_counter(); ids = tok.encode_ordinary(text); times.append(time.perf_counter() - t)
    if r == 0:
        once = rss()
assert tok.decode(ids) == text
n_codes = tok.vocab_size - len(tok.special_tokens) - 256
used = len({i for i in ids if 256 <= i < tok.vocab_size - len(tok.special_tokens)})
print(json.dumps({"engine": tok.engine_name, "vocab_size": tok.vocab_size, "bytes_per_token": nb / len(ids),
    "mb_s": nb / 1e6 / statistics.median(times), "mb_s_min": nb / 1e6 / max(times), "mb_s_max": nb / 1e6 / min(times),
    "rss_loaded_mb": loaded, "rss_one_encode_mb": once, "rss_peak_mb": rss(), "used": used, "n_codes": n_codes,
    "torch_imported": "torch" in sys.modules}))
"""


def _measure(path: Path, heldout: str, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), heldout, str(repeats)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", nargs="+", required=True, help="exported autoencoder tokenizer dirs")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--exclude", nargs="*", default=())
    p.add_argument("--heldout", required=True)
    p.add_argument("--work_dir", required=True, help="where the peer tokenizers are saved")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from microtransformer.tokenization import MicroTransformerTokenizer

    files = sorted(f for f in Path(args.data_dir).glob("*.txt") if f.name not in set(args.exclude))
    docs = [f.read_text(encoding="utf-8") for f in files]
    print(f"peers trained on: {', '.join(f.name for f in files)}; held out: {args.heldout}")
    print("| tokenizer | vocab | bytes/token | vs hf-bytelevel | encode MB/s (min..max) | RSS loaded / 1 encode / peak MB | non-byte ids used |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for tok_dir in args.tokenizer:
        ae = _measure(Path(tok_dir), args.heldout, args.repeats)
        rows = [(tok_dir, ae)]
        for engine in ("hf-bytelevel", "bpe"):
            out = Path(args.work_dir) / f"{engine}_{ae['vocab_size']}"
            if not (out / "tokenizer_config.json").is_file():
                t0 = time.perf_counter()
                MicroTransformerTokenizer.train_from_iterator(docs, engine=engine, vocab_size=ae["vocab_size"]).save(out)
                print(f"<!-- trained {engine} {ae['vocab_size']} in {time.perf_counter() - t0:.1f} s -> {out} -->")
            rows.append((str(out), _measure(out, args.heldout, args.repeats)))
        hf = rows[1][1]["bytes_per_token"]
        for name, m in rows:
            print(f"| {m['engine']} (`{name}`) | {m['vocab_size']:,} | {m['bytes_per_token']:.3f} | "
                  f"{100 * (m['bytes_per_token'] / hf - 1):+.1f} % | {m['mb_s']:.2f} ({m['mb_s_min']:.2f}..{m['mb_s_max']:.2f}) | "
                  f"{m['rss_loaded_mb']:.1f} / {m['rss_one_encode_mb']:.1f} / {m['rss_peak_mb']:.1f} | "
                  f"{m['used']:,}/{m['n_codes']:,} = {100 * m['used'] / max(m['n_codes'], 1):.1f} % |")
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    main()
