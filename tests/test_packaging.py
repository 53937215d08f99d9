"""The package-dir mapping works for normal and editable installs (design.md §1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"mibench": "mibench", "attacks": "mibench.attacks", "targets": "mibench.targets",
          "datasets": "mibench.datasets", "reports": "mibench.reports"}
PROBE = ("import importlib, json, sys; "
         "names = sys.argv[1:]; "
         "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))")


def declared_packages() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]["packages"]


def source_packages() -> list[str]:
    found = []
    for folder, package in MAPPED.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found.append(".".join([package, *rel.parts]))
    return found


def test_every_package_folder_is_declared():
    missing = sorted(set(source_packages()) - set(declared_packages()))
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def copy_source(dest: Path) -> Path:
    for folder in MAPPED:
        shutil.copytree(ROOT / folder, dest / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    return dest


def probe(python: str, env: dict[str, str]) -> dict[str, str]:
    import json
    names = declared_packages()
    out = subprocess.run([python, "-c", PROBE, *names], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def pip(*args: str, python: str = sys.executable) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", *args],
                   check=True, capture_output=True, timeout=300)


def test_normal_install_maps_folders_into_mibench(tmp_path):
    src = copy_source(tmp_path / "src")
    site = tmp_path / "site"
    pip("--target", str(site), str(src))
    assert not (site / "datasets").exists() and not (site / "attacks").exists()
    files = probe(sys.executable, {"PYTHONPATH": str(site)})
    for name, file in files.items():
        assert file.startswith(str(site / "mibench")), (name, file)
    assert files["mibench.datasets"] == str(site / "mibench" / "datasets" / "__init__.py")


def test_editable_install_maps_folders_into_mibench(tmp_path):
    src = copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_dirs = list(venv.glob("lib/python*/site-packages"))
    assert site_dirs, "venv has no site-packages"
    # the new venv sees this environment's packages (torch, ...) through a path entry
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site_dirs[0] / "deps.pth").write_text("\n".join(deps) + "\n")
    pip("-e", str(src), python=str(venv / "bin" / "python"))
    files = probe(str(venv / "bin" / "python"), {"PYTHONPATH": ""})
    for folder, package in MAPPED.items():
        assert files[package] == str(src / folder / "__init__.py"), (package, files[package])


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "mibench"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("mibench ")
