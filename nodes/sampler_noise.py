"""Which ComfyUI samplers add fresh noise at every step.

Ancestral and SDE samplers (``euler_ancestral``, ``dpmpp_2m_sde``, ``dpmpp_sde``, ``er_sde``, ...)
add noise to the latent after every step, so the model's input changes by roughly the injected
noise's size at every evaluation and TeaCache's accumulated change passes the threshold far more
often than with deterministic samplers (``euler``, ``dpmpp_2m``, ``heun``, ...). Cache Stats names
the sampler when that is why nothing was reused (README, Troubleshooting, has measured counts).
"""
from __future__ import annotations

# k-diffusion sampler names (comfy/samplers.py KSAMPLER_NAMES, 0.3.64 and 0.29.0) that add noise at
# every step unless their eta / s_noise is 0; "ancestral" and "sde" names are matched by substring
_NOISY = {"ddpm", "lcm", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece"}
_ALWAYS = {"ddpm", "lcm"}  # no eta: the noise is the method


def sampler_name(sampler) -> str:
    """The sampler's name as in ComfyUI's list (``euler_ancestral``), from a ``KSAMPLER``'s
    k-diffusion function; the class name for other samplers."""
    fn = getattr(sampler, "sampler_function", None)
    name = getattr(fn, "__name__", "") or ""
    if name.startswith("sample_"):
        return name[len("sample_"):]
    return name or type(sampler).__name__


def adds_noise(name: str, extra_options: dict | None = None) -> bool:
    """Whether the sampler ``name`` with these options (``eta``, ``s_noise`` as the Sampler* nodes
    set them) adds fresh noise at every step."""
    opts = extra_options or {}
    if name in _ALWAYS:
        return True
    if not ("ancestral" in name or "sde" in name or name in _NOISY):
        return False
    return opts.get("eta", 1.0) != 0 and opts.get("s_noise", 1.0) != 0


def describe_sampler(sampler) -> tuple[str, bool]:
    """(name, adds noise at every step) of a ComfyUI sampler object."""
    name = sampler_name(sampler)
    return name, adds_noise(name, getattr(sampler, "extra_options", None))
