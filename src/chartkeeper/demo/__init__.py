"""Synthetic demo population (FHIR R4) for Chartkeeper: see :mod:`chartkeeper.demo.generator`."""

from chartkeeper.demo.generator import generate, generate_truth

__all__ = ["generate", "generate_truth"]
