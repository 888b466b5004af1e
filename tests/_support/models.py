"""Model repositories the serving and image tiers share, built at the small size (`mlsd build --small`)."""

from __future__ import annotations

from pathlib import Path

CASES = ("ad-click-prediction", "harmful-content", "visual-search", "video-recommendation")


def serving_models(out: Path) -> Path:
    """Version 1 of every case study, plus ad-click versions 2 and 3 (`mlsd serve`'s canary and
    shadow); a version already under `out` is reused, so tiers of one session build each once."""
    from mlsd_predictors.build import BuildOptions, build_case_study

    wanted = [(case, 1, 0) for case in CASES] + [("ad-click-prediction", 2, 1), ("ad-click-prediction", 3, 2)]
    for case, version, seed in wanted:
        if not (out / case / str(version) / "model-card.json").is_file():
            build_case_study(case, BuildOptions(version=version, out=out, small=True, seed=seed, overwrite=True))
    return out
