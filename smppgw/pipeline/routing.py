"""Destination numbers → E.164 digits → carrier.

Clients write numbers the way people do (``0912 345 678``, ``+84-912-345-678``,
``0084912345678``); carriers want international digits, and prefix routing only works on one
canonical form. So every destination is normalised once, here, before it is routed, stored or
sent, and every later comparison is a plain string comparison.

Routing is "longest matching prefix wins" (``84912`` beats ``849``), like a carrier's own
number-portability-unaware routing tables. The table is a dict per prefix length, so a
lookup costs one dict probe per distinct prefix length (a handful), however many prefixes
the carriers claim.

What a job may reach is bounded by the config, not by the job: a job that forces a
``carrier`` still needs that carrier to claim a prefix of the destination (else anyone could
send through any carrier to any number, premium ranges included), and a destination outside
``routing.country_code`` is refused unless ``routing.allow_international`` lists its
country code.
"""

from __future__ import annotations

from collections.abc import Sequence

from smppgw.config import CarrierConfig, RoutingConfig, SourceConfig

#: E.164 allows at most 15 digits; anything under 8 is a short code or a typo, not a mobile.
MIN_DIGITS = 8
MAX_DIGITS = 15

#: Characters people put in numbers for readability; removed before validation.
_SEPARATORS = str.maketrans("", "", " \t\u00a0-.()")
_DIGITS = frozenset("0123456789")


class RoutingError(ValueError):
    """A destination that cannot be sent: ``code`` goes into the job's ``rejected`` status.

    Codes: ``invalid_destination`` (not a phone number), ``unknown_carrier`` (the job forced a
    carrier the config does not have), ``no_route`` (no carrier claims the number).
    """

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²' and Arabic-Indic digits."""
    return bool(text) and all(c in _DIGITS for c in text)


#: Short codes: this many digits at most, kept as written (never given a country code).
MAX_SHORT_CODE = 7


def mo_number(raw: str, country_code: str) -> str | None:
    """An MO address (its ``from`` or ``to``) as the gateway compares numbers: a short
    code (3 to 7 digits, not starting with 0) as written, anything else as
    :func:`normalize_msisdn` writes it; ``None`` when it is neither (an alphanumeric
    sender). So a job's destination ``0912…`` and an MO from ``84912…`` are one number."""
    number = raw.strip().translate(_SEPARATORS)
    if is_digits(number) and 3 <= len(number) <= MAX_SHORT_CODE and number[0] != "0":
        return number
    try:
        return normalize_msisdn(raw, country_code)
    except RoutingError:
        return None


def normalize_msisdn(raw: str, country_code: str) -> str:
    """Return ``raw`` as E.164 digits without ``+`` (``0912345678`` → ``84912345678``).

    Accepted forms: ``+CC…`` and ``00CC…`` (international), ``0…`` (national: the trunk 0 is
    replaced by ``country_code``) and bare digits (already international, as carriers and
    most APIs write them). Spaces, dashes, dots and parentheses are ignored.
    """
    if not isinstance(raw, str):
        raise RoutingError("invalid_destination", f"expected a string, got {type(raw).__name__}")
    number = raw.strip().translate(_SEPARATORS)
    if not number:
        raise RoutingError("invalid_destination", "destination is empty")
    plus = number.startswith("+")
    if plus:
        number = number[1:]
    bad = sorted({c for c in number if c not in _DIGITS})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise RoutingError(
            "invalid_destination",
            f"destination {raw!r} contains characters that are not digits: {shown}",
        )
    if not number:
        raise RoutingError("invalid_destination", f"destination {raw!r} has no digits")
    if plus:
        if number.startswith("0"):
            raise RoutingError(
                "invalid_destination",
                f"destination {raw!r}: a country code never starts with 0 after '+'",
            )
        digits = number
    elif number.startswith("00"):
        digits = number[2:]
        if digits.startswith("0"):
            raise RoutingError(
                "invalid_destination",
                f"destination {raw!r}: a country code never starts with 0 after '00'",
            )
    elif number.startswith("0"):
        digits = country_code + number[1:]
    else:
        digits = number
    if len(digits) < MIN_DIGITS:
        raise RoutingError(
            "invalid_destination",
            f"destination {raw!r} is too short: {len(digits)} digits in international form "
            f"({digits}), at least {MIN_DIGITS} needed",
        )
    if len(digits) > MAX_DIGITS:
        raise RoutingError(
            "invalid_destination",
            f"destination {raw!r} is too long: {len(digits)} digits in international form, "
            f"E.164 allows at most {MAX_DIGITS}",
        )
    return digits


#: SMPP source_addr is a C-Octet String of 21 octets; brandnames display at most 11 characters.
MAX_ALPHANUMERIC_SENDER = 11
MAX_NUMERIC_SENDER = 20


def sender_problem(address: str) -> str | None:
    """Why ``address`` cannot be a sender (``from`` / ``source.address``), or ``None``.

    A sender is either a number (digits, optionally with a leading ``+``) or an alphanumeric
    brandname: printable ASCII (handsets render nothing else reliably), at most 11 characters.
    """
    if not address:
        return "must not be empty"
    number = numeric_sender(address)
    if number is not None:
        if len(number) > MAX_NUMERIC_SENDER:
            return f"a numeric sender has at most {MAX_NUMERIC_SENDER} digits, got {len(number)}"
        return None
    if not all(" " <= c <= "~" for c in address):
        return "an alphanumeric sender must be printable ASCII (A-Z, a-z, 0-9, punctuation)"
    if len(address) > MAX_ALPHANUMERIC_SENDER:
        return (
            f"an alphanumeric sender has at most {MAX_ALPHANUMERIC_SENDER} characters, "
            f"got {len(address)}"
        )
    return None


def numeric_sender(address: str) -> str | None:
    """The digits of a numeric sender (``+84 912-345-678`` → ``84912345678``), else None."""
    compact = address.strip().translate(_SEPARATORS).removeprefix("+")
    return compact if is_digits(compact) else None


def sender_source(address: str, country_code: str | None) -> SourceConfig:
    """The SMPP source address (with TON/NPI) for a job's ``from``.

    - alphanumeric (any non-digit): TON 5 (alphanumeric) / NPI 0, sent as is;
    - a number in international or national form (``+84…``, ``0084…``, ``84…``, ``09…``):
      normalised like a destination, TON 1 (international) / NPI 1 (E.164);
    - a short code (fewer than 8 digits, e.g. ``8079``): TON 0 (unknown) / NPI 1, so the
      SMSC applies its own numbering plan, which is what carriers expect for short codes.

    Raises :class:`RoutingError` (code ``invalid_sender``) with the reason.
    """
    problem = sender_problem(address)
    if problem is not None:
        raise RoutingError("invalid_sender", f"sender {address!r}: {problem}")
    number = numeric_sender(address)
    if number is None:
        return SourceConfig(address=address, ton=5, npi=0)
    address = address.strip()
    if not address.startswith(("+", "0")) and len(number) < MIN_DIGITS:
        return SourceConfig(address=number, ton=0, npi=1)
    if address.startswith("0") and not address.startswith("00") and not country_code:
        raise RoutingError(
            "invalid_sender", f"sender {address!r} is a national number and no country code is set"
        )
    try:
        digits = normalize_msisdn(address, country_code or "")
    except RoutingError as exc:
        raise RoutingError(
            "invalid_sender", exc.reason.replace("destination", "sender", 1)
        ) from None
    return SourceConfig(address=digits, ton=1, npi=1)


class Router:
    """Prefix → carrier, longest prefix first.

    Built once from the validated config. A prefix claimed by two carriers (``check-config``
    warns) is routed to the first of them in config order; the other reaches those
    numbers only as a failover (:mod:`smppgw.pipeline.failover`). With ``routing``,
    destinations outside its ``country_code`` are refused unless ``allow_international``
    lists theirs; without it (summaries, tables) any number may be routed.
    """

    __slots__ = ("_by_length", "_carriers", "_lengths", "_prefixes", "_routing")

    def __init__(
        self, carriers: Sequence[CarrierConfig], routing: RoutingConfig | None = None
    ) -> None:
        self._carriers = frozenset(c.name for c in carriers)
        self._prefixes = {c.name: c.prefixes for c in carriers}
        self._routing = routing
        owners: dict[str, str] = {}
        for carrier in carriers:
            for prefix in carrier.prefixes:
                owners.setdefault(prefix, carrier.name)  # first in config order wins
        by_length: dict[int, dict[str, str]] = {}
        for prefix, name in owners.items():
            by_length.setdefault(len(prefix), {})[prefix] = name
        self._by_length = by_length
        self._lengths = tuple(sorted(by_length, reverse=True))

    @property
    def carriers(self) -> frozenset[str]:
        return self._carriers

    def route(self, msisdn: str, forced: str | None = None) -> str:
        """Carrier name for a normalised number.

        ``forced`` (the job's ``carrier``) wins over the longest prefix, but only among the
        carriers claiming a prefix of the number: it picks a carrier, it does not widen
        where the gateway sends."""
        if forced is not None and forced not in self._carriers:
            known = ", ".join(sorted(self._carriers))
            raise RoutingError(
                "unknown_carrier", f"carrier {forced!r} is not configured (known: {known})"
            )
        self._check_country(msisdn)
        if forced is not None:
            # Its own prefixes, also one the table gave to an earlier carrier.
            if any(msisdn.startswith(prefix) for prefix in self._prefixes[forced]):
                return forced
            claimed = ", ".join(self._prefixes[forced]) or "none"
            raise RoutingError(
                "no_route",
                f"carrier {forced!r} does not serve {msisdn} (its prefixes: {claimed})",
            )
        size = len(msisdn)
        for length in self._lengths:
            if length <= size:
                name = self._by_length[length].get(msisdn[:length])
                if name is not None:
                    return name
        raise RoutingError("no_route", f"no carrier claims a prefix of {msisdn}")

    def _check_country(self, msisdn: str) -> None:
        """Refuse a number outside the home country code and the allowed international ones.

        Country codes are a prefix code (no code is the start of another), so "starts
        with" is exact."""
        routing = self._routing
        if routing is None or msisdn.startswith(routing.country_code):
            return
        if any(msisdn.startswith(code) for code in routing.allow_international):
            return
        raise RoutingError(
            "no_route",
            f"{msisdn} is outside country code {routing.country_code}, and "
            "routing.allow_international does not list its country code",
        )

    def table(self) -> list[tuple[str, str]]:
        """``(prefix, carrier)`` pairs sorted by prefix, for summaries and docs."""
        return sorted(
            (prefix, name) for table in self._by_length.values() for prefix, name in table.items()
        )
