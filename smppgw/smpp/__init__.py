"""The SMPP 3.4 library: ESME side, importing nothing of the gateway around it.

Like go-smpp's packages, each concept is a small module, imported from where it lives:

* ``framing`` — the 16-octet header and :class:`~smppgw.smpp.framing.FrameReader`.
* ``fields`` — the mandatory parameter types (C-Octet String, integers, short_message).
* ``tlv`` — optional parameters: values by tag type, the TLV block.
* ``pdu`` — the PDU classes; ``codec`` — ``encode`` / ``decode``; ``errors`` — what they raise.
* ``constants`` — command ids, statuses, tags; ``receipt`` — delivery receipts.
* ``text`` — SMS text: GSM 7-bit, UCS2, segmentation, MO decoding and reassembly.
* ``session`` — one bind (:class:`~smppgw.smpp.session.Session`) and the keeper that holds
  it up, configured by plain :class:`~smppgw.smpp.session.BindParams`.

``tests/smpp/test_library.py`` keeps it that way: no module here may import another
``smppgw`` package.
"""
