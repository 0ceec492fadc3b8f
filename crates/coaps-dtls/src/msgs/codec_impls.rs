//! Encoders and decoders for the messages in `handshake.rs`. (STUBS: to be implemented.)
use super::handshake::*;
use crate::codec::*;

macro_rules! stub_codec {
    ($($t:ty),*) => {$(
        impl<'a> Codec<'a> for $t {
            fn encode(&self, _out: &mut Vec<u8>) { todo!() }
            fn read(_r: &mut Reader<'a>) -> Result<Self, InvalidMessage> { todo!() }
        }
    )*};
}
stub_codec!(ClientHello, HelloVerifyRequest, ServerHello, ServerEcdhParams, DigitallySigned, CertificateRequest, NewSessionTicket);

impl Certificate {
    /// Decodes a Certificate message body of the negotiated certificate type.
    pub fn read_with(_r: &mut Reader<'_>, _typ: CertificateType) -> Result<Self, InvalidMessage> { todo!() }
    /// Appends the encoding.
    pub fn encode(&self, _out: &mut Vec<u8>) { todo!() }
}
impl ServerKeyExchange {
    /// Decodes a ServerKeyExchange body for the negotiated key exchange.
    pub fn read_with(_r: &mut Reader<'_>, _kx: KeyExchangeAlgorithm) -> Result<Self, InvalidMessage> { todo!() }
    /// Appends the encoding.
    pub fn encode(&self, _out: &mut Vec<u8>) { todo!() }
}
impl ClientKeyExchange {
    /// Decodes a ClientKeyExchange body for the negotiated key exchange.
    pub fn read_with(_r: &mut Reader<'_>, _kx: KeyExchangeAlgorithm) -> Result<Self, InvalidMessage> { todo!() }
    /// Appends the encoding.
    pub fn encode(&self, _out: &mut Vec<u8>) { todo!() }
}
