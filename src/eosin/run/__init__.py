"""Running stages over cohorts: a per-slide stage is a function of (slide, parameters) mapped by an executor."""

from eosin.run._executor import SlideResult, map_slides

__all__ = ["SlideResult", "map_slides"]
