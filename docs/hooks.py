"""mkdocs hooks (``hooks:`` in mkdocs.yml): the docstrings' Sphinx roles as code links.

The docstrings follow numpydoc, whose cross-references are Sphinx roles
(``:meth:`fit```, ``:func:`~skstack.explain```); mkdocstrings renders them as text with the
role showing (``:meth:<code>fit</code>``). Here each becomes its code, shortened as Sphinx
shortens a ``~`` target, and linked to its entry on the API page when it is one of
``skstack``'s public names.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:meth|func|class|attr|mod|data|obj|exc):<code>(~?)([\w.]+)</code>")


def _code(match: re.Match, public: set[str], api: str) -> str:
    tilde, target = match.groups()
    name = target.removeprefix("skstack.")
    shown = target.rsplit(".", 1)[-1] if tilde else name
    if name in public:
        return f'<a href="{api}#skstack.{name}"><code>{shown}</code></a>'
    return f"<code>{shown}</code>"


def on_page_content(html: str, page, config, files) -> str:
    import skstack

    public = set(skstack.__all__)
    api = "" if page.file.src_uri == "api.md" else "../api/"
    return _ROLE.sub(lambda m: _code(m, public, api), html)
