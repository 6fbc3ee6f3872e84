//! The protobuf codec of every generated gRPC service and client: prost's, except that a
//! message that does not decode is `INVALID_ARGUMENT`, the sender's fault, where prost says
//! `INTERNAL` (which reads as the receiver's). `build.rs` names it with `codec_path`.

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// [`ProstCodec`] with decoding failures as `INVALID_ARGUMENT`.
#[derive(Debug)]
pub(crate) struct ProtoCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = ArgumentDecoder<<ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ArgumentDecoder(self.0.decoder())
    }
}

/// A decoder whose failures are the sender's: `INVALID_ARGUMENT`.
#[derive(Debug)]
pub(crate) struct ArgumentDecoder<D>(D);

impl<D: Decoder<Error = Status>> Decoder for ArgumentDecoder<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(source).map_err(|status| match status.code() {
            Code::Internal => Status::invalid_argument(status.message()),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
