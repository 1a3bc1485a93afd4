"""Keep credentials out of what the pipeline prints, logs and writes into reports.

A tracking URI may carry credentials (``https://user:token@mlflow.example.com``, ``postgresql://u:p@db/x``,
``...?token=...``). Everything the code prints or records about a URI goes through :func:`mask_uri`, and error
text that may quote one (MLflow's own messages quote the URL they called) through :func:`mask`.
"""

from __future__ import annotations

import re

MASK = "***"
#: ``scheme://user:password@`` or ``scheme://token@`` in any text, up to the authority's **last** ``@`` (where URL
#: parsers split: a password may hold an unescaped ``@``), which ends at the first ``/``, ``?``, ``#`` or space.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"]+)@")
#: ``token=...``, ``password=...``, ``secret=...``, ``api_key=...`` in query strings or ``key=value`` text.
_SECRET_PARAM = re.compile(r"(?i)\b(?P<key>[a-z_]*(?:token|password|passwd|secret|api[_-]?key|access[_-]?key)"
                           r"[a-z_]*)=(?P<value>[^&\s'\"]+)")


def mask(text: str) -> str:
    """``text`` with the credentials of every URI (user info, secret-looking query params) replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", str(text))
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}={MASK}", text)


def mask_uri(uri: str | None) -> str:
    """A URI safe to print (``None`` → ``""``)."""
    return "" if uri is None else mask(uri)
