//! One WebSocket connection: a reader that handles client messages and a writer that
//! drains the connection's outbox in batches, sends pings and closes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use poem::web::websocket::{Message, WebSocketStream};

use super::hub::{Admission, Hub, Peer, Subscribed};
use super::outbox::Closing;
use super::protocol::{self, ClientError, ClientMessage, ErrorCode};
use super::text;
use crate::i18n::Lang;

/// How long the server waits for the client's reply to a close frame.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

/// Unknown VM ids named in the text of an `UNKNOWN_VM` error; `data.vmIds` lists them all.
const UNKNOWN_IDS_IN_TEXT: usize = 20;

/// The outcome of the handshake.
pub enum Handshake {
    Accepted {
        lang: Lang,
        subject: String,
        admission: Admission,
    },
    /// Upgrade, send `error` when given, then close.
    Rejected {
        lang: Lang,
        error: Option<ClientError>,
        closing: Closing,
    },
}

/// The reason the reader ended.
enum Ending {
    /// The client closed, or the connection broke.
    Gone,
    /// The server closes.
    Close(Closing),
}

type Sink = futures::stream::SplitSink<WebSocketStream, Message>;
type Stream = futures::stream::SplitStream<WebSocketStream>;

/// Serves one upgraded connection until it closes.
pub async fn serve(hub: Arc<Hub>, socket: WebSocketStream, handshake: Handshake) {
    let (lang, subject, admission) = match handshake {
        Handshake::Accepted {
            lang,
            subject,
            admission,
        } => (lang, subject, admission),
        Handshake::Rejected {
            lang,
            error,
            closing,
        } => {
            hub.service.telemetry.count_ws_close(closing.counted_as);
            reject(
                socket,
                error.map(|error| protocol::error(&error, lang)),
                closing,
            )
            .await;
            return;
        }
    };
    if hub.has_failed() {
        let closing = Closing {
            code: super::CLOSE_INTERNAL_ERROR,
            reason: text::CLOSE_INTERNAL.get(lang).to_owned(),
            counted_as: "internal",
        };
        hub.service.telemetry.count_ws_close(closing.counted_as);
        reject(socket, None, closing).await;
        return;
    }

    let peer = hub.register(lang);
    tracing::debug!(client = %peer.client_id, subject, "WebSocket client connected");
    let connected = protocol::connected(&peer.client_id, crate::collection::now_ms(), &[]);
    peer.send(Arc::from(connected), &hub.service.telemetry);

    let (sink, stream) = socket.split();
    let reader = read_loop(&hub, &peer, stream);
    let writer = write_loop(&hub, &peer, sink);
    tokio::pin!(reader, writer);
    tokio::select! {
        ending = &mut reader => {
            if let Ending::Close(closing) = ending {
                peer.outbox.close(closing);
                let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, &mut writer).await;
            }
        }
        () = &mut writer => {
            // The close frame is out (or writing failed): give the client a moment to reply.
            let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, &mut reader).await;
        }
    }

    hub.unregister(&peer);
    drop(admission);
    tracing::debug!(client = %peer.client_id, "WebSocket client disconnected");
}

/// Sends an optional `error` and a close frame, then waits briefly for the client's reply.
async fn reject(mut socket: WebSocketStream, error: Option<String>, closing: Closing) {
    let send = async {
        if let Some(error) = error {
            socket.feed(Message::Text(error)).await?;
        }
        socket
            .send(Message::Close(Some((closing.code.into(), closing.reason))))
            .await
    };
    if tokio::time::timeout(CLOSE_REPLY_WAIT, send).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

async fn read_loop(hub: &Hub, peer: &Peer, mut stream: Stream) -> Ending {
    let settings = &hub.service.config.server.websocket;
    let idle = Duration::from_secs(settings.idle_timeout_secs.max(1));
    loop {
        let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
            return Ending::Close(peer.closing(super::CLOSE_NORMAL, &text::CLOSE_IDLE, "idle"));
        };
        let message = match next {
            None => return Ending::Gone,
            Some(Ok(message)) => message,
            Some(Err(err)) => return read_error(peer, &err),
        };
        let closing = match message {
            Message::Text(frame) => on_text(hub, peer, &frame, settings.max_frame_bytes),
            Message::Binary(frame) => {
                let error = too_large(frame.len(), settings.max_frame_bytes)
                    .unwrap_or_else(|| ClientError::new(ErrorCode::BinaryNotSupported, &[]));
                send_error(hub, peer, &error);
                None
            }
            // The reply to a close is queued by the WebSocket layer and written by the next
            // read, which then ends the stream.
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) => None,
        };
        if let Some(closing) = closing {
            return Ending::Close(closing);
        }
    }
}

/// Maps a read failure to its close: a message over the hard size limit gets 1009.
fn read_error(peer: &Peer, err: &std::io::Error) -> Ending {
    // poem turns every WebSocket error except I/O into `ErrorKind::Other` carrying
    // tungstenite's text, and a size limit error's text starts with this (tungstenite 0.27).
    if err.kind() == std::io::ErrorKind::Other && err.to_string().starts_with("Space limit") {
        return Ending::Close(peer.closing(
            super::CLOSE_MESSAGE_TOO_BIG,
            &text::CLOSE_MESSAGE_TOO_BIG,
            "message_too_big",
        ));
    }
    tracing::debug!(client = %peer.client_id, error = %err, "WebSocket read failed");
    Ending::Gone
}

fn too_large(size: usize, max: usize) -> Option<ClientError> {
    (size > max).then(|| {
        ClientError::new(
            ErrorCode::FrameTooLarge,
            &[&size.to_string(), &max.to_string()],
        )
    })
}

fn send_error(hub: &Hub, peer: &Peer, error: &ClientError) {
    let telemetry = &hub.service.telemetry;
    telemetry.ws_errors_sent.fetch_add(1, Ordering::Relaxed);
    peer.send(Arc::from(protocol::error(error, peer.lang)), telemetry);
}

/// Handles one text message; returns the close it calls for.
fn on_text(hub: &Hub, peer: &Peer, frame: &str, max_frame_bytes: usize) -> Option<Closing> {
    if let Some(error) = too_large(frame.len(), max_frame_bytes) {
        send_error(hub, peer, &error);
        return None;
    }
    let message = match protocol::parse(frame) {
        Ok(message) => message,
        Err(error) => {
            send_error(hub, peer, &error);
            return None;
        }
    };
    match message {
        ClientMessage::Ping(timestamp) => {
            let pong = protocol::pong(timestamp.as_ref());
            peer.send(Arc::from(pong), &hub.service.telemetry);
        }
        ClientMessage::Unsubscribe(vm_ids) => hub.unsubscribe(peer, vm_ids.as_deref()),
        ClientMessage::Subscribe(request) => match hub.subscribe(peer, &request) {
            Subscribed::OverLimit { requested } => {
                tracing::debug!(client = %peer.client_id, requested, "subscription over the limit");
                return Some(peer.closing(
                    super::CLOSE_MESSAGE_TOO_BIG,
                    &text::CLOSE_SUBSCRIPTION_LIMIT,
                    "subscription_limit",
                ));
            }
            Subscribed::Applied { known, unknown } => {
                if !unknown.is_empty() {
                    send_error(hub, peer, &unknown_vms(unknown));
                }
                hub.push_latest(peer, &known, request.groups);
            }
        },
    }
    None
}

fn unknown_vms(unknown: Vec<String>) -> ClientError {
    let mut listed = unknown
        .iter()
        .take(UNKNOWN_IDS_IN_TEXT)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if unknown.len() > UNKNOWN_IDS_IN_TEXT {
        listed.push_str(&format!(", … (+{})", unknown.len() - UNKNOWN_IDS_IN_TEXT));
    }
    let mut error = ClientError::new(ErrorCode::UnknownVm, &[&listed]);
    error.vm_ids = unknown;
    error
}

/// Writes the outbox in batches and server pings until the connection closes.
///
/// A batch that cannot be written within one ping interval means the client reads too
/// slowly: the connection then closes as a slow consumer.
async fn write_loop(hub: &Hub, peer: &Peer, mut sink: Sink) {
    let settings = &hub.service.config.server.websocket;
    let ping_every = Duration::from_secs(settings.ping_interval_secs.max(1));
    let stall_limit = ping_every;
    let telemetry = &hub.service.telemetry;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let ping_due = tokio::select! {
            () = peer.outbox.ready() => false,
            _ = ping.tick() => true,
        };
        let batch = peer.outbox.take();
        let frames = batch.frames.len() as u64;
        let write = async {
            if ping_due {
                sink.feed(Message::Ping(Vec::new())).await?;
            }
            for frame in &batch.frames {
                // NOTE: poem's `Message::Text` owns a `String`, so each connection copies
                // the shared encoding once here; the JSON encoding itself is shared.
                sink.feed(Message::Text(frame.to_string())).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(stall_limit, write).await {
            Ok(Ok(())) => {
                telemetry
                    .ws_frames_sent
                    .fetch_add(frames, Ordering::Relaxed);
            }
            Ok(Err(err)) => {
                tracing::debug!(client = %peer.client_id, error = %err, "WebSocket write failed");
                return;
            }
            Err(_) => {
                let closing = peer.slow_consumer();
                tracing::info!(client = %peer.client_id, stall_secs = stall_limit.as_secs(), "closing a WebSocket client that reads too slowly");
                peer.outbox.close(closing.clone());
                send_close(&mut sink, closing, telemetry).await;
                return;
            }
        }
        if let Some(closing) = batch.closing {
            send_close(&mut sink, closing, telemetry).await;
            return;
        }
    }
}

/// Counts the close and sends its frame; a client that does not take it in time is dropped.
async fn send_close(sink: &mut Sink, closing: Closing, telemetry: &crate::telemetry::Telemetry) {
    telemetry.count_ws_close(closing.counted_as);
    let frame = Message::Close(Some((closing.code.into(), closing.reason)));
    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, sink.send(frame)).await;
}
