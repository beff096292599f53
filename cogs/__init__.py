"""Discord adapters: they translate Discord events into core calls and core results into messages."""

#: Extensions loaded at start, in order. A missing one would leave dead buttons, so a failure stops the start.
EXTENSIONS: tuple[str, ...] = ("cogs.general", "cogs.imagine", "cogs.admin", "cogs.edits")
