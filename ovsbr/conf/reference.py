"""Render every option as a Markdown table (doc/configuration.md).

Generated from the same definitions as the sample file; a unit test fails
when the committed document differs, so the reference cannot drift.
"""

from __future__ import annotations

import sys

from ovsbr.conf import opts
from ovsbr.neutron import config as neutron_config

HEADER = """# ovsbr configuration reference

Generated from `ovsbr/conf/opts.py` by `python -m ovsbr.conf.reference`; do
not edit by hand. A sample file with the same content: `tox -e genconfig`.
The oslo.log options (`debug`, `log_file`, ...) are oslo.log's own.
The last group, `[ovsbr]`, belongs in neutron-server's configuration (the
ML2 mechanism driver), not in ovsbr.conf.
"""


def _default(opt) -> str:
    if opt.sample_default is not None:
        return str(opt.sample_default)
    if opt.default in (None, [], ""):
        return "(none)"
    if isinstance(opt.default, list):
        return ",".join(str(x) for x in opt.default)
    return str(opt.default)


def render() -> str:
    lines = [HEADER]
    groups = opts.list_opts() + [(f"{g} (neutron.conf)", o) for g, o in
                                 neutron_config.list_opts()]
    for group, options in groups:
        lines += [f"\n## [{group}]\n", "| option | type | default | meaning |",
                  "|---|---|---|---|"]
        for opt in options:
            kind = type(opt.type).__name__.lower()
            choices = getattr(opt.type, "choices", None)
            if choices:
                kind += " (" + " \\| ".join(str(c) for c in choices) + ")"
            help_text = " ".join(opt.help.split()).replace("|", "\\|")
            lines.append(f"| `{opt.name}` | {kind} | `{_default(opt)}` | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
