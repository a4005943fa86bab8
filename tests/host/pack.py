"""Imports this repository as a ComfyUI custom-node package (see ``devtools.comfy_host.load_pack``)."""
from devtools.comfy_host import PACK_NAME as NAME, load_pack, pack_module as sub  # noqa: F401
