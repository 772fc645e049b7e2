"""A FIGARO training pack from a sample build, split as the full build splits its songs.

    python -m training.figaro.subset --full data/dataset --sample data/sample-ft --out data/figaro-ft.npz

A sample build (``training.data.build --sample-per-corpus N``) draws its own split from the songs it holds, so
its validation songs are not the full build's. This computes the split the full build gives every song
(the same scan, deduplication and seeded permutation as :func:`training.data.build.build`, from the
full build's ``build_config.json``; no file is extracted: note hashes come from the multi corpora's
``index.csv`` and from the shared per-file cache) and writes the sample's non-overlapping segments into a
pack whose ``train`` / ``val`` / ``test`` are the full build's. A model fine-tuned on that ``train`` is
scored on validation songs it never saw, and those songs are validation songs of the full build too.

Used while the full build was still running (issue 15): training and evaluation started on a sample.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from training.data.build import (
    BuildConfig,
    assign_splits,
    cache_key,
    deduplicate,
    extractor_digest,
    note_hashes,
    scan_all,
)
from training.figaro.data import save_pack
from training.figaro.train import load_segments

SPLITS = ("train", "val", "test")


def read_build_config(path: Path) -> BuildConfig:
    """The :class:`BuildConfig` of a build folder's ``build_config.json``."""
    data = json.loads(path.read_text())
    known = set(BuildConfig.__dataclass_fields__)
    data = {k: v for k, v in data.items() if k in known}
    data["corpora"] = tuple(data["corpora"])
    return BuildConfig(**data)


def full_splits(full: Path, cache_dir: Path) -> dict[tuple[str, str], str]:
    """(corpus, song id) -> split of the full build in ``full`` (its config; hashes from ``cache_dir``)."""
    config = read_build_config(full / "build_config.json")
    pieces = scan_all(config)
    code = extractor_digest()
    keys = {p.name: cache_key(p, config, code) for ps in pieces.values() for p in ps}
    kept, _ = deduplicate(pieces, note_hashes(pieces, keys, cache_dir))
    assignment = assign_splits(
        kept, seed=config.seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    return {(corpus, song): split for corpus, songs in assignment.items() for song, split in songs.items()}


def pack_by_full_split(full: Path, sample: Path, out: Path, cache_dir: Path) -> dict[str, Counter]:
    """Write ``out`` (a pack) from ``sample``'s segments by the full build's split; corpus counts."""
    split_of = full_splits(full, cache_dir)
    grouped: dict[str, list] = {s: [] for s in SPLITS}
    unknown = 0
    for split in SPLITS:
        for seg in load_segments(str(sample), split):
            target = split_of.get((str(seg.corpus), str(seg.song_id)))
            if target is None:
                unknown += 1
            else:
                grouped[target].append(seg)
    if unknown:
        print(f"figaro_subset: {unknown} segments of songs the full build does not have, left out")
    save_pack(out, grouped)
    return {s: Counter(str(seg.corpus) for seg in segs) for s, segs in grouped.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.figaro.subset", description=__doc__.split("\n")[0])
    p.add_argument("--full", type=Path, required=True, help="the full build's folder (its build_config.json)")
    p.add_argument("--sample", type=Path, required=True, help="a sample build's folder")
    p.add_argument("--out", type=Path, required=True, help="the pack to write (.npz)")
    p.add_argument("--cache", type=Path, help="per-file cache (default: FULL/cache)")
    args = p.parse_args(argv)
    try:
        counts = pack_by_full_split(args.full, args.sample, args.out, args.cache or args.full / "cache")
    except (OSError, ValueError, KeyError) as err:
        print(f"figaro_subset: error: {err}", file=sys.stderr)
        return 2
    for split, by_corpus in counts.items():
        print(f"{split}: {sum(by_corpus.values())} segments " + json.dumps(dict(sorted(by_corpus.items()))))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
