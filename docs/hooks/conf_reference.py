"""Builds the configuration reference page from `conf/` itself, so the page cannot drift from the shipped YAML:
every config group, every option file in it with its comments, as the files stand at build time."""

from __future__ import annotations

from pathlib import Path

PLACEHOLDER = "<!-- the config groups of conf/, inserted at build time -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if PLACEHOLDER not in markdown:
        return markdown
    conf = Path(config.config_file_path).parent / "conf"
    return markdown.replace(PLACEHOLDER, reference(conf))


def reference(conf: Path) -> str:
    parts = ["## The root: `conf/train.yaml`", "", fenced(conf / "train.yaml")]
    for group in sorted(path for path in conf.rglob("*") if path.is_dir()):
        options = sorted(group.glob("*.yaml"))
        if not options:
            continue
        name = group.relative_to(conf).as_posix()
        choices = ", ".join(f"`{option.stem}`" for option in options)
        parts += ["", f"## `{name}`", "", f"Options: {choices}.", ""]
        for option in options:
            parts += [f"### `{name}={option.stem}`" if name != "experiment" else f"### `+experiment={option.stem}`"]
            parts += ["", fenced(option), ""]
    return "\n".join(parts)


def fenced(path: Path) -> str:
    return "```yaml\n" + path.read_text(encoding="utf-8").rstrip() + "\n```"
