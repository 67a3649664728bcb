"""Puts the rule and suite manifests into the wheel.

The manifests live at the top of the repository (rules/, suites/), where a
checkout reads them (disco_eval.paths.manifest_dir). A wheel has no such folders,
so building one copies them into the package as disco_eval/manifests/rules and
disco_eval/manifests/suites; everything else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MANIFEST_KINDS = ("rules", "suites")


class BuildWithManifests(build_py):
  """build_py that also copies rules/*.toml and suites/*.toml into the package."""

  def run(self):
    super().run()
    if getattr(self, "editable_mode", False):
      return  # an editable install reads the checkout's folders
    here = Path(__file__).resolve().parent
    for kind in MANIFEST_KINDS:
      target = Path(self.build_lib) / "disco_eval" / "manifests" / kind
      target.mkdir(parents=True, exist_ok=True)
      for source in sorted((here / kind).glob("*.toml")):
        shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildWithManifests})
