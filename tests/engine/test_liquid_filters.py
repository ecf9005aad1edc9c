"""Knock's filters (`clarion.engine.liquid_filters`), each rendered through Liquid with the example inputs
and outputs of Knock's Liquid helpers reference, plus the edges the reference leaves open."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clarion.engine.liquid_filters import DATA_LOADER_FILTERS, FILTERS
from clarion.engine.templates import TemplateError, TemplateRenderer

RENDERER = TemplateRenderer()

# The moment behind the reference's date examples: 2:30:45 PM on 31 December 2023.
TIMESTAMP = "2023-12-31T14:30:45Z"


def render(source: str, **scope: Any) -> str:
    return RENDERER.render(source, scope, name="test")


def test_timezone_shows_a_timestamp_in_the_zone() -> None:
    rendered = render('{{ timestamp | timezone: "America/New_York"}}', timestamp="2024-01-01T00:30:00Z")
    assert rendered == "2023-12-31T19:30:00-05:00"


def test_timezone_accepts_datetimes_and_now() -> None:
    moment = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    assert render('{{ moment | timezone: "Asia/Tokyo" }}', moment=moment) == "2024-01-01T09:30:00+09:00"
    assert render('{{ "now" | timezone: "Asia/Tokyo" }}').endswith("+09:00")


def test_timezone_takes_a_timestamp_without_offset_as_utc() -> None:
    rendered = render('{{ "2024-07-01T12:00:00" | timezone: "Europe/Paris" }}')
    assert rendered == "2024-07-01T14:00:00+02:00"


def test_timezone_refuses_an_unknown_zone() -> None:
    with pytest.raises(TemplateError, match="unknown time zone 'Mars/Olympus'"):
        render('{{ timestamp | timezone: "Mars/Olympus" }}', timestamp=TIMESTAMP)


@pytest.mark.parametrize("zone", ["America", "Europe/"])
def test_a_region_that_names_no_zone_is_refused_as_unknown(zone: str) -> None:
    # The zone database has folders by these names: reading one as a zone fails with an OS error.
    with pytest.raises(TemplateError, match="unknown time zone"):
        render(f'{{{{ "2024-01-01T00:00:00Z" | date: "%H", "{zone}" }}}}')


def test_timezone_refuses_what_is_no_timestamp() -> None:
    with pytest.raises(TemplateError, match="expected an ISO-8601 timestamp"):
        render('{{ "next tuesday" | timezone: "UTC" }}')


def test_date_takes_a_timezone() -> None:
    rendered = render(
        '{{ startDate | date: "%-I:%M %p %Z" , "America/New_York" }}', startDate="2023-12-31T19:30:00Z"
    )
    assert rendered == "2:30 PM EST"


def test_date_without_a_timezone_formats_in_the_timestamps_offset() -> None:
    assert (
        render('{{ timestamp | date: "%Y-%m-%d %H:%M %Z" }}', timestamp=TIMESTAMP) == "2023-12-31 14:30 UTC"
    )
    moment = datetime(2023, 12, 31, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    assert render('{{ moment | date: "%H:%M %Z" }}', moment=moment) == "09:30 EST"


def test_date_formats_now() -> None:
    before = datetime.now(UTC).strftime("%B %d, %Y")
    rendered = render('{{ "now" | date: "%B %d, %Y" }}')
    after = datetime.now(UTC).strftime("%B %d, %Y")
    assert rendered in {before, after}


def test_date_returns_what_is_no_date_unchanged() -> None:
    assert render('{{ "soon" | date: "%Y" }}') == "soon"
    assert render('{{ "99999999999999999999" | date: "%Y" }}') == "99999999999999999999"


def test_date_reads_unix_seconds_and_dates() -> None:
    assert render('{{ 86400 | date: "%Y-%m-%d %H:%M", "UTC" }}') == "1970-01-02 00:00"
    assert render('{{ day | date: "%A %d %B" }}', day=date(2023, 12, 31)) == "Sunday 31 December"


@pytest.mark.parametrize(
    ("locale", "date_format", "expected"),
    [
        ("en-US", "short", "12/31/23"),
        ("en-US", "medium", "Dec 31, 2023"),
        ("en-US", "long", "December 31, 2023"),
        ("en-US", "full", "Sunday, December 31, 2023"),
        ("en-GB", "short", "31/12/2023"),
        ("en-GB", "medium", "31 Dec 2023"),
        ("en-GB", "long", "31 December 2023"),
        ("en-GB", "full", "Sunday, 31 December 2023"),
    ],
)
def test_format_date_in_locale_follows_the_date_format_table(
    locale: str, date_format: str, expected: str
) -> None:
    source = f'{{{{ timestamp | format_date_in_locale: "{locale}", "{date_format}" }}}}'
    assert render(source, timestamp=TIMESTAMP) == expected


def test_format_date_in_locale_defaults_to_short() -> None:
    assert render('{{ timestamp | format_date_in_locale: "en-US" }}', timestamp=TIMESTAMP) == "12/31/23"


def test_format_date_in_locale_refuses_an_unknown_format_or_locale() -> None:
    with pytest.raises(TemplateError, match="format must be one of short, medium, long, full"):
        render('{{ timestamp | format_date_in_locale: "en", "tiny" }}', timestamp=TIMESTAMP)
    with pytest.raises(TemplateError, match="unknown locale 'xx-YY'"):
        render('{{ timestamp | format_date_in_locale: "xx-YY" }}', timestamp=TIMESTAMP)


def test_format_date_in_locale_requires_a_locale() -> None:
    with pytest.raises(TemplateError, match="locale"):
        render("{{ timestamp | format_date_in_locale }}", timestamp=TIMESTAMP)


def test_format_datetime_in_locale_joins_date_and_time() -> None:
    source = '{{ timestamp | format_datetime_in_locale: "en-GB", "medium", "short" }}'
    assert render(source, timestamp=TIMESTAMP) == "31 Dec 2023, 14:30"


# The reference's time examples are in the zone of each locale's country, so these moments carry it.
NEW_YORK_MOMENT = datetime(2023, 12, 31, 14, 30, 45, tzinfo=ZoneInfo("America/New_York"))
LONDON_MOMENT = datetime(2023, 12, 31, 14, 30, 45, tzinfo=ZoneInfo("Europe/London"))


@pytest.mark.parametrize(
    ("locale", "moment", "time_format", "expected"),
    [
        ("en-US", NEW_YORK_MOMENT, "short", "12/31/23, 2:30 PM"),
        ("en-US", NEW_YORK_MOMENT, "medium", "12/31/23, 2:30:45 PM"),
        ("en-US", NEW_YORK_MOMENT, "long", "12/31/23, 2:30:45 PM EST"),
        ("en-US", NEW_YORK_MOMENT, "full", "12/31/23, 2:30:45 PM Eastern Standard Time"),
        ("en-GB", LONDON_MOMENT, "short", "31/12/2023, 14:30"),
        ("en-GB", LONDON_MOMENT, "medium", "31/12/2023, 14:30:45"),
        ("en-GB", LONDON_MOMENT, "long", "31/12/2023, 14:30:45 GMT"),
        ("en-GB", LONDON_MOMENT, "full", "31/12/2023, 14:30:45 Greenwich Mean Time"),
    ],
)
def test_format_datetime_in_locale_follows_the_time_format_table(
    locale: str, moment: datetime, time_format: str, expected: str
) -> None:
    source = f'{{{{ moment | format_datetime_in_locale: "{locale}", "short", "{time_format}" }}}}'
    assert render(source, moment=moment) == expected


def test_format_number_uses_the_locales_separators() -> None:
    assert render('{{ 10000 | format_number: "en" }}') == "10,000"
    assert render('{{ 10000 | format_number: "de" }}') == "10.000"
    assert render("{{ amount | format_number }}", amount="1234.5") == "1,234.5"


def test_format_number_refuses_what_is_no_number() -> None:
    with pytest.raises(TemplateError, match="expected a number"):
        render('{{ "lots" | format_number: "en" }}')
    with pytest.raises(TemplateError, match="expected a finite number"):
        render('{{ "NaN" | format_number: "en" }}')


def test_currency_formats_in_the_currency_and_locale() -> None:
    assert render('{{ 10 | currency: "GBP", "en" }}') == "£10.00"
    assert render("{{ 10 | currency }}") == "$10.00"
    assert render('{{ 10 | currency: "gbp" }}') == "£10.00"
    assert render('{{ 1234.5 | currency: "EUR", "de" }}') == "1.234,50\xa0€"


def test_currency_refuses_an_unknown_currency() -> None:
    with pytest.raises(TemplateError, match="unknown currency 'ZZZ'"):
        render('{{ 10 | currency: "ZZZ" }}')


def test_rounded_currency_rounds_to_a_whole_unit() -> None:
    assert render('{{ 10.99 | rounded_currency: "GBP", "en" }}') == "£11"
    assert render("{{ 10.5 | rounded_currency }}") == "$11"
    assert render("{{ 1234.4 | rounded_currency }}") == "$1,234"
    assert render('{{ 10.99 | rounded_currency: "GBP", "de" }}') == "11\xa0£"


def test_json_writes_a_value_as_json() -> None:
    recipient = {"id": "user_123", "name": "John Hammond"}
    assert (
        render("{{ recipient | json }}", recipient=recipient) == '{"id": "user_123", "name": "John Hammond"}'
    )
    assert render("{{ missing | json }}") == "null"
    moment = datetime(2023, 12, 31, 14, 30, tzinfo=UTC)
    assert render("{{ data | json }}", data={"at": moment}) == '{"at": "2023-12-31T14:30:00+00:00"}'


def test_from_json_parses_json_text() -> None:
    source = "{% assign recipient = input | from_json %}{{ recipient.name }} {{ recipient.tags | size }}"
    assert render(source, input='{"name": "Ellie", "tags": ["a", "b"]}') == "Ellie 2"


def test_from_json_passes_structured_values_through() -> None:
    assert render("{% assign flag = input | from_json %}{% if flag %}yes{% endif %}", input="false") == ""
    assert render("{% assign user = input | from_json %}{{ user.name }}", input={"name": "Ellie"}) == "Ellie"


def test_from_json_refuses_malformed_json() -> None:
    with pytest.raises(TemplateError, match="from_json: invalid JSON"):
        render("{% assign x = input | from_json %}", input="{not json")


@pytest.mark.parametrize(("count", "expected"), [(2, "users"), (1, "user"), (0, "users"), ("1", "user")])
def test_pluralize_picks_the_form_for_the_count(count: object, expected: str) -> None:
    assert render('{{ total_actors | pluralize: "user", "users" }}', total_actors=count) == expected


def test_titlecase_capitalizes_each_word() -> None:
    assert render("{{ project_name | titlecase }}", project_name="my project name") == "My Project Name"
    assert render("{{ project_name | titlecase }}", project_name="ONE  two") == "One  Two"


def test_hash_filters_give_hex_digests() -> None:
    assert render("{{ recipient.id | md5 }}", recipient={"id": "hello"}) == "5d41402abc4b2a76b9719d911017c592"
    assert (
        render("{{ recipient.id | sha256 }}", recipient={"id": "hello"})
        == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )


def test_hmac_sha256_signs_with_the_key() -> None:
    # The well-known vector HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
    rendered = render(
        '{{ message | hmac_sha256: "key" }}', message="The quick brown fox jumps over the lazy dog"
    )
    assert rendered == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert render('{{ recipient.id | hmac_sha256: "some-key" }}', recipient={"id": "user_123"}) != render(
        '{{ recipient.id | hmac_sha256: "other-key" }}', recipient={"id": "user_123"}
    )


def test_hmac_sha256_refuses_an_undefined_key() -> None:
    with pytest.raises(TemplateError, match="hmac_sha256: the key is empty or undefined"):
        render("{{ recipient.id | hmac_sha256: vars.missing_secret }}", recipient={"id": "user_123"}, vars={})


def test_intersect_keeps_the_common_items() -> None:
    arr1 = ["Acme Corp", "InGen", "Biosyn", "InGen"]
    arr2 = ["Mantel", "InGen", "Acme Corp"]
    assert render("{{ arr1 | intersect: arr2 | json }}", arr1=arr1, arr2=arr2) == '["Acme Corp", "InGen"]'
    assert render("{{ arr1 | intersect: missing | json }}", arr1=arr1) == "[]"


def test_intersect_compares_objects_too() -> None:
    left = [{"id": 1}, {"id": 2}]
    assert render("{{ left | intersect: right | json }}", left=left, right=[{"id": 2}]) == '[{"id": 2}]'


def test_intersect_refuses_what_is_no_array() -> None:
    with pytest.raises(TemplateError, match="intersect: expected an array"):
        render('{{ arr1 | intersect: "InGen" }}', arr1=["InGen"])


def test_from_markdown_renders_html() -> None:
    assert (
        render("{{ data.comment_body | from_markdown }}", data={"comment_body": "# Hello"})
        == "<h1>Hello</h1>"
    )


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.0.0", "2.0.0", "-1"),
        ("2.0.0", "2.0.0", "0"),
        ("2.10.0", "2.9.1", "1"),
        ("1.0.0+build.5", "1.0.0+build.6", "0"),
        ("1.0.0-rc.1", "1.0.0", "-1"),
    ],
)
def test_compare_versions_orders_semantic_versions(left: str, right: str, expected: str) -> None:
    assert render(f'{{{{ "{left}" | compare_versions: "{right}" }}}}') == expected


def test_compare_versions_follows_semver_precedence_for_prereleases() -> None:
    # The ordering example of semver.org, item 11.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    for lower, higher in itertools.pairwise(ordered):
        assert render("{{ lower | compare_versions: higher }}", lower=lower, higher=higher) == "-1"
        assert render("{{ higher | compare_versions: lower }}", lower=lower, higher=higher) == "1"


def test_compare_versions_refuses_what_is_no_semantic_version() -> None:
    with pytest.raises(TemplateError, match=r"'1\.0' is not a semantic version"):
        render('{{ "1.0" | compare_versions: "2.0.0" }}')


@pytest.mark.parametrize(
    "source",
    [
        '{{ missing | timezone: "UTC" }}',
        '{{ missing | date: "%Y", "UTC" }}',
        '{{ missing | format_date_in_locale: "en" }}',
        '{{ missing | format_datetime_in_locale: "en", "short", "short" }}',
        '{{ missing | format_number: "en" }}',
        "{{ missing | currency }}",
        "{{ missing | rounded_currency }}",
        "{{ missing | titlecase }}",
        "{{ missing | from_json }}",
        "{{ missing | from_markdown }}",
    ],
)
def test_filters_render_an_undefined_input_as_empty(source: str) -> None:
    assert render(source) == ""


def test_hashes_of_an_undefined_input_are_those_of_the_empty_string() -> None:
    assert render("{{ missing | md5 }}") == "d41d8cd98f00b204e9800998ecf8427e"


@pytest.mark.parametrize("filter_name", DATA_LOADER_FILTERS)
def test_data_loader_filters_are_not_provided(filter_name: str) -> None:
    assert filter_name not in FILTERS
    with pytest.raises(TemplateError, match=f"unknown filter '{filter_name}'"):
        render(f'{{% assign loaded = "chris" | {filter_name} %}}')
