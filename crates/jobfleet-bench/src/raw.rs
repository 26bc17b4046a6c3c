//! The raw async-nats baseline shared by the benchmarks.

use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use jobfleet_producer::DEFAULT_BATCH_WINDOW;

/// Publishes `jobs` copies of `payload` to `subject` with plain async-nats, keeping as many
/// acknowledgements in flight as jobfleet's batch window, and waits for all of them. With
/// `msg_id`, each publish carries a fresh `Nats-Msg-Id`, as every jobfleet job does.
pub(crate) async fn publish_windowed(
    js: &jetstream::Context,
    subject: &str,
    payload: &Bytes,
    jobs: usize,
    msg_id: bool,
) {
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..jobs {
        if in_flight.len() >= DEFAULT_BATCH_WINDOW {
            let acked: Option<Result<_, _>> = in_flight.next().await;
            acked.expect("one in flight").expect("ack");
        }
        let ack = if msg_id {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                jobfleet_core::JobId::new().to_string(),
            );
            js.publish_with_headers(subject.to_owned(), headers, payload.clone())
                .await
        } else {
            js.publish(subject.to_owned(), payload.clone()).await
        };
        in_flight.push(std::future::IntoFuture::into_future(ack.expect("publish")));
    }
    while let Some(ack) = in_flight.next().await {
        ack.expect("ack");
    }
}
