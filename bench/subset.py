"""The embedded RouterBench subset that ``bench.tuning`` and ``bench.router_experiments`` read, built from the
shipped rows (``data/routerbench_subset``) with the library's own steps::

    python -m bench.subset /tmp/rb/subset.npz [--rows N] [--home DIR] [--data DIR] [--raw]

The CSV files are ingested into a scratch workspace (``--home``, default a temporary folder removed afterwards),
their prompts embedded with the configured encoder (``ROUTER_ENCODER``, by default the bundled all-MiniLM-L6-v2:
a few minutes for the 3,178 prompts on 2 CPU cores), and the train and test splits read back exactly as training
reads them (``router.pipeline.load_splits``). ``--rows N`` keeps the first N rows of each file (a quick check);
``--data DIR`` reads another folder of RouterBench-format CSV files (e.g. ``data/llmrouter_9models``). The vectors
are the configured representation (by default templates stripped, long prompts read in up to 8 windows); ``--raw``
embeds the raw prompts cut at the encoder's window instead (:data:`RAW`), the representation several tables of
docs/router.md were measured on.

The ``.npz`` holds what :func:`bench.tuning.load_npz` expects: ``X`` (n, dim) vectors, ``Q``/``C`` (n, models)
quality and cost (NaN = not observed), ``chars`` prompt lengths, ``models`` the column names, ``split``
("train"/"test") and ``eval_name`` per row, train rows first.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from router.settings import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "data" / "routerbench_subset"
#: Settings of the raw representation: no template stripped, each prompt cut at the encoder's window.
RAW = {"embed_templates": False, "embed_max_chunks": 1}


def land(home: Path, rows: int | None = None, source: Path = SOURCE) -> list[Path]:
    """Copy ``source``'s CSVs (the first ``rows`` rows of each when given) into ``home``'s landing."""
    import polars as pl

    target = home / "landing" / "routerbench"
    target.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(source.glob("*.csv")):
        dst = target / src.name
        if rows is None:
            shutil.copy2(src, dst)
        else:
            pl.read_csv(src, infer_schema_length=0).head(rows).write_csv(dst)
        out.append(dst)
    return out


def build(out: Path, home: Path, rows: int | None = None, source: Path = SOURCE, raw: bool = False
          ) -> dict[str, int]:
    """Ingest, embed (``raw``: :data:`RAW`) and write ``out``; returns the number of train and test prompts
    written."""
    from router import nightly
    from router.pipeline import load_splits
    from router.settings import Settings
    from router.storage import open_store

    settings = Settings(home=home, **(RAW if raw else {}))
    settings.ensure_workspace()
    land(home, rows, source)
    ingested = nightly.ingest_landing(settings)
    if ingested.rejected:
        raise RuntimeError(f"the files of {source} were rejected: {ingested.rejected}")
    nightly.embed(settings)
    with open_store(settings, read_only=True) as con:
        train, test = load_splits(con, settings)
    n_train, n_test = train.n, test.n
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        X=np.concatenate([train.X, test.X]).astype(np.float32),
        Q=np.concatenate([train.quality, test.quality]).astype(np.float32),
        C=np.concatenate([train.cost, test.cost]).astype(np.float32),
        chars=np.concatenate([train.prompt_chars, test.prompt_chars]).astype(np.int64),
        models=np.array(train.models, dtype=str),
        split=np.array(["train"] * n_train + ["test"] * n_test, dtype=str),
        eval_name=np.concatenate([train.eval_names, test.eval_names]).astype(str),
    )
    return {"train": n_train, "test": n_test}


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help=".npz to write (e.g. /tmp/rb/subset.npz)")
    parser.add_argument("--rows", type=int, help="keep the first N rows of each shipped file (a quick check)")
    parser.add_argument("--home", type=Path, help="scratch workspace to build in (kept; default: a temp folder)")
    parser.add_argument("--data", type=Path, default=SOURCE, help="folder of RouterBench-format CSV files "
                        "(default: data/routerbench_subset)")
    parser.add_argument("--raw", action="store_true", help="embed the raw prompts, cut at the encoder's window")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="router-subset-"))
    try:
        counts = build(args.out, home, args.rows, args.data, args.raw)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    print(f"wrote {args.out}: {counts['train']} train and {counts['test']} test prompts")
    return counts


if __name__ == "__main__":
    main()
