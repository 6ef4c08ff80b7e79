"""A kubelet-style ConfigMap mount in a temporary directory, updated the way the kubelet does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class KubeletMount:
    """What the kubelet does to a ConfigMap volume: ``egress.yaml -> ..data/egress.yaml``,
    ``..data -> ..<timestamp>``, and an update is a new timestamped directory plus one rename
    of a fresh ``..data_tmp`` symlink over ``..data``."""

    def __init__(self, root: Path, content: str) -> None:
        self.root = root
        self.n = 0
        root.mkdir(parents=True, exist_ok=True)
        target = self._write(content)
        os.symlink(target, root / "..data")
        os.symlink("..data/egress.yaml", root / "egress.yaml")

    @property
    def path(self) -> Path:
        return self.root / "egress.yaml"

    def _write(self, content: str) -> str:
        self.n += 1
        name = f"..2026_11_30_12_00_{self.n:02d}.{1000 + self.n}"
        directory = self.root / name
        directory.mkdir()
        (directory / "egress.yaml").write_text(content)
        return name

    def update(self, content: str) -> None:
        old = os.readlink(self.root / "..data")
        new = self._write(content)
        os.symlink(new, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")  # the atomic swap
        shutil.rmtree(self.root / old)
