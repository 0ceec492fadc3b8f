//! Flights and retransmission timers (RFC 6347 §4.2.4). (STUB API)
