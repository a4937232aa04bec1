"""Writing one benchmark's section of BENCHMARKS.md, leaving the others as they are."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(tag: str, lines: list[str], path: Path = BENCHMARKS, after: str | None = None) -> None:
    """Put ``lines`` between ``<!-- tag -->`` and ``<!-- /tag -->`` markers, replacing an older section.

    ``lines`` must start and end with those markers; a new section goes right after the section
    tagged ``after`` when there is one, else it is appended.
    """
    start, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    if not lines or lines[0] != start or lines[-1] != end:
        raise ValueError(f"section lines must start with {start!r} and end with {end!r}")
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nMeasured numbers only, each with its machine.\n"
    )
    neighbour = f"<!-- /{after} -->"
    if start in text and end in text:
        text = text[: text.index(start)] + "\n".join(lines) + text[text.index(end) + len(end) :]
    elif after is not None and neighbour in text:
        cut = text.index(neighbour) + len(neighbour)
        text = text[:cut] + "\n\n" + "\n".join(lines) + text[cut:]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)
