"""The whole test suite, as README's test command runs it: the core tests in this environment,
then the host suite against every ComfyUI found (``tests/hosts.py``: ``COMFYUI_PATH``, the
checkout holding this pack, and each source tree in ``../shared/comfyui/``, each in its own
environment), ending with one ``host tests ran: N of M ... against ComfyUI <version>`` line per
release.

    python tests/run_all.py [pytest args...]     # args go to every pytest run

Exit status: 0 when every run passed, else the first failing run's status.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import hosts  # noqa: E402


def main(argv: list[str]) -> int:
    core = subprocess.run([sys.executable, "-m", "pytest", "--ignore", str(HERE / "host"), *argv],
                          cwd=str(HERE.parent))
    print(f"core tests: pytest exited {core.returncode}", flush=True)
    host_rc = hosts.run_hosts(argv)
    return core.returncode or host_rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
