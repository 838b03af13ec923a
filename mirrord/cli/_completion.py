"""``mirrord completion bash|zsh|fish``: the shell's completion script, and what it
completes beyond click's own (commands, options, choices, file paths): stream names.

The script calls ``mirrord`` back with ``_MIRRORD_COMPLETE`` set (click's shell
completion); stream names come from the configuration the command line names
(``--config``, before or after the command) or the default one, and from the state.
Completing never fails: a configuration that does not load or a state that cannot be
read completes nothing from it.
"""

from __future__ import annotations

import contextlib

import click
from click.shell_completion import CompletionItem, get_completion_class

from mirrord.cli._app import CONFIG_KEY, main

SHELLS = ("bash", "zsh", "fish")


def stream_names(ctx: click.Context) -> list[str]:
    """The configured and the stored stream names, sorted; [] when neither can be read."""
    import anyio

    from mirrord.config import load_config_or_embedded
    from mirrord.errors import MirrordError
    from mirrord.state import open_store, store_exists

    path = ctx.params.get("config_path") or ctx.meta.get(CONFIG_KEY)
    try:
        config = load_config_or_embedded(path, announce=False)
    except MirrordError:
        return []
    names = {s.name for s in config.streams}
    if store_exists(config.state_dir):

        async def stored() -> list[str]:
            async with await anyio.to_thread.run_sync(open_store, config.state_dir) as store:
                return [s.name for s in await store.list_streams()]

        # An unreadable state (another user's) completes the file's streams only.
        with contextlib.suppress(MirrordError, OSError):
            names.update(anyio.run(stored))
    return sorted(names)


def complete_streams(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``shell_complete`` for a stream name (``--stream``, ``describe``, ``delete``)."""
    return [CompletionItem(n) for n in stream_names(ctx) if n.startswith(incomplete)]


@main.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  mirrord completion bash > /etc/bash_completion.d/mirrord
           (or: eval "$(mirrord completion bash)" in ~/.bashrc)
    zsh:   mirrord completion zsh > "${fpath[1]}/_mirrord"
    fish:  mirrord completion fish > ~/.config/fish/completions/mirrord.fish

    Completes commands, options, stream names (from the configuration and the state)
    and file paths (--config).
    """
    cls = get_completion_class(shell)
    assert cls is not None  # the Choice admits only the shells click knows
    click.echo(cls(main, {}, "mirrord", "_MIRRORD_COMPLETE").source())

