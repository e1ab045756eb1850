"""What the SMPP codec raises, with what a peer needs to answer it.

Kept apart from the codec so that the framer, the field and TLV decoders and the session
can all raise and catch them without importing one another.
"""

from __future__ import annotations

from smppgw.smpp.constants import Status, command_name


class PduError(Exception):
    """A PDU that cannot be decoded or encoded.

    Carries what a peer needs to answer it: the command id and sequence (when the header
    could be read) and the command_status to put in a generic_nack or error response.
    """

    def __init__(
        self,
        reason: str,
        *,
        command_id: int | None = None,
        sequence: int | None = None,
        status: int = Status.ESME_RSYSERR,
    ) -> None:
        self.reason = reason
        self.command_id = command_id
        self.sequence = sequence
        self.status = status
        where = command_name(command_id) if command_id is not None else "pdu"
        seq = f" seq={sequence}" if sequence is not None else ""
        super().__init__(f"{where}{seq}: {reason}")


class FrameError(PduError):
    """The byte stream itself is broken (absurd command_length): the connection must close.

    ``frames`` holds the whole PDUs that :meth:`FrameReader.feed` cut from the same read
    before it met the broken length, so a session can still answer them (a receipt among
    them gets its deliver_sm_resp) before it closes.
    """

    def __init__(
        self,
        reason: str,
        *,
        command_id: int | None = None,
        sequence: int | None = None,
        status: int = Status.ESME_RSYSERR,
        frames: list[bytes] | None = None,
    ) -> None:
        super().__init__(reason, command_id=command_id, sequence=sequence, status=status)
        self.frames: list[bytes] = frames if frames is not None else []


class UnknownCommandError(PduError):
    """A well-framed PDU with a command id we do not know: answer generic_nack RINVCMDID."""
