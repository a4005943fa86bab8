"""Chroma and Chroma Radiance (pixel space, which runs Chroma's own block loop between its patch
embedding and its NeRF decoder head): Flux-shaped blocks, 19+38 at full size, but modulation comes
precomputed per block from the distilled guidance approximator instead of each block's own
`img_mod`. No TeaCache coefficients are published for Chroma; the Flux set is borrowed (same block
design, same indicator). None for Chroma Radiance either, whose input is pixel patches: raw."""
from __future__ import annotations

from .base import ReplaceAdapter, require, double_single_keys
from .flux import FluxHooks


class ChromaHooks(FluxHooks):
    def __init__(self, dm, n_double: int, n_single: int, family: str):
        # FluxHooks.__init__ would require `img_mod`, which Chroma blocks do not have
        self.dm = dm
        self.n_double = n_double
        self.n_blocks = n_double + n_single
        self.first = dm.double_blocks[next(i for i in range(len(dm.double_blocks)) if i not in dm.skip_mmdit)]
        require(self.first, "img_norm1", family=family)

    def indicator(self, inputs):
        # the block receives vec = ((img_mod1, img_mod2), (txt_mod1, txt_mod2)); this is the
        # modulated image input its attention sees, as TeaCache4FLUX measures it
        (mod1, _), _ = inputs["vec"]
        return self.first.img_norm1(inputs["img"]) * (1 + mod1.scale) + mod1.shift


class ChromaAdapter(ReplaceAdapter):
    name = "chroma"
    display = "Chroma"
    default_profile = "flux"       # none published for Chroma: borrowed from Flux
    recommended_threshold = 0.4    # Flux's published 1.8x setting, borrowed as well

    def __init__(self, model_patcher):
        super().__init__(model_patcher)
        require(self.dm, "double_blocks", "single_blocks", "skip_mmdit", "skip_dit", family=self.name)

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.chroma.model import Chroma
        return type(model_patcher.model.diffusion_model) is Chroma  # ChromaRadiance subclasses it

    def variant(self) -> str:
        return "base"

    def _double(self):
        return [i for i in range(len(self.dm.double_blocks)) if i not in self.dm.skip_mmdit]

    def _single(self):
        return [i for i in range(len(self.dm.single_blocks)) if i not in self.dm.skip_dit]

    def block_keys(self):
        # blocks listed in skip_mmdit / skip_dit never run, so they get no patch and no index
        return double_single_keys(self._double(), self._single())

    def hooks(self):
        return ChromaHooks(self.dm, len(self._double()), len(self._single()), self.name)


class ChromaRadianceAdapter(ChromaAdapter):
    name = "chroma_radiance"
    display = "Chroma Radiance"
    default_profile = "raw"        # none published: calibrate for better results
    recommended_threshold = 0.15

    @classmethod
    def matches(cls, model_patcher) -> bool:
        from comfy.ldm.chroma_radiance.model import ChromaRadiance
        return type(model_patcher.model.diffusion_model) is ChromaRadiance

    def variant(self) -> str:
        return "x0" if hasattr(self.dm, "__x0__") else "radiance"
