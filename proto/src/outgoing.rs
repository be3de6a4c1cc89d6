//! What the controller writes on a device's `Sync` stream: a `ControllerMessage` made for that
//! device, or one already encoded once and shared by every device that needs the same bytes.
//!
//! A lockdown of a home sends one policy to thousands of devices. Encoding it once and handing
//! each stream the same `Bytes` (a reference count, not a copy or a re-encode) takes the
//! per-device clone and prost encode off the push path. The wire is unchanged: the bytes are
//! exactly what encoding the `ControllerMessage` gives, so devices cannot tell the difference.
//!
//! The server side of `AgentService` in [`server`] is generated from the same `.proto` with
//! `Sync`'s reply type mapped to [`Outgoing`]; the client side (the agent) and every other type
//! stay the plain generated ones in `crate::agent::v1`.

use std::marker::PhantomData;

use prost::bytes::{BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message};
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::agent::v1::ControllerMessage;

/// One message for a device's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    /// Made for this device (an answer, a renewal, an acknowledgement).
    Message(ControllerMessage),
    /// A `ControllerMessage` already encoded (`Message::encode_to_vec`), shared by many streams.
    Encoded(Bytes),
}

impl Outgoing {
    /// Encodes `message` once, for handing to many streams.
    pub fn encode_once(message: &ControllerMessage) -> Self {
        Outgoing::Encoded(Bytes::from(message.encode_to_vec()))
    }

    /// The message itself, decoding shared bytes if need be (tests and logs; never on the push
    /// path).
    pub fn to_message(&self) -> Result<ControllerMessage, DecodeError> {
        match self {
            Outgoing::Message(m) => Ok(m.clone()),
            Outgoing::Encoded(b) => ControllerMessage::decode(b.clone()),
        }
    }
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing::Message(ControllerMessage::default())
    }
}

impl From<ControllerMessage> for Outgoing {
    fn from(message: ControllerMessage) -> Self {
        Outgoing::Message(message)
    }
}

impl Message for Outgoing {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Outgoing::Message(m) => m.encode_raw(buf),
            Outgoing::Encoded(b) => buf.put_slice(b),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // The controller never decodes what it sends; should anything do so, shared bytes are
        // turned back into the message first so the merge means what it says.
        if let Outgoing::Encoded(b) = self {
            *self = Outgoing::Message(ControllerMessage::decode(b.clone())?);
        }
        match self {
            Outgoing::Message(m) => m.merge_field(tag, wire_type, buf, ctx),
            Outgoing::Encoded(_) => Ok(()),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.encoded_len(),
            Outgoing::Encoded(b) => b.len(),
        }
    }

    fn clear(&mut self) {
        *self = Outgoing::default();
    }
}

/// Bytes each `Sync` stream's encoder and decoder start with (tonic's default is 8 KiB each,
/// allocated for every stream whether or not it ever carries a large message). Nearly
/// everything a device and the controller say is well under 1 KiB; a policy or a list chunk
/// grows the buffer for itself.
pub const SYNC_BUFFER_BYTES: usize = 1024;

/// The codec of `AgentService`: prost, with [`SYNC_BUFFER_BYTES`] buffers per stream.
#[derive(Debug, Clone, Copy)]
pub struct SyncCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SyncCodec<T, U> {
    fn default() -> Self {
        SyncCodec(PhantomData)
    }
}

impl<T, U> Codec for SyncCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(SYNC_BUFFER_BYTES, 32 * 1024))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(SYNC_BUFFER_BYTES, 32 * 1024))
    }
}

/// `haven.agent.v1.AgentService`'s server, whose `Sync` stream carries [`Outgoing`].
#[allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/shared/haven.agent.v1.rs"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::v1::{DevicePolicy, controller_message::Body};

    #[test]
    fn shared_bytes_are_exactly_the_message_on_the_wire() {
        let message = ControllerMessage {
            body: Some(Body::Policy(Box::new(DevicePolicy {
                version: 42,
                ..Default::default()
            }))),
        };
        let shared = Outgoing::encode_once(&message);
        assert_eq!(shared.encoded_len(), message.encoded_len());
        assert_eq!(shared.encode_to_vec(), message.encode_to_vec());
        assert_eq!(
            Outgoing::from(message.clone()).encode_to_vec(),
            message.encode_to_vec()
        );
        assert_eq!(shared.to_message().unwrap(), message);
        // Decoding into an `Outgoing` gives the message back, whatever it held before.
        let mut decoded = Outgoing::Encoded(Bytes::from_static(b"\x0a\x00"));
        decoded
            .merge(message.encode_to_vec().as_slice())
            .expect("decodes");
        assert_eq!(decoded.to_message().unwrap(), message);
    }
}
