"""The ComfyUI extension: the node list of this pack."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import folders


class DitCacheExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .compare_node import CacheCompare
        from .digits_nodes import digits_nodes
        from .l2c_node import L2CScheduleLoader
        from .raylight import raylight_nodes
        from .learn_nodes import extra_nodes
        from .stats_node import CacheStats
        from .teacache_node import TeaCachePatch
        return [TeaCachePatch, L2CScheduleLoader, CacheStats, CacheCompare] + extra_nodes() + digits_nodes() + raylight_nodes()


async def comfy_entrypoint() -> DitCacheExtension:
    folders.register()
    return DitCacheExtension()
