"""The demo's jobs: what an e-commerce back end really sends, and what each must end as.

Every job carries the statuses it may finish with, so the demo's exit code is a check and
not a show: a job that ends anywhere else makes the run fail. Jobs on mobifone may end
``undelivered`` as well, because its simulator reports UNDELIV for a few percent of
messages (a bulk route where some phones are off), which the demo wants to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RECEIPT_FINAL = frozenset({"delivered", "undelivered"})
DELIVERED = frozenset({"delivered"})

UCS2_NOTICE = "Đơn hàng #1984 của bạn đã được giao. Cảm ơn bạn đã mua sắm tại SHOPVN!"
ORDER_CONFIRMATION = (
    "SHOPVN: Don hang #1984 da duoc xac nhan. Tong tien 459.000d, "
    "du kien giao 27/11. Theo doi tai shopvn.vn/t/1984"
)
#: GSM 03.38 text of 300-459 characters: three 153-character parts with a UDH.
THREE_PARTS = (
    "SHOPVN: Chinh sach doi tra moi tu 01/12. Ban co the doi hoac tra san pham trong "
    "30 ngay ke tu ngay nhan hang, mien phi van chuyen cho don tu 300.000d. San pham can "
    "con nguyen tem, nhan va hoa don. Hoan tien qua vi hoac tai khoan ngan hang trong 3-5 "
    "ngay lam viec sau khi kho nhan hang. Don hang #1984 cua ban van ap dung chinh sach "
    "cu. Chi tiet: shopvn.vn/doi-tra hoac goi 1900 1984 (8h-22h)."
)
COD_REQUEST = (
    "SHOPVN: Don hang COD #2048 (320.000d) se giao ngay mai. Tra loi 1 de xac nhan, 2 de huy."
)
OTP = (
    "Ma xac thuc SHOPVN cua ban la 483920. Ma co hieu luc trong 5 phut. "
    "Khong chia se ma nay voi bat ky ai."
)
REMINDER = (
    "SHOPVN: Hoa don #INV-{n:05d} ({amount}d) den han thanh toan ngay 30/11. "
    "Bo qua tin nhan nay neu ban da thanh toan."
)
PROMO = "SHOPVN: Black Friday giam 50% toan bo giay dep, chi hom nay tai shopvn.vn/bf"
#: A customer who texts HỦY (opt out) to the short code; a later marketing job to them
#: must end rejected (opted_out).
OPTOUT_CUSTOMER = "84986543210"
OPTOUT_TEXT = "Hủy"
#: The customer's reply to the COD request, and the short code it is sent to.
COD_SHORT_CODE = "8079"
COD_CUSTOMER = "84971234567"
COD_REPLY = "1"


@dataclass(frozen=True, slots=True)
class DemoJob:
    """One job to publish on the submit topic and the outcome it must reach."""

    id: str
    #: What it is, for the job list ("delivery notice (Vietnamese, UCS2)").
    kind: str
    to: str
    text: str
    expected: frozenset[str]
    carrier: str | None
    priority: str = "normal"
    sender: str | None = None
    #: The error code a ``rejected`` job must carry.
    error_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Short name for the summary; ``kind`` up to its first parenthesis when empty.
    label: str = ""

    @property
    def short(self) -> str:
        return self.label or self.kind.split(" (")[0]

    def payload(self) -> dict[str, Any]:
        job: dict[str, Any] = {"id": self.id, "to": self.to, "text": self.text}
        if self.priority != "normal":
            job["priority"] = self.priority
        if self.sender:
            job["from"] = self.sender
        job.update(self.extra)
        return job


@dataclass(frozen=True, slots=True)
class Scenario:
    showcase: tuple[DemoJob, ...]
    burst: tuple[DemoJob, ...]
    otp: DemoJob
    #: The OTP is published after this many burst jobs.
    otp_after: int
    cod: DemoJob
    burst_carrier: str
    #: A marketing job published once the customer's opt-out is seen on the consent topic.
    optout: DemoJob

    @property
    def all_jobs(self) -> tuple[DemoJob, ...]:
        return (*self.showcase, *self.burst, self.otp, self.optout)


def build(tag: str, burst_size: int) -> Scenario:
    """The jobs of one run; ``tag`` keeps ids apart from other runs on a shared broker."""

    def jid(name: str) -> str:
        return f"{name}-{tag}"

    cod = DemoJob(
        jid("cod-2048"),
        "COD order (asks for a reply: expect_reply)",
        "0971 234 567",
        COD_REQUEST,
        DELIVERED,
        "viettel",
        sender=COD_SHORT_CODE,
        # The customer's answer within 10 minutes is tied to this job (in_reply_to).
        extra={"expect_reply": 600},
    )
    showcase = (
        DemoJob(
            jid("order-1984"),
            "order confirmation (GSM)",
            "0981234567",
            ORDER_CONFIRMATION,
            DELIVERED,
            "viettel",
        ),
        DemoJob(
            jid("shipped-1984"),
            "delivery notice (Vietnamese, UCS2)",
            "+84912345678",
            UCS2_NOTICE,
            DELIVERED,
            "vinaphone",
        ),
        DemoJob(
            jid("policy-1984"),
            "3-part message (GSM, UDH)",
            "0862345678",
            THREE_PARTS,
            DELIVERED,
            "viettel",
        ),
        DemoJob(
            jid("landline"),
            "invalid destination (a landline)",
            "024 3825 3666",
            ORDER_CONFIRMATION,
            frozenset({"rejected"}),
            None,
            error_code="no_route",
        ),
        cod,
        DemoJob(
            jid("promo-bf"),
            "promotion (marketing: [QC] label, footer)",
            "0982345678",
            PROMO,
            DELIVERED,
            "viettel",
            extra={"category": "marketing"},
            label="promotion",
        ),
    )
    optout = DemoJob(
        jid("promo-optout"),
        "promotion to a customer who texted HỦY",
        "0" + OPTOUT_CUSTOMER[2:],
        PROMO,
        frozenset({"rejected"}),
        None,
        error_code="opted_out",
        extra={"category": "marketing"},
        label="opt-out honoured",
    )
    burst = tuple(
        DemoJob(
            jid(f"remind-{n:03d}"),
            "payment reminder (bulk, low)",
            f"090{1000000 + n:07d}",
            REMINDER.format(n=n, amount=f"{150 + (n * 37) % 400}.000"),
            RECEIPT_FINAL,
            "mobifone",
            priority="low",
        )
        for n in range(1, burst_size + 1)
    )
    otp = DemoJob(
        jid("otp"),
        "OTP (high, in the middle of the burst)",
        "0931234567",
        OTP,
        RECEIPT_FINAL,
        "mobifone",
        priority="high",
        extra={"ttl": 300},
        label="OTP (high)",
    )
    return Scenario(showcase, burst, otp, burst_size // 2, cod, "mobifone", optout)
