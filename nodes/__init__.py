"""ComfyUI side of dit-cache: nodes, the run holder and one adapter per model family.

Imported only as a subpackage of the pack (never as top-level ``nodes``, which is ComfyUI's)."""
