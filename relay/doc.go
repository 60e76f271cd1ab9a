// Package relay serves live camera video to browsers over WebRTC, with
// WHEP signalling, and starts every viewer instantly from the camera's
// cached keyframe.
//
// # Endpoints
//
//	POST    /api/v1/cameras/{id}/whep  SDP offer in, SDP answer out (201, Location, ETag)
//	OPTIONS /api/v1/cameras/{id}/whep  CORS preflight, Accept-Post (public)
//	GET     /api/v1/whep               the caller's sessions (an admin's: all), with statistics
//	DELETE  /api/v1/whep/{session}     ends a session (its owner or an admin)
//	PATCH   /api/v1/whep/{session}     trickled ICE candidates (RFC 8840 fragments)
//	OPTIONS /api/v1/whep/{session}     CORS preflight, Accept-Patch (public)
//	GET     /play/{id}                 a plain page that logs in and plays one camera
//
// WHEP is draft-ietf-wish-whep; its HTTP mechanics are those of WHIP, RFC
// 9725. Answers are not trickled: the relay answers with every candidate
// gathered, which with a UDP mux is immediate. Viewers may trickle theirs
// with PATCH; ICE restarts are refused (422): a viewer whose connection
// failed starts a new session, which costs no more and starts from the
// cached keyframe again.
//
// # One subscription per viewer, not one shared track
//
// pion's broadcast example fans out by writing each packet to one
// TrackLocalStaticRTP bound to every peer connection. Sharpeye gives each
// viewer its own hub subscription, sequence numbers and RTP timeline
// instead, because instant start needs per-viewer packets:
//
//   - A viewer joining a shared track joins mid-GOP and sees nothing until
//     the camera's next keyframe (2 to 10 s on surveillance cameras). Here
//     the hub hands each new subscriber the cached GOP (keyframe with its
//     SPS/PPS, then every frame since), which is sent to that viewer alone,
//     at once.
//   - Sent with their real timestamps, those frames would make the browser
//     play them at their real pace, two seconds behind the camera for
//     good. Their timestamps are rewritten to the time it takes to send
//     them (a few ms at 50 Mbit/s), so the browser decodes them as they
//     arrive and is live right after. That rewrite is per viewer, and so
//     must the timeline after it be.
//   - The timeline stays continuous across camera restarts (the hub's
//     epoch changes, timestamps start over) and across resubscriptions (a
//     viewer that fell behind is dropped by the hub and resubscribed: it
//     gets the GOP again): 64-bit extended timestamps never go back, and
//     the viewer's sequence numbers run on.
//   - Encryption (SRTP) is per peer anyway, and what a shared track would
//     save is shared here too: units are shared by pointer, and each unit
//     is packetized once per camera (packCache); a viewer only writes its
//     own headers in front of the shared payloads.
//
// A viewer that falls behind (its queue of relay.queue units fills) is
// dropped by the hub without slowing the others, then resubscribed; the
// resubscriptions are counted per session and in
// sharpeye_relay_resubscriptions_total.
//
// # pion settings
//
// One webrtc.API per process (built by Run):
//
//   - ICE UDP mux on relay.udp_listen: every viewer's media on one port,
//     one firewall rule, no socket per viewer. An optional ICE TCP mux on
//     relay.ice_tcp_listen (passive candidates) serves networks that block
//     UDP. The mux's socket sends in batches (sendmmsg) of up to 64
//     messages: with fewer than 16 sessions a streamer flushes after each
//     unit; anything else leaves within 1 ms. Where Linux offers
//     UDP segmentation offload, one viewer's packets of a unit (equal sizes
//     but the last) go as one message that the kernel or the network card
//     cuts into datagrams; a kernel that refuses it turns it off and the
//     message goes datagram by datagram (sharpeye_relay_udp_* counters).
//   - Loopback candidates (relay.include_loopback): Chromium reaches a pion
//     peer on the same machine only that way. mDNS off: a server's
//     candidates must be resolvable by anyone.
//   - relay.nat_1to1_ips are appended as host candidates (the local ones
//     stay, for viewers on the relay's own network).
//   - STUN/TURN servers are used by the relay's peer connections (their
//     candidates are waited for, at most 2 s, before answering) and
//     advertised to clients in Link headers of the answer.
//   - Codecs: H.264 packetization-mode 1 (four profiles, so that the
//     camera's own is matched when offered) and H.265 (chosen when the
//     camera is H.265 and the browser offers it); no RTX, retransmissions
//     go on the media SSRC. Payloads are at most 1200 bytes.
//   - Interceptors, instantiated per peer connection, are kept to a NACK
//     responder (relay.nack_buffer packets) and the sender-report
//     generator (so that the viewer's receiver reports carry what gives
//     the round-trip time). No TWCC, stats, NACK generator, receiver
//     reports or simulcast: a send-only viewer of a camera whose bitrate
//     cannot be changed has no use for them, and each costs memory per
//     viewer. Receiver reports are read by the session itself for loss
//     and RTT.
//   - The NACK responder is the relay's own (nack.go): pion's copies every
//     packet sent into a pooled 1460-byte buffer, about 2 KiB per packet
//     kept, 500 KiB per viewer with 256 packets. Each camera's units are
//     packetized once for all its viewers (packCache) and the payloads are
//     never modified, so the responder keeps references and the few header
//     fields that differ per viewer: about 40 bytes per packet.
//   - Writes before SRTP is up are dropped silently by pion: a session
//     sends its burst only once the peer connection is connected and the
//     DTLS transport has finished setting up SRTP.
//
// # Memory per viewer
//
// Measured with TestViewerMemory (SHARPEYE_RELAY_MEMTEST=50: 50 viewers in
// a child process, heap and stacks of the relay's process), on a 2-core
// shared machine: about 285 KiB and 16 goroutines per viewer (most of them
// pion's; their stacks are about half of it), 0.2 % of a core per viewer
// for a 1 Mbit/s 360p camera and 0.25 % for a 2 Mbit/s 1080p one. With
// pion's NACK responder it was 720 KiB; with no NACK buffer at all, 220
// KiB. Time from the WHEP POST to the first keyframe depacketized by a
// pion viewer on the same machine: 13 to 35 ms median.
//
// # Sessions
//
// A session ends when it is deleted, when its peer connection fails or is
// closed by the viewer, when it has not been connected for
// relay.session_idle_timeout (never connected, or disconnected), when the
// camera is removed or restarts with another codec, and when the relay
// stops. Run owns every session goroutine and waits for them.
package relay
