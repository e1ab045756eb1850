"""The ``consent:`` section: every key has a default, every mistake is named precisely."""

from __future__ import annotations

from typing import Any

import pytest

from config.test_config import doc, problems
from smppgw.config import ConfigError, ConsentConfig
from smppgw.config.loader import parse_config


def test_defaults_are_decree_91_and_tcpa() -> None:
    consent = parse_config(doc()).consent
    assert consent == ConsentConfig()
    assert consent.timezone == "Asia/Ho_Chi_Minh"
    assert consent.marketing_hours == "07:00-22:00"
    assert (consent.marketing_daily_cap, consent.cap_action) == (3, "reject")
    assert (consent.marketing_prefix, consent.marketing_footer) == ("[QC] ", "")
    assert consent.optout_keywords == ("STOP", "HUY", "HUY QC", "TU CHOI", "TC", "UNSUBSCRIBE")
    assert consent.optin_keywords == ("START", "DK")
    assert consent.help_keywords == ("HELP",)
    assert (consent.optout_reply, consent.help_reply, consent.mo_is_optin) == (None, None, False)
    assert parse_config(doc()).mqtt.consent_topic == "sms/consent"
    assert parse_config(doc(consent=None)).consent == ConsentConfig()


def test_every_key_can_be_set() -> None:
    consent = parse_config(
        doc(
            consent={
                "timezone": "America/New_York",
                "marketing_hours": "22:00-06:00",
                "marketing_daily_cap": 0,
                "cap_action": "defer",
                "marketing_prefix": "",
                "marketing_footer": " Reply STOP to opt out",
                "optout_keywords": ["STOP", "Hủy"],
                "optin_keywords": [],
                "optout_reply": "You are unsubscribed.",
                "help_keywords": ["HELP", "INFO"],
                "help_reply": "Shop: call 1900 1234",
                "mo_is_optin": True,
            },
            mqtt={"consent_topic": "gw/consent"},
        )
    )
    c = consent.consent
    assert (c.timezone, c.marketing_hours, c.marketing_daily_cap) == (
        "America/New_York",
        "22:00-06:00",
        0,
    )
    assert (c.cap_action, c.marketing_prefix, c.optin_keywords) == ("defer", "", ())
    assert c.optout_keywords == ("STOP", "Hủy") and c.help_keywords == ("HELP", "INFO")
    assert (c.optout_reply, c.help_reply, c.mo_is_optin) == (
        "You are unsubscribed.",
        "Shop: call 1900 1234",
        True,
    )
    assert consent.mqtt.consent_topic == "gw/consent"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"timezone": "Asia/Ho_Chi_Mihn"},
            "consent.timezone: unknown IANA time zone 'Asia/Ho_Chi_Mihn' (like "
            "Asia/Ho_Chi_Minh); did you mean Asia/Ho_Chi_Minh?",
        ),
        ({"timezone": "ICT+7"}, "consent.timezone: unknown IANA time zone 'ICT+7'"),
        ({"timezone": 7}, "consent.timezone: must be a string, got 7"),
        (
            {"marketing_hours": "7h-22h"},
            'consent.marketing_hours: must be "HH:MM-HH:MM" (like "07:00-22:00"), got \'7h-22h\'',
        ),
        ({"marketing_hours": "07:00-07:00"}, "consent.marketing_hours: '07:00-07:00': the hours"),
        ({"marketing_daily_cap": -1}, "consent.marketing_daily_cap: must be an integer from 0"),
        ({"cap_action": "drop"}, "consent.cap_action: must be one of reject, defer, got 'drop'"),
        ({"optout_keywords": "STOP"}, "consent.optout_keywords: must be a list like [STOP, HUY]"),
        ({"optout_keywords": ["STOP", "..."]}, "consent.optout_keywords[1]: '...' has no letter"),
        (
            {"optout_keywords": ["STOP", "stop"]},
            "consent.optout_keywords[1]: 'stop' is the same keyword as consent.optout_keywords[0]",
        ),
        (
            {"optin_keywords": ["Hủy"]},
            "consent.optin_keywords[0]: 'Hủy' is the same keyword as consent.optout_keywords[1]",
        ),
        ({"help_reply": ""}, "consent.help_reply: must not be empty"),
        ({"mo_is_optin": "yes"}, "consent.mo_is_optin: must be true or false, got 'yes'"),
        ({"optout_reploy": "x"}, "consent.optout_reploy: unknown key; did you mean optout_reply?"),
    ],
)
def test_mistakes_are_named(section: dict[str, Any], message: str) -> None:
    found = problems(doc(consent=section))
    assert any(p.startswith(message) for p in found), found


def test_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc(consent={"timezone": "Nowhere/City", "cap_action": "x"}))
    assert len(info.value.problems) == 2
