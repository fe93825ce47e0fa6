"""docs/reference/cli.md: every `backfleet` command, walked from the click group."""

import inspect
from collections.abc import Iterator

import click

from workers.cli.docgen.markdown import GENERATED_NOTE, cell, code, escape_html, table

# Help is rendered at a fixed width, so the page does not depend on the terminal.
WIDTH = 100

INTRO = """\
# Command line reference

{note}

Every command, with its usage, what it does and its options: what `backfleet COMMAND
--help` prints (every command takes `--help`). [The command line](../cli.md) gives the
overview, the exit codes and `--json`.
"""


def cli_page() -> str:
    from workers.cli import main  # the package: importing it registers every command

    lines = [INTRO.format(note=GENERATED_NOTE.format(source="the click commands in workers/cli"))]
    for ctx in _walk(main, click.Context(main, info_name="backfleet", terminal_width=WIDTH)):
        lines.extend(_command_section(ctx))
    return "\n".join(lines).rstrip("\n") + "\n"


def _walk(command: click.Command, ctx: click.Context) -> Iterator[click.Context]:
    """`ctx`, then a context for each subcommand, depth first, in name order."""
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx))


def _command_section(ctx: click.Context) -> list[str]:
    command = ctx.command
    path = ctx.command_path
    lines = [f"## `{path}`", ""]
    help_text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    if help_text:
        lines.extend([escape_html(help_text), ""])
    lines.extend(["```text", command.get_usage(ctx), "```", ""])
    if isinstance(command, click.Group):
        subcommands = [
            (code(f"{path} {name}"), cell(_summary(sub)))
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        lines.extend([*table(("command", "does"), subcommands), ""])
    params = [_param_row(param, ctx) for param in command.get_params(ctx)]
    rows = [row for row in params if row is not None]
    if rows:
        lines.extend([*table(("argument or option", "meaning"), rows), ""])
    if command.context_settings.get("allow_extra_args"):
        lines.extend(["Any further arguments are passed on to the program it runs.", ""])
    return lines


def _summary(command: click.Command) -> str:
    """The first paragraph of a command's help (click's short help cuts at `e.g.`)."""
    return inspect.cleandoc(command.help or "").split("\n\n", 1)[0]


def _param_row(param: click.Parameter, ctx: click.Context) -> tuple[str, str] | None:
    if isinstance(param, click.Argument):
        # Not make_metavar(): its signature changed in click 8.2, and pyproject allows 8.1.
        name = param.human_readable_name + ("..." if param.nargs == -1 else "")
        return code(name), "argument" + ("" if param.required else " (optional)")
    record = param.get_help_record(ctx)
    # Every command takes --help (the intro says so): not a row of each table.
    if record is None or set(param.opts) == set(ctx.help_option_names):
        return None
    names, help_text = record
    return code(names), cell(help_text)
