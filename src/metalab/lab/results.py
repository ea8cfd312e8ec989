"""Results for notebooks: :func:`load` turns stored seeds into a pandas DataFrame.

    >>> import metalab.lab
    >>> df = metalab.lab.load("metalab-runs/store.sqlite", "optimistic-mg")
    >>> df.groupby("preset")["speedup/omg"].describe()

The store is opened read-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metalab.lab.store import Store


def load(
    store: str | Path | Store,
    name: str,
    *,
    config_hash: str | None = None,
    code_version: str | None = None,
    latest: bool = False,
    sweep: str | None = None,
) -> Any:
    """Stored seeds of experiment ``name`` as a ``pandas.DataFrame``.

    One row per stored seed of every config group (narrow it with ``config_hash``,
    ``code_version``, or ``latest=True`` for the group of the latest finished invocation).
    Columns: ``experiment``, ``config_hash``, ``code_version``, ``preset``, ``seed``,
    ``wall_seconds``, ``finished_at`` (a timestamp), then one column per scalar (0-d) metric
    under its metric name, then the config fields (``config.<field>``; tuples stay tuples).
    Array-valued metrics are left out (read them with :meth:`Store.get_results`). Unreadable
    rows are skipped. An empty frame with those leading columns if nothing is stored.

    ``sweep`` (a sweep id, id prefix, or ``"all"``): instead, one row per (sweep point, seed)
    of ``name``'s sweeps and scaling studies, with the swept values as columns (see
    :func:`metalab.lab.sweep.sweep_frame`).
    """
    import pandas as pd

    st = store if isinstance(store, Store) else Store(store, readonly=True)
    st.check()
    if sweep is not None:
        from metalab.lab.sweep import sweep_frame

        return sweep_frame(st, None if sweep == "all" else sweep, experiment=name)
    invs = st.invocations()
    if latest:
        fin = [i for i in invs if i.experiment == name and i.status == "finished"]
        if fin:
            config_hash, code_version = fin[-1].config_hash, fin[-1].code_version
    by_group = {(i.config_hash, i.code_version): i for i in invs if i.experiment == name}
    groups = {
        (h, v)
        for e, h, _s, v, _t in st.result_rows(name)
        if (config_hash is None or h == config_hash) and (code_version is None or v == code_version)
    }
    walls = {
        (h, v, int(s)): (float(w), float(t))
        for h, v, s, w, t in st._read(
            "SELECT config_hash, code_version, seed, wall_seconds, finished_at FROM results "
            "WHERE experiment=?",
            (name,),
        )
    }
    records: list[dict[str, Any]] = []
    for h, v in sorted(groups):
        inv = by_group.get((h, v))
        cfg = {
            f"config.{k}": (tuple(x) if isinstance(x, list) else x)
            for k, x in (inv.config if inv else {}).items()
        }
        for seed, metrics in sorted(st.get_results(name, h, v).items()):
            wall, when = walls.get((h, v, seed), (np.nan, np.nan))
            row: dict[str, Any] = {
                "experiment": name,
                "config_hash": h,
                "code_version": v,
                "preset": inv.preset if inv else None,
                "seed": seed,
                "wall_seconds": wall,
                "finished_at": pd.Timestamp(when, unit="s") if when == when else pd.NaT,
            }
            for k, x in metrics.items():
                a = np.asarray(x)
                if a.ndim == 0 and a.dtype.kind in "fiub":
                    row[k] = a.item()
            row.update(cfg)
            records.append(row)
    lead = [
        "experiment",
        "config_hash",
        "code_version",
        "preset",
        "seed",
        "wall_seconds",
        "finished_at",
    ]
    if not records:
        return pd.DataFrame(columns=lead)
    df = pd.DataFrame.from_records(records)
    return df[lead + [c for c in df.columns if c not in lead]]
