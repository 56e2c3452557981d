"""Aggregators: fusion and the selection baselines. See :mod:`fusion_of_n.aggregators.base`."""

from .base import Aggregator, AggregatorOptions, build_aggregator, methods, register

__all__ = ["Aggregator", "AggregatorOptions", "build_aggregator", "methods", "register"]
