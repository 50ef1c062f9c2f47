"""Build fake installed distributions with msabench entry points for plugin-discovery tests."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path


def install_fake_plugin(site: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    """Write ``module.py`` and a ``<dist>-0.1.dist-info`` declaring entry point ``ep_name``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[msabench]\n{ep_name} = {module}\n")
    importlib.invalidate_caches()
    sys.modules.pop(module, None)
