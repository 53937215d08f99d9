"""Every command of the README's "Real data" walk-through, run against a small fake CelebA.

The commands are read from the README itself; the CelebA path becomes the fake tree and
``--preset paper`` becomes ``--preset smoke``. The fast test also narrows ``--attacks all`` to
GMI; the slow one runs every attack, as written.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from fake_faces import fake_celeba

from mibench import cli
from mibench.store import Store

README = Path(__file__).resolve().parents[1] / "README.md"
CELEBA = "~/data/celeba"


def walkthrough() -> list[str]:
    """The ``mibench`` lines of the code blocks in the README's "Real data" section."""
    text = README.read_text()
    section = text[text.index("## Real data"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines()
            if line.startswith("mibench ")]


def run_walkthrough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    substitutions: dict[str, str]) -> list[str]:
    root = fake_celeba(tmp_path / "celeba", {i: 12 - i % 5 for i in range(1, 21)})
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"corrupt")
    monkeypatch.chdir(tmp_path)
    commands = walkthrough()
    assert [c.split()[1] for c in commands] == ["data", "data", "run", "run", "report"]
    for command in commands:
        for old, new in {CELEBA: str(root), "--preset paper": "--preset smoke",
                         **substitutions}.items():
            command = command.replace(old, new)
        argv = shlex.split(command)[1:]
        if argv[0] in ("run", "report", "data") and argv[:2] != ["data", "prepare"]:
            argv.append("--quiet")
        assert cli.main(argv) == 0, command
    return Store(tmp_path / "runs").run_ids()


def test_readme_walkthrough_on_a_fake_celeba(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    runs = run_walkthrough(tmp_path, monkeypatch, {"--attacks all": "--attacks gmi"})
    assert len(runs) == 2
    assert (tmp_path / "runs" / "report" / "index.html").is_file()
    config = Store(tmp_path / "runs").run(runs[-1])["config"]
    assert config["run"]["world"] == "celeba" and config["run"]["eval_model"] == "dlib-resnet"


@pytest.mark.slow
def test_readme_walkthrough_with_every_attack(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runs = run_walkthrough(tmp_path, monkeypatch, {})
    assert len(runs) == 2
