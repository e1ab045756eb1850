from smppgw.smpp.pdu import SubmitSm, decode, encode


def test_submit_sm_round_trip() -> None:
    pdu = SubmitSm(sequence=7, destination_addr="84912345678", short_message=b"hi")
    assert decode(encode(pdu)) == pdu
