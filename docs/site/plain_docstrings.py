"""A griffe extension for the API pages: inferlab's docstrings are plain text (equations laid out in fixed-width
columns with their numbers, as in the code comments), so each is shown as it is written, in a preformatted block,
instead of being read as Markdown (where ``E[x](y)`` would become a link and the columns would reflow)."""

import griffe


class PlainDocstrings(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs) -> None:  # noqa: ARG002 -- griffe's hook signature
        doc = obj.docstring
        if doc is not None and doc.value and not doc.value.lstrip().startswith("```"):
            doc.value = "```text\n" + doc.value + "\n```"
