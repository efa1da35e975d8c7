"""Running stages over cohorts: a per-slide stage is a function of (slide, parameters) mapped by an executor."""

from eosin._lazy import lazy_getattr
from eosin.run._executor import SlideResult, map_slides
from eosin.run._inputs import dask_executor, find_slides

__all__ = [
    "STORE_NAME",
    "SlideJob",
    "SlideResult",
    "dask_executor",
    "find_slides",
    "job_store",
    "load_or_detect_tissue",
    "map_slides",
    "plan_outputs",
    "resolve_store",
    "resolve_stores",
    "store_in",
    "store_name",
    "tile_stage",
    "tissue_stage",
]

# the per-slide stages import numpy: loaded on first use
__getattr__ = lazy_getattr(
    __name__,
    {
        **{
            k: "eosin.run._stages"
            for k in (
                "STORE_NAME",
                "SlideJob",
                "job_store",
                "load_or_detect_tissue",
                "plan_outputs",
                "tile_stage",
                "tissue_stage",
            )
        },
        **{k: "eosin.run._resolve" for k in ("resolve_store", "resolve_stores", "store_in", "store_name")},
    },
)
