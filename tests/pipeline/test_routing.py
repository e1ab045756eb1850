"""E.164 normalisation, sender TON/NPI and longest-prefix routing."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppgw.config import CarrierConfig, RoutingConfig, SourceConfig
from smppgw.pipeline.routing import (
    Router,
    RoutingError,
    normalize_msisdn,
    sender_problem,
    sender_source,
)

VIETTEL = ("8486", "8496", "8497", "8498", *(f"843{d}" for d in range(2, 10)))
VINAPHONE = ("8488", "8491", "8494", "8481", "8482", "8483", "8484", "8485")
MOBIFONE = ("8489", "8490", "8493", "8470", "8476", "8477", "8478", "8479")


def carrier(name: str, prefixes: tuple[str, ...]) -> CarrierConfig:
    return CarrierConfig(name=name, host="127.0.0.1", port=2775, system_id="x", prefixes=prefixes)


@pytest.fixture
def router() -> Router:
    return Router(
        [
            carrier("viettel", VIETTEL),
            carrier("vinaphone", VINAPHONE),
            carrier("mobifone", MOBIFONE),
        ]
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0912345678", "84912345678"),
        ("84912345678", "84912345678"),
        ("+84912345678", "84912345678"),
        ("0084912345678", "84912345678"),
        ("0912 345 678", "84912345678"),
        ("091-234-5678", "84912345678"),
        ("091.234.5678", "84912345678"),
        ("(091) 234 5678", "84912345678"),
        ("+84 (91) 234-5678", "84912345678"),
        ("  0912345678\t", "84912345678"),
        ("0912\u00a0345678", "84912345678"),
        ("+33612345678", "33612345678"),
        ("0033612345678", "33612345678"),
        ("0321234567", "84321234567"),
    ],
)
def test_normalize_accepts_the_forms_people_write(raw: str, expected: str) -> None:
    assert normalize_msisdn(raw, "84") == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "destination is empty"),
        ("   ", "destination is empty"),
        ("-- ()", "destination is empty"),
        ("+", "destination '+' has no digits"),
        ("09123a5678", "destination '09123a5678' contains characters that are not digits: 'a'"),
        ("0912/345678", "destination '0912/345678' contains characters that are not digits: '/'"),
        ("84+912345678", "contains characters that are not digits: '+'"),
        ("091234567٨", "contains characters that are not digits: '٨'"),
        ("1234567", "destination '1234567' is too short: 7 digits in international form (1234567)"),
        (
            "+8491234567890123",
            "is too long: 16 digits in international form, E.164 allows at most 15",
        ),
        ("+0912345678", "a country code never starts with 0 after '+'"),
        ("000912345678", "a country code never starts with 0 after '00'"),
    ],
)
def test_normalize_rejects_with_a_precise_reason(raw: str, reason: str) -> None:
    with pytest.raises(RoutingError) as info:
        normalize_msisdn(raw, "84")
    assert info.value.code == "invalid_destination"
    assert reason in info.value.reason


def test_too_short_names_the_digit_count() -> None:
    with pytest.raises(RoutingError, match=r"too short: 5 digits in international form \(84912\)"):
        normalize_msisdn("0912", "84")


def test_normalize_rejects_non_strings() -> None:
    with pytest.raises(RoutingError, match="expected a string, got int"):
        normalize_msisdn(912345678, "84")  # type: ignore[arg-type]


national = st.from_regex(r"\A0[1-9][0-9]{8,9}\Z")


@given(national, st.sampled_from(["84", "1", "33", "855"]))
def test_any_national_number_gets_the_country_code_instead_of_the_0(
    number: str, country_code: str
) -> None:
    normalized = normalize_msisdn(number, country_code)
    assert normalized == country_code + number[1:]


@given(st.one_of(national, st.from_regex(r"\A\+?[1-9][0-9]{7,14}\Z")))
def test_normalisation_is_idempotent(number: str) -> None:
    once = normalize_msisdn(number, "84")
    assert normalize_msisdn(once, "84") == once
    assert normalize_msisdn("+" + once, "84") == once
    assert normalize_msisdn("00" + once, "84") == once


@given(st.text(max_size=30))
def test_normalize_only_ever_raises_routing_error(raw: str) -> None:
    try:
        result = normalize_msisdn(raw, "84")
    except RoutingError:
        return
    assert result.isascii() and result.isdigit() and 8 <= len(result) <= 15


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("84961234567", "viettel"),
        ("84321234567", "viettel"),
        ("84391234567", "viettel"),
        ("84912345678", "vinaphone"),
        ("84811234567", "vinaphone"),
        ("84901234567", "mobifone"),
        ("84701234567", "mobifone"),
    ],
)
def test_routes_by_prefix(router: Router, number: str, expected: str) -> None:
    assert router.route(number) == expected


def test_longest_prefix_wins() -> None:
    router = Router([carrier("wide", ("849",)), carrier("narrow", ("84912",))])
    assert router.route("84912345678") == "narrow"
    assert router.route("84913345678") == "wide"
    assert router.route("849") == "wide"


def test_no_route(router: Router) -> None:
    with pytest.raises(RoutingError) as info:
        router.route("33612345678")
    assert info.value.code == "no_route"
    assert info.value.reason == "no carrier claims a prefix of 33612345678"


def test_forced_carrier_picks_among_the_carriers_claiming_the_number() -> None:
    router = Router([carrier("wide", ("849",)), carrier("narrow", ("84912",))])
    assert router.route("84912345678") == "narrow"
    assert router.route("84912345678", "wide") == "wide"
    assert router.route("84912345678", "narrow") == "narrow"


@pytest.mark.parametrize(
    ("number", "forced", "claimed"),
    [
        # Another carrier's number: a forced carrier does not widen where jobs go.
        ("84961234567", "mobifone", ", ".join(MOBIFONE)),
        # An international premium range no carrier claims (finding 2 of issue #11).
        ("882345678901", "viettel", ", ".join(VIETTEL)),
        ("33612345678", "viettel", ", ".join(VIETTEL)),
    ],
)
def test_forced_carrier_must_claim_the_destination(
    router: Router, number: str, forced: str, claimed: str
) -> None:
    with pytest.raises(RoutingError) as info:
        router.route(number, forced)
    assert info.value.code == "no_route"
    assert info.value.reason == (
        f"carrier {forced!r} does not serve {number} (its prefixes: {claimed})"
    )


def test_a_carrier_without_prefixes_serves_nothing() -> None:
    router = Router([carrier("viettel", ("8498",)), carrier("spare", ())])
    with pytest.raises(
        RoutingError, match=r"'spare' does not serve 84981234567 \(its prefixes: none\)"
    ):
        router.route("84981234567", "spare")


def test_international_destinations_need_their_country_code_allowed() -> None:
    carriers = [carrier("viettel", ("8498",)), carrier("global", ("1", "44", "882"))]
    home = Router(carriers, RoutingConfig(country_code="84"))
    assert home.route("84981234567") == "viettel"
    for number in ("12025550123", "447911123456", "882345678901"):
        with pytest.raises(RoutingError) as info:
            home.route(number)
        assert info.value.code == "no_route"
        assert info.value.reason == (
            f"{number} is outside country code 84, and routing.allow_international does not "
            "list its country code"
        )
        with pytest.raises(RoutingError, match="outside country code 84"):
            home.route(number, "global")  # forcing a carrier does not get around it
    abroad = Router(carriers, RoutingConfig(country_code="84", allow_international=("1", "44")))
    assert abroad.route("12025550123") == "global"
    assert abroad.route("447911123456", "global") == "global"
    with pytest.raises(RoutingError, match="outside country code 84"):
        abroad.route("882345678901")
    # Without a routing config (summaries, tables) any claimed number routes.
    assert Router(carriers).route("882345678901") == "global"


def test_forced_carrier_unknown_is_reported_before_the_destination() -> None:
    router = Router([carrier("viettel", ("8498",))], RoutingConfig())
    with pytest.raises(RoutingError) as info:
        router.route("882345678901", "nosuch")
    assert info.value.code == "unknown_carrier"


def test_forced_carrier_must_exist(router: Router) -> None:
    with pytest.raises(RoutingError) as info:
        router.route("84961234567", "vietnamobile")
    assert info.value.code == "unknown_carrier"
    assert "'vietnamobile' is not configured (known: mobifone, viettel, vinaphone)" in str(
        info.value
    )


def test_a_prefix_claimed_twice_goes_to_the_first_carrier() -> None:
    router = Router([carrier("a", ("8486",)), carrier("b", ("8486", "8490"))])
    assert router.route("84861234567") == "a"
    assert router.route("84901234567") == "b"
    # b still serves the number when a job forces it.
    assert router.route("84861234567", "b") == "b"


def test_table_lists_every_prefix(router: Router) -> None:
    table = router.table()
    assert len(table) == len(VIETTEL) + len(VINAPHONE) + len(MOBIFONE)
    assert ("8486", "viettel") in table and table == sorted(table)


def test_lookup_does_not_scan_every_prefix() -> None:
    """100k prefixes of one length: a lookup is one dict probe, not a scan."""
    prefixes = tuple(f"84{n:06d}" for n in range(100_000))
    router = Router([carrier("big", prefixes), carrier("other", ("1",))])
    start = time.perf_counter()
    for _ in range(10_000):
        router.route("15551234567")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("SHOPVN", SourceConfig("SHOPVN", 5, 0)),
        ("Shop VN", SourceConfig("Shop VN", 5, 0)),
        ("ABCDEFGHIJK", SourceConfig("ABCDEFGHIJK", 5, 0)),
        ("0912345678", SourceConfig("84912345678", 1, 1)),
        ("+84912345678", SourceConfig("84912345678", 1, 1)),
        ("84912345678", SourceConfig("84912345678", 1, 1)),
        ("8079", SourceConfig("8079", 0, 1)),
    ],
)
def test_sender_ton_npi(sender: str, expected: SourceConfig) -> None:
    assert sender_source(sender, "84") == expected


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("", "must not be empty"),
        ("ABCDEFGHIJKL", "an alphanumeric sender has at most 11 characters, got 12"),
        ("Shóp", "an alphanumeric sender must be printable ASCII"),
        ("1" * 21, "a numeric sender has at most 20 digits, got 21"),
    ],
)
def test_sender_problems(sender: str, reason: str) -> None:
    problem = sender_problem(sender)
    assert problem is not None and problem.startswith(reason)
    with pytest.raises(RoutingError) as info:
        sender_source(sender, "84")
    assert info.value.code == "invalid_sender"


def test_national_sender_needs_a_country_code() -> None:
    with pytest.raises(RoutingError, match="national number and no country code"):
        sender_source("0912345678", None)
