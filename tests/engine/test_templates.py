"""The Liquid environment of `clarion.engine.templates`: scope, undefined variables, errors, partials, JSON
walking, the parse cache, and markdown. Knock's filters are tested in `test_liquid_filters.py`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from clarion.engine.templates import (
    TEMPLATE_CACHE_SIZE,
    SharedRenders,
    TemplateError,
    TemplateRenderer,
    render_markdown,
)

NAME = "in_app_feed_1.markdown_body"

SCOPE = {
    "recipient": {"__typename": "User", "id": "user_123", "name": "John Hammond"},
    "actor": None,
    "data": {"park": "Isla Nublar", "dinosaurs": ["T. rex", "Velociraptor"]},
    "timestamp": "2023-12-31T14:30:45Z",
    "total_actors": 1,
}


def test_render_reads_the_run_scope() -> None:
    source = "{{ recipient.name }} opened {{ data.park }}: {{ data.dinosaurs | join: ', ' }}"
    assert TemplateRenderer().render(source, SCOPE) == "John Hammond opened Isla Nublar: T. rex, Velociraptor"


def test_standard_tags_work() -> None:
    source = (
        "{% for dinosaur in data.dinosaurs %}{% if forloop.first %}{{ dinosaur | upcase }}"
        "{% else %}, {{ dinosaur | downcase }}{% endif %}{% endfor %}"
        "{% capture park %}{{ data.park }}{% endcapture %} at {{ park }}"
    )
    assert TemplateRenderer().render(source, SCOPE) == "T. REX, velociraptor at Isla Nublar"


@pytest.mark.parametrize(
    "source",
    ["{{ missing }}", "{{ data.missing.deeper }}", "{{ actor.name }}", "{{ missing | upcase }}"],
)
def test_undefined_variables_render_as_empty(source: str) -> None:
    assert TemplateRenderer().render(f"[{source}]", SCOPE) == "[]"


def test_output_is_not_html_escaped() -> None:
    rendered = TemplateRenderer().render("{{ data.html }}", {"data": {"html": "<b>Tom & Jerry</b>"}})
    assert rendered == "<b>Tom & Jerry</b>"


def test_assigns_do_not_outlive_a_render() -> None:
    renderer = TemplateRenderer()
    source = "{% assign count = count | default: 0 | plus: 1 %}{{ count }}"
    assert renderer.render(source, {}) == "1"
    assert renderer.render(source, {}) == "1"


def test_a_syntax_error_names_the_template_and_line() -> None:
    with pytest.raises(TemplateError) as caught:
        TemplateRenderer().render("Hello {{ recipient.name }}\n{% if %}yes{% endif %}", SCOPE, name=NAME)
    assert str(caught.value).startswith(f"{NAME}, line 2: ")
    assert caught.value.name == NAME
    assert caught.value.line == 2


def test_an_unclosed_block_is_a_syntax_error() -> None:
    with pytest.raises(TemplateError, match=f"^{NAME}: expected tag endfor"):
        TemplateRenderer().render("{% for x in data.dinosaurs %}{{ x }}", SCOPE, name=NAME)


def test_parse_checks_syntax_without_rendering() -> None:
    renderer = TemplateRenderer()
    renderer.parse("{{ missing | upcase }}", name=NAME)
    with pytest.raises(TemplateError, match=f"^{NAME}, line 1: "):
        renderer.parse("{% endif %}", name=NAME)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 5 | divided_by: 0 }}", "divided_by: can't divide by 0"),
        ('{{ timestamp | timezone: "Nowhere/City" }}', "unknown time zone"),
        ("{{ data | no_such_filter }}", "unknown filter 'no_such_filter'"),
        ('{{ "1.0.0" | compare_versions }}', "compare_versions"),
    ],
)
def test_a_filter_error_is_a_template_error(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=f"^{NAME}, line 2: .*{message}"):
        TemplateRenderer().render(f"Hi\n{source}", SCOPE, name=NAME)


def test_render_resolves_partials_with_arguments() -> None:
    renderer = TemplateRenderer(partials={"greeting": "Hello, {{ name | upcase }}!"})
    rendered = renderer.render('{% render "greeting", name: recipient.name %} Welcome.', SCOPE)
    assert rendered == "Hello, JOHN HAMMOND! Welcome."


def test_a_partial_renders_in_a_loop() -> None:
    renderer = TemplateRenderer(partials={"item": "<li>{{ item_name }}</li>"})
    source = "{% for dinosaur in data.dinosaurs %}{% render 'item', item_name: dinosaur %}{% endfor %}"
    assert renderer.render(source, SCOPE) == "<li>T. rex</li><li>Velociraptor</li>"


def test_a_partial_sees_only_its_arguments() -> None:
    renderer = TemplateRenderer(partials={"leaky": "[{{ recipient.name }}][{{ label }}]"})
    assert renderer.render('{% render "leaky", label: "x" %}', SCOPE) == "[][x]"


def test_a_missing_partial_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=f"^{NAME}, line 1: .*missing_partial"):
        TemplateRenderer().render('{% render "missing_partial" %}', SCOPE, name=NAME)


def test_an_error_inside_a_partial_names_the_partial() -> None:
    renderer = TemplateRenderer(partials={"footer": "Thanks\n{{ name | no_such_filter }}"})
    with pytest.raises(TemplateError) as caught:
        renderer.render('{% render "footer", name: "x" %}', SCOPE, name=NAME)
    assert str(caught.value) == f"{NAME}, partial 'footer', line 2: unknown filter 'no_such_filter'"
    assert caught.value.partial == "footer"


def test_render_json_renders_every_nested_string() -> None:
    value = {
        "url": "https://example.com/users/{{ recipient.id }}",
        "{{ key }}": "kept key",
        "count": 3,
        "enabled": True,
        "nothing": None,
        "buttons": [{"label": "View {{ data.park }}", "action": "/parks/{{ data.park | url_encode }}"}, 7],
    }
    assert TemplateRenderer().render_json(value, SCOPE) == {
        "url": "https://example.com/users/user_123",
        "{{ key }}": "kept key",
        "count": 3,
        "enabled": True,
        "nothing": None,
        "buttons": [{"label": "View Isla Nublar", "action": "/parks/Isla+Nublar"}, 7],
    }


def test_render_json_renders_a_bare_string() -> None:
    assert TemplateRenderer().render_json("{{ recipient.id }}", SCOPE) == "user_123"


def test_render_json_names_a_failing_string_by_its_path() -> None:
    value = {"headers": ["ok", "{% if %}"]}
    with pytest.raises(TemplateError, match=r"^webhook\.body\.headers\.1, line 1: "):
        TemplateRenderer().render_json(value, SCOPE, name="webhook.body")


def test_parsed_templates_are_cached_by_source() -> None:
    renderer = TemplateRenderer()
    source = "Hello {{ recipient.name }}"
    renderer.render(source, SCOPE)
    first = renderer._parse(source)
    renderer.render(source, {"recipient": {"name": "Ellie"}})
    assert renderer._parse(source) is first
    assert renderer._parse("Hello {{ recipient.id }}") is not first
    assert renderer._parse.cache_info().maxsize == TEMPLATE_CACHE_SIZE


def test_render_markdown_renders_heading_link_and_emphasis() -> None:
    assert render_markdown("# Hello") == "<h1>Hello</h1>"
    assert (
        render_markdown("Read *the* **docs**: [Knock](https://docs.knock.app)")
        == '<p>Read <em>the</em> <strong>docs</strong>: <a href="https://docs.knock.app">Knock</a></p>'
    )


def test_render_markdown_joins_blocks_as_knock_does() -> None:
    # The in-app feed example of Knock's OpenAPI document (MessageInAppFeedContent).
    content = (
        "Your tour will begin shortly. During your visit, please:\n\n"
        "* Stay in the vehicles at all times\n"
        "* Do not feed or provoke the animals\n"
        "* Follow all staff instructions"
    )
    assert render_markdown(content) == (
        "<p>Your tour will begin shortly. During your visit, please:</p><ul>"
        "<li>Stay in the vehicles at all times</li><li>Do not feed or provoke the animals</li>"
        "<li>Follow all staff instructions</li></ul>"
    )
    assert render_markdown("## Welcome to Isla Nublar") == "<h2>Welcome to Isla Nublar</h2>"


def test_render_markdown_keeps_newlines_inside_code_and_breaks() -> None:
    assert render_markdown("```\nline one\nline two\n```") == "<pre><code>line one\nline two\n</code></pre>"
    assert render_markdown("one  \ntwo") == "<p>one<br />\ntwo</p>"


def test_render_markdown_turns_raw_html_and_unsafe_links_into_text() -> None:
    assert render_markdown('Hi <span class="name">Ellie</span>') == (
        "<p>Hi &lt;span class=&quot;name&quot;&gt;Ellie&lt;/span&gt;</p>"
    )
    assert render_markdown("<img src=x onerror=alert(1)>") == "<p>&lt;img src=x onerror=alert(1)&gt;</p>"
    assert render_markdown("[go](javascript:alert(1))") == "<p>[go](javascript:alert(1))</p>"


class CountingRenderer(TemplateRenderer):
    def __init__(self, partials: dict[str, str] | None = None) -> None:
        super().__init__(partials=partials)
        self.renders = 0

    def render(self, source: str, scope: Mapping[str, Any], *, name: str = "template") -> str:
        self.renders += 1
        return super().render(source, scope, name=name)


def test_shared_renders_render_once_for_scopes_giving_the_same_objects() -> None:
    renderer = CountingRenderer(partials={"sign": "-- {{ who }}"})
    shared = SharedRenders(renderer)
    data = {"park": "Isla Nublar"}
    source = "Welcome to {{ data.park }} {% render 'sign', who: actor.name %}"
    actor = {"name": "Ann"}
    texts = [shared.render(source, {"data": data, "actor": actor, "recipient": {"id": n}}) for n in "abc"]
    assert texts == ["Welcome to Isla Nublar -- Ann"] * 3
    assert renderer.renders == 1
    # The same content in other objects renders again (objects are told apart by identity, not content)…
    assert shared.render(source, {"data": {"park": "Isla Nublar"}, "actor": actor}) == texts[0]
    # …and other content renders as itself.
    assert shared.render(source, {"data": {"park": "Sorna"}, "actor": actor}) == "Welcome to Sorna -- Ann"
    assert renderer.renders == 3


def test_shared_renders_render_per_recipient_what_reads_the_recipient() -> None:
    renderer = CountingRenderer()
    shared = SharedRenders(renderer)
    data = {"park": "Isla Nublar"}
    scopes = [{"data": data, "recipient": {"name": name}} for name in ("Ann", "Bob", "Ann")]
    texts = [shared.render("{{ recipient.name }} at {{ data.park }}", scope) for scope in scopes]
    assert texts == ["Ann at Isla Nublar", "Bob at Isla Nublar", "Ann at Isla Nublar"]
    assert renderer.renders == 3


def test_shared_renders_raise_as_the_renderer_does() -> None:
    shared = SharedRenders(TemplateRenderer())
    for source in ("{% render 'missing' %}", "{{ data.park | no_such_filter }}", "{% if %}"):
        with pytest.raises(TemplateError):
            shared.render(source, SCOPE, name=NAME)


def test_shared_renders_render_per_run_what_reads_a_name_computed_from_the_data() -> None:
    renderer = CountingRenderer()
    shared = SharedRenders(renderer)
    data = {"who": "recipient"}
    source = "{{ [data.who].name }}"
    texts = [shared.render(source, {"data": data, "recipient": {"name": name}}) for name in ("Ann", "Bob")]
    assert texts == ["Ann", "Bob"]
    assert renderer.renders == 2


def test_a_template_sees_every_name_of_the_scope_it_reads() -> None:
    renderer = TemplateRenderer()
    scope = {**SCOPE, "current_message": {"id": "m1"}}
    source = "{{ current_message.id }} {{ recipient.name }} {% for d in data.dinosaurs %}{{ d }};{% endfor %}"
    assert renderer.render(source, scope) == "m1 John Hammond T. rex;Velociraptor;"
    assert renderer.render("{{ [data.park] }}|{{ data['park'] }}", scope) == "|Isla Nublar"
