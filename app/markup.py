"""One escaper for every message the pages show: user text inside Streamlit markdown.

``st.error``, ``st.info``, ``st.warning``, ``st.caption`` and ``st.markdown`` render their text as
markdown: a link, an image that the browser fetches, raw HTML, emphasis, Streamlit's
``:red[…]`` directives and ``$…$`` LaTeX. A value a visitor typed or put in a link (a model
path, a mitigation parameter, a library message that quotes it) goes through :func:`md` first.
"""
from __future__ import annotations

import re

# CommonMark lets a backslash escape every ASCII punctuation character, and only those.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md(text) -> str:
    """``text`` shown literally inside markdown: every ASCII punctuation character escaped.

    Escaping all of them (not a list of the "special" ones) also breaks the constructs that
    are recognised from plain text: autolinks (``https\\://``, ``www\\.``), e-mail links and
    ``$`` for LaTeX.
    """
    return _PUNCTUATION.sub(r"\\\1", str(text))
