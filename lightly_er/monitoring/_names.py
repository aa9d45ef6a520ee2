"""The names of the meter's options and metrics: no torch, no Lightning.

Private: :mod:`lightly_er.monitoring.meter` exports them.
"""

from __future__ import annotations

from typing import Literal, Tuple

Support = Literal["sphere", "discrete"]
"""Embeddings on the unit sphere, or distributions over K prototypes."""

DiscreteInputs = Literal["auto", "logits", "probabilities"]
"""What the rows of discrete outputs hold (``"auto"``: detected)."""

MetricName = Literal[
    "entropy",
    "entropy_gap",
    "normalized_entropy",
    "dimension_score",
    "participation_ratio",
    "collapse_score",
    "effective_rank",
    "std",
    "uniformity",
    "alignment",
    "lidar",
    "conditional_entropy",
    "mutual_information",
    "normalized_mutual_information",
    "prototype_usage",
]
"""Every metric the entropy meter returns, of either support."""

SUPPORTS: Tuple[str, ...] = ("sphere", "discrete")
DISCRETE_INPUTS: Tuple[str, ...] = ("auto", "logits", "probabilities")
SPHERE_METRICS: Tuple[str, ...] = (
    "entropy",
    "entropy_gap",
    "normalized_entropy",
    "dimension_score",
    "participation_ratio",
    "collapse_score",
    "effective_rank",
    "std",
    "uniformity",
)
"""The sphere metrics, in order; ``alignment`` and ``lidar`` follow when second views
are given."""
DISCRETE_METRICS: Tuple[str, ...] = (
    "entropy",
    "normalized_entropy",
    "conditional_entropy",
    "mutual_information",
    "normalized_mutual_information",
    "prototype_usage",
    "collapse_score",
    "effective_rank",
    "std",
)
"""The discrete metrics, in order."""

MonitorMetric = Literal[MetricName, "kl_teacher_student", "criterion"]
"""A name for EntropyMonitor's ``metrics=``: a metric of the meter, the
teacher-student KL (``kl_teacher_student``), or ``criterion`` for the ER loss's
terms (``entropy``, ``reconstruction``, ``er`` and ``bound``, recorded under the
module name ``criterion``)."""
