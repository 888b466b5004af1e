"""Case study name -> its KServe Model class, found by convention: the contract names the case
study, and `_<name with underscores>.py` in this package holds the CaseStudyModel subclass whose
`case_study` is that name. Imported lazily: each pulls in kserve and onnxruntime."""

from __future__ import annotations

import importlib

from mlsd_contract import CASE_STUDIES


def model_class(case_study: str):
    if case_study not in CASE_STUDIES:
        raise ValueError(f"unknown case study {case_study!r} (one of {', '.join(CASE_STUDIES)})")
    from ._model import CaseStudyModel

    module = importlib.import_module(f"._{case_study.replace('-', '_')}", __package__)
    found = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, CaseStudyModel)
             and obj.__module__ == module.__name__ and getattr(obj, "case_study", None) == case_study]
    if len(found) != 1:
        raise LookupError(f"{module.__name__} must define one CaseStudyModel with case_study = {case_study!r}, "
                          f"found {len(found)}")
    return found[0]
