"""Third-party plugins: an installed package with an entry point, and ``--plugin file.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN_CODE = '''
"""A tiny third-party attack: returns grey images."""
from dataclasses import dataclass

import torch

from mibench.attack import Attack, AttackSpec
from mibench.config import Config, param
{register_import}


@dataclass
class GreyConfig(Config):
    level: float = param(0.5, "grey level", ge=0, le=1)


{decorator}
class GreyAttack(Attack):
    """Grey images, for testing plugins."""

    spec = AttackSpec(name="{name}", title="Grey baseline", paper="Nobody et al.", year=2026,
                      access="labels", prior="none")
    Config = GreyConfig

    def invert(self, target, labels, ctx):
        return torch.full((len(labels), 3, target.resolution, target.resolution),
                          self.config.level)
'''


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mibench", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_plugin_file_registers_with_the_decorator(tmp_path):
    plugin = tmp_path / "grey.py"
    plugin.write_text(PLUGIN_CODE.format(register_import="from mibench.registry import ATTACKS",
                                         decorator='@ATTACKS.register("grey-file")',
                                         name="grey-file"))
    result = run_cli("--plugin", str(plugin), "list", "attacks")
    assert result.returncode == 0, result.stderr
    assert "grey-file" in result.stdout and "Nobody et al. (2026)" in result.stdout
    assert "labels" in result.stdout


def test_missing_or_broken_plugin_file_is_a_one_line_error(tmp_path):
    result = run_cli("--plugin", str(tmp_path / "nope.py"), "list")
    assert result.returncode == 2
    assert result.stderr.strip() == f"mibench: error: plugin file {tmp_path / 'nope.py'} does " \
                                    "not exist; pass a path to a .py file"
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    result = run_cli("--plugin", str(broken), "list")
    assert result.returncode == 2 and "raised RuntimeError: boom" in result.stderr
    assert "Traceback" not in result.stderr


def test_installed_package_with_an_entry_point(tmp_path):
    pkg = tmp_path / "src"
    (pkg / "mibench_grey").mkdir(parents=True)
    (pkg / "mibench_grey" / "__init__.py").write_text(
        PLUGIN_CODE.format(register_import="", decorator="", name="grey-pkg"))
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "mibench-grey"
        version = "0.0.1"

        [project.entry-points."mibench.attacks"]
        grey-pkg = "mibench_grey:GreyAttack"
        """))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
                    str(pkg)], check=True, capture_output=True, timeout=300)
    result = run_cli("list", "attacks", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert "grey-pkg" in result.stdout and "Grey baseline" in result.stdout


@pytest.mark.parametrize("bad", ["mibench_grey:Missing"])
def test_a_broken_entry_point_names_the_package(tmp_path, bad):
    dist = tmp_path / "site" / "broken_plugin-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(f"[mibench.attacks]\nbroken = {bad}\n")
    result = run_cli("list", "attacks", env={"PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 2
    assert "plugin entry point 'broken' in group mibench.attacks failed to load" in result.stderr


INCOMPLETE_PLUGIN = '''
from mibench.attack import Attack, AttackSpec
{register_import}


{decorator}
class NoInvert(Attack):
    spec = AttackSpec(name="no-invert", title="No invert", paper="Nobody et al.", year=2026,
                      access="labels", prior="none")
'''
NO_INVERT = "attack 'no-invert' ({module}.NoInvert) does not implement `invert`; define " \
            "`invert(self, target, labels, ctx)` returning one image in [0, 1] per label"


def test_an_incomplete_plugin_file_fails_at_list_with_one_line(tmp_path):
    plugin = tmp_path / "bad.py"
    plugin.write_text(INCOMPLETE_PLUGIN.format(
        register_import="from mibench.registry import ATTACKS",
        decorator='@ATTACKS.register("no-invert")'))
    result = run_cli("--plugin", str(plugin), "list", "attacks")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"mibench: error: plugin file {plugin} raised AttackContractError: " \
                            f"{NO_INVERT.format(module='mibench_plugin_bad')}\n"


def test_an_incomplete_entry_point_fails_at_list_with_one_line(tmp_path):
    site = tmp_path / "site"
    dist = site / "no_invert-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: no-invert\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[mibench.attacks]\n"
                                           "no-invert = mibench_noinv:NoInvert\n")
    (site / "mibench_noinv.py").write_text(INCOMPLETE_PLUGIN.format(register_import="",
                                                                    decorator=""))
    result = run_cli("list", env={"PYTHONPATH": str(site)})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"mibench: error: {NO_INVERT.format(module='mibench_noinv')}\n"
