"""Krumhansl-Kessler key profiles: how well each pitch class fits a major or minor key.

Krumhansl & Kessler (1982) probe-tone ratings, index 0 = the tonic. One home for the key finder
(:mod:`e2m_live.analysis`) and the decoder's key lock (:mod:`e2m_live.figaro.constraints`), so the
runtime decoder does not import the offline feature estimator.
"""

from __future__ import annotations

import numpy as np

KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

__all__ = ["KK_MAJOR", "KK_MINOR"]
