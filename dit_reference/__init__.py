"""The pack's reference models and the demo: what the tests, the benchmarks and the demo run the
engine on, outside ComfyUI (and, for the Flux digits model, inside it).

* ``model.py``: the reference DiT (a small class-conditional adaLN-zero DiT on 8x8 digits) and its
  side of :class:`cache_core.stack.StackHooks`; weights in ``data/reference_dit.safetensors``
  (trained by ``reference/train_reference.py``).
* ``sampling.py``: its Euler flow-matching sampler with batched CFG, optionally through a
  :class:`cache_core.stack.CacheController`.
* ``classifier.py``: the digits classifier (logistic regression in ``data/reference_classifier.json``).
* ``flux_digits.py``: the fixed pixel/latent and digit/conditioning maps of the Flux digits model
  (``data/diffusion_models/dit_cache_flux_digits.safetensors``, ComfyUI's own Flux class; the
  digits nodes in ``nodes/digits_nodes.py`` use it).
* ``calibrate.py``, ``learn.py``: the engine's TeaCache calibration and L2C learning on the
  reference DiT (``python -m dit_reference calibrate|learn``).
* ``demo.py``: the main job, ``python -m dit_reference.demo``.

The engine (``cache_core``) never imports this package (``tests/core/test_engine_boundary.py``).
"""
