"""Rendering Knock templates: Liquid (Shopify syntax) with Knock's filters, over a workflow run's scope,
and the markdown that in-app `markdown` blocks are rendered from.

`TemplateRenderer.render` gives the scope's keys (`recipient`, `actor`, `data`, `tenant`, `vars`,
`workflow`, `timestamp`, `activities`, `total_activities`, `actors`, `total_actors`, `current_message`, …)
to the template as variables. An undefined variable renders as empty and never raises; output is not
HTML-escaped, as in Knock. A syntax error, an unknown filter (Knock's data loaders included, see
`clarion.engine.liquid_filters.DATA_LOADER_FILTERS`), a misused filter or a missing partial raises
`TemplateError`, named after the template and with its line when known. `{% render "key", arg: value %}`
renders the renderer's partial `key`, which sees only the arguments it is given (Knock scopes a partial's
variables to the partial). Parsed templates are cached by source text, a bounded LRU per renderer.

`render_markdown` follows CommonMark with raw HTML disabled: a tag, whether the template's or interpolated
data's, reaches the HTML as text (`&lt;img …&gt;`), and links keep markdown-it's refusal of `javascript:`
and like URLs. Knock's SDKs inject the rendered HTML into the page as it comes, so nothing a trigger's data
holds may become markup there. Block tags are joined without newlines, as in the blocks Knock returns.

Knock's filters live in `clarion.engine.liquid_filters`; which fields are rendered, and when, is the
business of the steps that send messages.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from io import StringIO
from typing import Any, Final

from liquid import BoundTemplate, CachingDictLoader, Environment, RenderContext
from liquid.exceptions import LiquidError
from liquid.stringify import to_liquid_string
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from clarion.engine.liquid_filters import FILTERS
from clarion.errors import ClarionError

TEMPLATE_CACHE_SIZE: Final = 1024
"""Parsed templates each renderer keeps, least recently used dropped first."""


class TemplateError(ClarionError):
    """A template failed to parse or render. `name` is the template's (e.g.
    `in_app_feed_1.markdown_body`), `partial` the partial's key when the failure is inside one, and `line`
    the line, in the partial if there is one, when known."""

    def __init__(
        self, message: str, *, name: str, line: int | None = None, partial: str | None = None
    ) -> None:
        where = name if partial is None else f"{name}, partial {partial!r}"
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {message}")
        self.name = name
        self.line = line
        self.partial = partial


class TemplateRenderer:
    """Renders Liquid with Knock's filters and a fixed set of partials (partial key to source)."""

    def __init__(self, *, partials: Mapping[str, str] | None = None) -> None:
        self._partials = dict(partials or {})
        self._environment = Environment(loader=CachingDictLoader(self._partials))
        for filter_name, function in FILTERS.items():
            self._environment.add_filter(filter_name, function)
        self._environment.add_filter("from_markdown", _from_markdown)
        self._parse = functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)(self._environment.from_string)
        self._names_read = functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)(self._analyse)

    def parse(self, source: str, *, name: str = "template") -> None:
        """Checks that `source` is valid Liquid, raising `TemplateError` if not. The parsed template is
        cached, so rendering the same source later does not parse it again."""
        self._template(source, name)

    def render(self, source: str, scope: Mapping[str, Any], *, name: str = "template") -> str:
        """Renders `source` with the run scope `scope`. Raises `TemplateError`."""
        template = self._template(source, name)
        # The scope goes in as the template's local variables rather than as Liquid globals, because
        # globals would reach partials too.
        context = RenderContext(template)
        # Only what the template reads, where that is known: a scope's namespaces may be built on demand
        # (`clarion.engine.run_scope.RunNamespaces`), and most templates read few of them.
        names = self._names_read(source)
        context.locals.update(
            scope if names is None else {name: scope[name] for name in names if name in scope}
        )
        buffer = StringIO()
        try:
            template.render_with_context(context, buffer)
        except LiquidError as exc:
            raise self._error(exc, source, name) from exc
        return buffer.getvalue()

    def names_read(self, source: str) -> tuple[str, ...] | None:
        """The scope keys `source` reads, partials included; None when that cannot be told (it does not
        parse, or names a partial that does not exist)."""
        return self._names_read(source)

    def _analyse(self, source: str) -> tuple[str, ...] | None:
        try:
            names = tuple(sorted(self._environment.from_string(source).analyze().globals))
        except LiquidError:
            return None
        # A name computed when rendering (`{{ [data.key].email }}`) is reported as its expression, not
        # as the name it will read: then what the template reads cannot be told.
        return names if all(name.isidentifier() for name in names) else None

    def render_json(self, value: Any, scope: Mapping[str, Any], *, name: str = "template") -> Any:
        """`value` with every string in it rendered; objects and arrays are walked, their keys and
        non-string values kept. A nested string is named by its path: `name.headers.0`."""
        if isinstance(value, str):
            return self.render(value, scope, name=name)
        if isinstance(value, Mapping):
            return {key: self.render_json(item, scope, name=f"{name}.{key}") for key, item in value.items()}
        if isinstance(value, Sequence):
            return [self.render_json(item, scope, name=f"{name}.{index}") for index, item in enumerate(value)]
        return value

    def _template(self, source: str, name: str) -> BoundTemplate:
        try:
            return self._parse(source)
        except LiquidError as exc:
            raise self._error(exc, source, name) from exc

    def _error(self, exc: LiquidError, source: str, name: str) -> TemplateError:
        position = exc.context()
        line = None if position is None else position[0]
        partial = None
        # An error inside a partial carries the partial's source, rarely its key.
        if exc.token is not None and exc.token.source != source:
            partial = next((key for key, text in self._partials.items() if text == exc.token.source), None)
        return TemplateError(str(exc.message), name=name, line=line, partial=partial)


class SharedRenders:
    """Renders for the runs of one step: a template renders once for all the runs whose scopes give it the
    same objects under every key it reads, as a trigger's runs share its data, actor and tenant, so that a
    fan-out of a template that reads nothing of its recipient renders it once. Objects are told apart by
    identity, which holds while they live, and each result keeps the objects it was rendered from alive:
    an instance is for one step's runs, then dropped. Identity stands for content because what runs share
    is frozen (`clarion.engine.frozen`): no run can change it after another has rendered from it."""

    def __init__(self, renderer: TemplateRenderer) -> None:
        self.renderer = renderer
        self._done: dict[tuple[str, tuple[int, ...]], tuple[tuple[Any, ...], str]] = {}

    def render(self, source: str, scope: Mapping[str, Any], *, name: str = "template") -> str:
        names = self.renderer.names_read(source)
        if names is None:
            return self.renderer.render(source, scope, name=name)
        values = tuple(scope.get(key) for key in names)
        key = (source, tuple(map(id, values)))
        done = self._done.get(key)
        if done is None:
            done = self._done[key] = (values, self.renderer.render(source, scope, name=name))
        return done[1]


class _CompactHTMLRenderer(RendererHTML):
    """markdown-it's HTML renderer less the newlines it puts between block tags: Knock's rendered blocks
    read `<p>…</p><ul><li>…</li></ul>`. Newlines inside text and code are kept."""

    def renderToken(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        # A tag token renders only its tag and the newlines around it, never content.
        return super().renderToken(tokens, idx, options, env).strip("\n")

    def code_block(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return super().code_block(tokens, idx, options, env).removesuffix("\n")

    def fence(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return super().fence(tokens, idx, options, env).removesuffix("\n")


_MARKDOWN = MarkdownIt("commonmark", {"html": False}, renderer_cls=_CompactHTMLRenderer)


@functools.lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """CommonMark to HTML, raw HTML escaped: `"# Hello"` gives `"<h1>Hello</h1>"`. Remembered for
    the bodies seen last: a fan-out renders the same body for many of its recipients."""
    html: str = _MARKDOWN.render(text)
    return html.removesuffix("\n")


def _from_markdown(value: object) -> str:
    return render_markdown(to_liquid_string(value, autoescape=False))
