"""User text on the page as text, never as markdown.

Run names, status messages, tokens, paths, ids and error messages come from run directories anyone
may have written. Streamlit renders the strings of `st.markdown`, `st.caption`, `st.subheader`,
`st.info` / `st.warning` / `st.error`, widget and button labels as (GitHub-flavoured) markdown with its
own extensions (`:red[...]`, `:material/icon:`, `$...$` LaTeX), so a name such as
`![](http://example.com/x.png)` would make every viewer's browser fetch that URL. Every such string
passes through `md_escape` (or `md_code` / `md_code_block` inside code, where nothing is a link or
markup) before it reaches one of them.
"""

from __future__ import annotations

import re

# Markdown / HTML / Streamlit punctuation: CommonMark lets any ASCII punctuation be backslash-escaped,
# and an escaped character is always shown as itself. The backslash comes first so the escapes it
# adds are not escaped again.
MARKDOWN_CHARS = "\\`*_{}[]()#+-.!|<>:$~&=^@\"'"
_ESCAPE = re.compile("[" + re.escape(MARKDOWN_CHARS) + "]")
_BACKTICKS = re.compile("`+")


# GFM turns bare URLs and e-mail addresses into links after escapes are resolved, so no escape stops it;
# an invisible WORD JOINER (U+2060) inside "://", after "www" and after "@" does.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)


def md_escape(text: object) -> str:
    """`text` (any value, str() of it) with every markdown, HTML and Streamlit markup character
    backslash-escaped, so it renders literally wherever Streamlit reads markdown; bare URLs and e-mail
    addresses in it are kept from becoming links by an invisible word joiner."""
    joined = _AUTOLINK.sub(WORD_JOINER, str(text))
    return _ESCAPE.sub(lambda m: "\\" + m.group(0), joined)


def _longest_backticks(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def md_code(text: object) -> str:
    """`text` as an inline code span that it cannot close (a fence longer than any backtick run in it;
    newlines become spaces, as a blank line would end the paragraph the span is in)."""
    value = " ".join(str(text).splitlines()) or " "
    fence = "`" * (_longest_backticks(value) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def md_code_block(text: object) -> str:
    """`text` as a fenced code block that it cannot close (its fence is longer than any backtick run)."""
    value = str(text)
    fence = "`" * max(3, _longest_backticks(value) + 1)
    return f"{fence}\n{value}\n{fence}"
