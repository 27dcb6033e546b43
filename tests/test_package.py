"""Packaging: layout, package-dir mapping, and that only `physai` is installed at top level."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = {"pyproject.toml", "README.md", "physai", "embodiments", "tokenizers", "heads", "sim", "recipes", "tests"}


def test_top_level_layout():
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (e.g. sdist): fall back to the directory
        tracked = [p.name for p in ROOT.iterdir()]
    top = {t.split("/")[0] for t in tracked}
    assert TOP <= top
    assert top - TOP <= {".ci", ".gitignore"}, f"unexpected top-level entries: {top - TOP}"


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(cfg["packages"]), cfg["package-dir"]
    found = set()
    for pkg_root, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if any((ROOT / folder / Path(*rel.parts[:i]) / "pyproject.toml").is_file() for i in range(len(rel.parts) + 1)):
                continue  # a distribution of its own (the LeRobot plugin)
            found.add(".".join([pkg_root, *rel.parts]))
    assert found == listed, f"folders with __init__.py {sorted(found)} vs listed packages {sorted(listed)}"
    assert dirs["physai.tokenizers"] == "tokenizers"
    assert not (ROOT / "tests" / "__init__.py").exists()


def test_installed_distribution_has_only_physai_at_top_level():
    purelib = sysconfig.get_paths()["purelib"]  # the installed copy, not a source-tree egg-info
    dists = [d for d in md.distributions(path=[purelib]) if d.metadata["Name"] == "physai"]
    assert len(dists) == 1, "physai must be installed (pip install -e '.[dev]')"
    dist = dists[0]
    tops = set()
    for f in dist.files or []:
        first = f.parts[0]
        if first.endswith((".dist-info", ".egg-info")) or first.startswith("__editable__") or first == "..":
            continue
        if first.endswith(".pth"):
            continue
        tops.add(first.removesuffix(".py"))
    # editable installs expose packages through a finder module; read its mapping too
    for f in dist.files or []:
        if f.name.startswith("__editable___") and f.name.endswith("_finder.py"):
            text = Path(f.locate()).read_text()
            start = text.index("MAPPING")
            mapping = eval(text[text.index("{", start): text.index("}", start) + 1])  # a literal dict
            tops |= {k.split('.')[0] for k in mapping}
    tops -= {"bin", "__pycache__"}
    assert tops <= {"physai"}, f"installed top-level names besides physai: {tops - {'physai'}}"
    assert "tokenizers" not in tops


def test_hf_tokenizers_not_shadowed():
    out = subprocess.run([sys.executable, "-c", "import tokenizers, physai.tokenizers as p; print(tokenizers.__file__, p.__file__)"],
                         cwd="/", capture_output=True, text=True, check=True).stdout
    hf, ours = out.split()
    assert "site-packages" in hf and ours.endswith(str(Path("tokenizers") / "__init__.py"))
    assert Path(ours).parent.resolve() == (ROOT / "tokenizers").resolve() or "site-packages" in ours


def test_cli_errors_print_square_brackets_verbatim(capsys):
    from physai.cli import main

    assert main(["train", "--recipe", "cotrain", "--set", "train.steps=[bold]5"]) == 2
    out = capsys.readouterr().out
    assert "[bold]5" in out and "error:" in out


def test_the_readme_library_example_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    start = text.index("## Library in a few lines")
    block = text[text.index("```python", start) + len("```python"): text.index("```", text.index("```python", start) + 9)]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "ckpt" / "model.safetensors").is_file() and (tmp_path / "ckpt" / "README.md").is_file()
