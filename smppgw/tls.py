"""TLS client contexts from a ``TlsConfig``: one place decides what "verify" means.

Both the broker connection and SMPP-over-TLS use it, so certificate verification is on
by default for both and can only be turned off explicitly (``verify: false``).
"""

from __future__ import annotations

import ssl

from smppgw.config import TlsConfig


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """System CAs (or ``ca_file``), an optional client certificate, hostname checks on."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
