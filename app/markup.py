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
# Where GitHub-flavoured markdown finds a link in plain text: a scheme's ":" (https:, mailto:,
# xmpp:), "www." and an e-mail's "@".
_AUTOLINK = re.compile(r"(\\:|\\@|(?<![^\W_])www(?=\\\.))", re.IGNORECASE)
JOINER = "\u2060"  # WORD JOINER: invisible, not a word character, breaks no line


def md(text) -> str:
    """``text`` shown literally inside markdown: nothing in it renders as a link, an image, HTML,
    emphasis, a directive or LaTeX.

    Every ASCII punctuation character is escaped with a backslash (not a list of the "special"
    ones). That is not enough for the links GitHub-flavoured markdown finds in plain text
    (``https://…``, ``www.…``, ``mailto:…``, ``name@host.org``): Streamlit's renderer (remark-gfm)
    also finds them after the escapes are resolved, in the text itself. So an invisible word
    joiner follows every ``:`` and ``@`` and every ``www`` before a dot: the text reads the same,
    and no pattern of a link (``scheme:``, ``www.``, ``x@y``) is left whole in it.
    """
    escaped = _PUNCTUATION.sub(r"\\\1", str(text))
    return _AUTOLINK.sub(lambda m: m.group(1) + JOINER, escaped)
