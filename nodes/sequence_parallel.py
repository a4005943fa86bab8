"""Block-stack hooks for sequence-parallel engines that shard a sample's tokens over ranks.

Where every block sees the same shard (raylight's Wan: ``x`` is chunked once before the blocks
and gathered once after), the family's own hooks work per rank: each rank caches the residual of
its own shard, and the decision sync (``cache_core/sync.py``) gives every rank the same decision.

raylight's Flux re-chunks inside the stack (``diffusion_models/flux/xdit_context_parallel.py``,
``usp_dit_forward``): the double blocks see shards of the padded ``img`` and ``txt``; then both are
gathered, cut to their lengths, joined as ``cat(txt, img)``, padded to a multiple of the world size
and chunked again for the single blocks. So the last block's output shard covers other token
positions than block 0's image shard, and Flux's hooks (which take the last image tokens of the
output) would cache a wrong residual on every rank. :class:`RechunkedFluxHooks` keeps the
residual in the last block's layout instead.
"""
from __future__ import annotations


from .adapters.base import AdapterMismatchError
from .adapters.flux import FluxHooks


class RechunkedFluxHooks:
    """Flux hooks for raylight's USP layout. The residual of rank ``r`` (of ``W``) is its shard of
    ``cat(txt, img)`` after the last block minus the same positions of ``cat(0, img at block 0)``
    (zero on text positions); a reuse adds it to the last block's own input shard, which on a
    reuse step is exactly those positions of ``cat(txt, img at block 0)``. Computing it needs block
    0's image from every rank: one gather of the stack input over the sequence-parallel group on
    computed steps (all ranks compute together, so the collective is matched).

    Image positions past the image's length are raylight's padding; their residual is meaningless
    and raylight drops those positions after its final gather."""

    restore_at_last_block = True

    def __init__(self, base: FluxHooks, sync):
        self.base = base
        self.sync = sync
        self.n_blocks = base.n_blocks
        self.n_double = base.n_double

    def indicator(self, inputs):
        return self.base.indicator(inputs)

    def stack_input(self, inputs):
        return inputs["img"]

    def hidden_keys(self, index):
        return self.base.hidden_keys(index)

    def stack_output(self, index, outputs, inputs, like):  # the residual below replaces it
        return outputs["img"]

    def residual(self, index, outputs, inputs, stack_in):
        out = outputs["img"]
        topts = inputs.get("transformer_options") or {}
        img_slice = topts.get("img_slice")
        if not img_slice:
            raise AdapterMismatchError(
                "dit-cache flux adapter: the sequence-parallel Flux forward did not set transformer_options"
                "['img_slice'] before the single blocks (raylight's usp_dit_forward does); this raylight "
                "release changed its Flux forward. Update dit-cache, or run without sequence parallelism")
        txt_len = int(img_slice[0])
        world, rank = self.sync.token_world, self.sync.token_rank
        shard = out.shape[1]
        image = self.sync.gather_tokens(stack_in, dim=1)  # [B, padded image tokens, D]
        joined = out.new_zeros(out.shape[0], shard * world, out.shape[2])
        n = max(0, min(image.shape[1], joined.shape[1] - txt_len))
        joined[:, txt_len:txt_len + n] = image[:, :n].to(out.dtype)
        res = out - joined[:, rank * shard:(rank + 1) * shard]
        text_here = min(shard, max(0, txt_len - rank * shard))
        if text_here:
            res[:, :text_here] = 0
        return res

    def final_outputs(self, index, inputs, final):
        return {"img": inputs["img"] + final}


def parallel_hooks(adapter, hooks, sync):
    """The hooks a family needs when ``sync`` shards its tokens (``sync.token_world > 1``):
    ``hooks`` unchanged where every block sees one shard layout, :class:`RechunkedFluxHooks` for
    Flux. Raises ValueError for a family whose sequence-parallel layout dit-cache has not checked."""
    if sync is None or sync.token_world <= 1:
        return hooks
    if adapter.name == "flux":
        return RechunkedFluxHooks(hooks, sync)
    if adapter.name == "wan":
        return hooks
    raise ValueError(f"dit-cache supports sequence parallelism (raylight USP) for Flux and Wan; "
                     f"{adapter.display} is not checked under it yet. Use raylight's CFG or FSDP mode for this "
                     "model (set Ulysses/Ring degree 1), or remove the cache node")


__all__ = ["RechunkedFluxHooks", "parallel_hooks"]
