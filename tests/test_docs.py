"""The documentation keeps up with the code: every hook, command and option is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pluggy
import pytest

from msabench import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def hook_names() -> list[str]:
    """Every hookspec in msabench.hookspecs, found two independent ways that must agree."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    by_pluggy = {name for name in vars(pm.hook) if not name.startswith("_")}
    marker = f"{hookspecs.PROJECT}_spec"
    by_marker = {name for name, obj in vars(hookspecs).items()
                 if callable(obj) and hasattr(obj, marker)}
    assert by_pluggy == by_marker and by_marker, (by_pluggy, by_marker)
    return sorted(by_marker)


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_section_in_plugins_md(hook):
    text = _read(DOCS / "plugins.md")
    assert re.search(rf"^### `{re.escape(hook)}`[ \t]*$", text, re.MULTILINE), (
        f"docs/plugins.md needs a section headed exactly: ### `{hook}`")


def _commands(monkeypatch):
    import typer

    import msabench.cli
    from msabench.cli import get_app

    monkeypatch.setattr(msabench.cli, "_APP", None)  # build it now; leave no cached app behind
    app = get_app()
    click_group = typer.main.get_command(app)
    names = [info.name or info.callback.__name__.replace("_", "-")
             for info in app.registered_commands]
    names += [info.name for info in app.registered_groups if info.name]
    return names, click_group


def _section(text: str, command: str) -> str | None:
    """The part of cli.md under the heading that names ``msabench <command>``."""
    heading = re.compile(rf"^(#+) .*`msabench {re.escape(command)}\b[^`]*`.*$", re.MULTILINE)
    found = heading.search(text)
    if found is None:
        return None
    level = len(found.group(1))
    nxt = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, found.end())
    return text[found.end(): nxt.start() if nxt else len(text)]


def _section_named(text: str, title: str) -> str | None:
    found = re.search(rf"^## {re.escape(title)}\b.*$", text, re.MULTILINE)
    if found is None:
        return None
    nxt = re.compile(r"^## ", re.MULTILINE).search(text, found.end())
    return text[found.end(): nxt.start() if nxt else len(text)]


def test_cli_md_documents_every_command_and_option(monkeypatch):
    text = _read(DOCS / "cli.md")
    names, group = _commands(monkeypatch)
    assert {"run", "leaderboard", "list", "plugins", "info"} <= set(names)
    for name in names:
        section = _section(text, name)
        assert section is not None, f"docs/cli.md has no heading naming `msabench {name}`"
        command = group.commands[name]
        for param in command.params:
            if param.param_type_name != "option":
                continue
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("--"):
                    assert f"`{opt}" in section, (
                        f"docs/cli.md: option {opt} of `msabench {name}` is not documented")


def test_cli_md_lists_exit_codes_and_environment():
    text = _read(DOCS / "cli.md")
    exit_codes = _section_named(text, "Exit codes")
    assert exit_codes is not None, "docs/cli.md needs an 'Exit codes' section"
    for code in ("0", "1", "2", "130"):
        assert re.search(rf"`{code}`", exit_codes), f"docs/cli.md: exit code {code} undocumented"
    for var in ("MSABENCH_DATA_DIR", "MSABENCH_CACHE_DIR", "MSABENCH_DISABLE_PLUGIN_AUTOLOAD",
                "MSABENCH_PLUGINS", "MSABENCH_BLOCK_PLUGINS"):
        assert var in text, f"docs/cli.md does not mention {var}"


def test_readme_first_code_block_has_the_two_commands():
    text = _read(ROOT / "README.md")
    block = re.search(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block is not None, "README.md has no fenced code block"
    assert "make demo" in block.group(1) and "make test" in block.group(1), block.group(1)


def test_docs_link_to_existing_files():
    """Relative links in the user guides point at files that exist."""
    pages = [DOCS / "quickstart.md", DOCS / "cli.md", DOCS / "plugins.md",
             DOCS / "plugins" / "example" / "README.md"]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def _make_target(name: str) -> tuple[dict[str, str], list[str]]:
    """The Makefile's ``?=``/``:=`` variables and the recipe lines of target ``name``."""
    text = _read(ROOT / "Makefile")
    variables = dict(re.findall(r"^([A-Z_]+) *[?:]?= *(.*?) *$", text, re.MULTILINE))
    found = re.search(rf"^{name}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert found, f"Makefile has no {name} target"
    return variables, [line.strip() for line in found.group(1).splitlines()]


def test_make_demo_trains_into_an_ignored_scratch_dir_and_prints_its_table():
    """`make demo` must train on a fresh clone (the committed synthetic results would make a run
    into leaderboards/results skip every seed) and leave the tree clean."""
    import shutil
    import subprocess

    variables, recipe = _make_target("demo")
    [train] = [line for line in recipe if " run " in line]
    [board] = [line for line in recipe if " leaderboard " in line]
    assert "--force" in train and "--out $(DEMO_RESULTS)" in train
    assert "--results $(DEMO_RESULTS)" in board and "--print" in board
    scratch = variables["DEMO_RESULTS"]
    assert not scratch.startswith("leaderboards")
    for doc in (ROOT / "README.md", DOCS / "quickstart.md"):
        assert f"--results {scratch} --print" in _read(doc), doc
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    probe = f"{scratch}/synthetic-mosi/unaligned/sf/seed-1111.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT)
    assert ignored.returncode == 0, f"{scratch} is not ignored by git"
