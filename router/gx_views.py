"""Data Docs page views that share their compiled Jinja templates across builds.

Great Expectations creates its page views anew at every Data Docs build, each with its own Jinja environment,
so every build compiled the same templates again, several times (one environment per site section and one for
the index): ~0.2 s of Python per build, most of what rendering one file's page costs. The views below are GX's
own, with one process-wide bytecode cache: a template is compiled once per process and then loaded from memory.
Jinja checks each cached entry against the template source's checksum, so a changed template is compiled
again. The GX warm-up thread (:func:`router.validation.prepare`) compiles them ahead of the first build
(:func:`precompile`).

GX finds these classes through the site configuration (``view`` of each site section builder and of the index
builder, :data:`SECTION_VIEW` and :data:`INDEX_VIEW`); this module imports GX, so only GX's own code and the
warm-up thread import it.
"""

from __future__ import annotations

import threading

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class MemoryBytecodeCache(BytecodeCache):
    """Compiled templates kept in memory for the life of the process (Jinja's own caches are per environment).

    Every environment that uses it must compile templates alike: the views here are created with the same
    options (GX's), so one cache serves them all.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.filling = threading.Lock()  # held by precompile()
        self.precompiled = False  # every template compiled in by precompile()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored by Jinja if the source's checksum changed

    def dump_bytecode(self, bucket: Bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code

    def clear(self) -> None:
        with self._lock:
            self._code.clear()
            self.precompiled = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._code)


TEMPLATES = MemoryBytecodeCache()


class SharedTemplatesPageView(DefaultJinjaPageView):
    """GX's page view (suite and validation pages), compiling each template once per process."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = TEMPLATES


class SharedTemplatesIndexPageView(DefaultJinjaIndexPageView):
    """GX's index page view, compiling each template once per process."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = TEMPLATES


SECTION_VIEW = {"module_name": __name__, "class_name": SharedTemplatesPageView.__name__}
INDEX_VIEW = {"module_name": __name__, "class_name": SharedTemplatesIndexPageView.__name__}


def precompile() -> int:
    """Compile every GX Data Docs template (pages and styles) into the shared cache, once per cache (the
    warm-up runs at every file's ingest); returns how many templates the cache holds."""
    cache = TEMPLATES
    with cache.filling:
        if not cache.precompiled:
            env = SharedTemplatesPageView().env
            for name in env.list_templates():
                env.get_template(name)
            cache.precompiled = True
    return len(cache)
