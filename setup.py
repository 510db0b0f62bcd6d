"""Build hook of the server distribution: its wheel carries the files the REST face
reads at run time, which are made outside the package (``envoy/``, ``gen/``), under
``baton_server/_assets`` (see ``baton_server.assets``). Everything else is in
pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent / "src" / "server"))
from baton_server.assets import PACKAGED


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads them from the checkout
        for relative in PACKAGED:
            target = Path(self.build_lib) / "baton_server" / "_assets" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(relative, str(target))


setup(cmdclass={"build_py": BuildWithAssets})
