"""What a clustering job reports about its clusters and its search."""

from __future__ import annotations

from typing import Any

import pandas as pd

from zhuge.jobs.cluster.params import PROFILE_TOP


def profile_summary(profile: pd.DataFrame) -> list[dict[str, Any]]:
    """Per cluster: size, share and the PROFILE_TOP features that set it apart most; the
    noise rows (label -1) last, marked ``"noise": true`` (they are no cluster)."""
    out = []
    for label, part in profile.groupby("cluster", sort=True):
        top = part.head(PROFILE_TOP)
        out.append(
            {
                "cluster": int(label),
                "noise": bool(label < 0),
                "size": int(part["size"].iloc[0]),
                "share": float(part["share"].iloc[0]),
                "features": top[
                    ["feature", "mean", "median", "overall_mean", "difference_sd"]
                ].to_dict(orient="records"),
            }
        )
    return sorted(out, key=lambda c: c["noise"])  # stable: clusters by label, then noise


def search_report(seg: Any) -> dict[str, Any]:
    search = seg.search_
    gap = search.gap
    return {
        "algorithm": seg.result_.algorithm,
        "params": seg.result_.params,
        "n_clusters": int(seg.n_clusters_),
        "can_predict": bool(seg.result_.can_predict),
        "winner": search.winner_record.candidate.label(),
        "reason": search.reason,
        # auto: the validity index that ranked the winner best ("" for an explicit search)
        "decided_by": getattr(search, "decided_by", ""),
        "k_selection": search.k_selection,
        "gap": None if gap is None else {"k": gap.ks, "gap": gap.gap, "s": gap.s},
        "rungs": search.rungs,
        "candidates": search.table(),
        "processes": sorted({r.process for r in search.candidates if r.process}),
        "notes": list(seg.notes_),
        "plan": seg.plan_.as_dict(),
        "preprocessing": seg.preprocessor_.description_ if seg.preprocessor_ else ["none"],
    }
