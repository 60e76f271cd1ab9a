package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest/stream"
)

// Request body limits.
const (
	maxOfferBytes = 64 << 10
	maxPatchBytes = 16 << 10
)

const (
	sdpType       = "application/sdp"
	sdpFragType   = "application/trickle-ice-sdpfrag"
	sessionPrefix = "/api/v1/whep/"
	// codeNotAcceptable answers an offer whose codecs the camera's video
	// cannot be sent in.
	codeNotAcceptable = "not_acceptable"
)

// handleOffer answers a WHEP offer: POST /api/v1/cameras/{id}/whep.
func (r *Relay) handleOffer(w http.ResponseWriter, req *http.Request) error {
	t0 := time.Now()
	r.corsHeaders(w, req)
	p, ok := auth.FromContext(req.Context())
	if !ok {
		return api.ErrUnauthenticated
	}
	if err := checkContentType(req, sdpType, "an SDP offer"); err != nil {
		r.m.refused.WithLabelValues("content_type").Inc()
		return err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			r.m.refused.WithLabelValues("too_large").Inc()
			return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "the SDP offer is over the limit of %d bytes", mbe.Limit)
		}
		return api.BadRequest("", "could not read the SDP offer: %v", err)
	}

	id := req.PathValue("id")
	hub, region, ok := r.cams.Lookup(id)
	if !ok || hub == nil || !p.Scope().AllowsRegion(region) {
		// The same answer for a camera out of the caller's region: its
		// existence is not revealed.
		return api.NotFound("no camera %q", id)
	}

	if len(body) == 0 {
		r.m.refused.WithLabelValues("bad_sdp").Inc()
		return api.BadRequest("", "the request body is empty: an SDP offer is expected")
	}
	o, err := parseOffer(body)
	if err != nil {
		r.m.refused.WithLabelValues("bad_sdp").Inc()
		return api.BadRequest("", "%s", err.Error())
	}
	if !o.h264 && !o.h265 {
		r.m.refused.WithLabelValues("codec").Inc()
		if o.h264Mode0 {
			return api.Errorf(http.StatusNotAcceptable, codeNotAcceptable, "the offer has H.264 only in packetization-mode 0, which cannot carry camera keyframes; offer packetization-mode=1")
		}
		return api.Errorf(http.StatusNotAcceptable, codeNotAcceptable, "the offer has no H.264 or H.265 video codec; the relay forwards the camera's video without transcoding")
	}

	if e := r.reserve(id); e != nil {
		w.Header().Set("Retry-After", "5")
		return e
	}
	reserved := true
	defer func() {
		if reserved {
			r.release(id)
		}
	}()

	// Subscribing first starts an on-demand camera; then wait for its
	// video.
	st := newStreamer(hub, r.cfg.Queue, r.acquireCache(hub), r.m)
	keepSub := false
	defer func() {
		if !keepSub {
			st.close()
			r.releaseCache(hub)
		}
	}()
	if err := st.subscribe(); err != nil {
		return api.NotFound("no camera %q", id)
	}
	track, err := r.waitTrack(req.Context(), id, hub)
	if err != nil {
		return err
	}
	switch {
	case track.Codec == stream.H265 && !o.h265:
		r.m.refused.WithLabelValues("codec").Inc()
		return api.Errorf(http.StatusNotAcceptable, codeNotAcceptable, "camera %q sends H.265, which this browser does not offer; use a browser with H.265 WebRTC support or set the camera to H.264", id)
	case track.Codec == stream.H264 && !o.h264:
		r.m.refused.WithLabelValues("codec").Inc()
		return api.Errorf(http.StatusNotAcceptable, codeNotAcceptable, "camera %q sends H.264, which the offer does not include (packetization-mode=1)", id)
	}

	s, answer, err := r.newSession(req.Context(), id, p, track, o, body, st)
	if err != nil {
		return err
	}
	s.st.firstKey = func() {
		d := time.Since(t0)
		s.c.firstKeyNanos.Store(int64(d))
		r.m.firstKey.Observe(d.Seconds())
	}
	if !r.start(s) {
		_ = s.pc.GracefulClose()
		return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the video relay is shutting down")
	}
	reserved, keepSub = false, true // the session owns both now
	r.log.Info("viewer joined", "camera", id, "session", s.id, "user", p.Username, "codec", track.Codec)

	h := w.Header()
	h.Set("Content-Type", sdpType)
	h.Set("Location", sessionPrefix+s.id)
	h.Set("ETag", s.etag)
	h.Set("Accept-Patch", sdpFragType)
	h.Set("Cache-Control", "no-store")
	for _, l := range r.iceLinks() {
		h.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
	return nil
}

// waitTrack waits up to track_wait for the camera to stream.
func (r *Relay) waitTrack(ctx context.Context, id string, hub *stream.Hub) (stream.Track, error) {
	timer := time.NewTimer(r.cfg.TrackWait.D())
	defer timer.Stop()
	for {
		changed := hub.Changed()
		if t, ok := hub.Track(); ok {
			return t, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			r.m.refused.WithLabelValues("not_streaming").Inc()
			return stream.Track{}, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "camera %q is not streaming: no video arrived within %s; it may be offline", id, r.cfg.TrackWait)
		case <-ctx.Done():
			return stream.Track{}, ctx.Err()
		}
	}
}

// newSession sets up the peer connection for an offer and gathers the
// answer's candidates.
func (r *Relay) newSession(ctx context.Context, camera string, p *auth.Principal, track stream.Track, o offer, sdp []byte, st *streamer) (*session, string, error) {
	r.mu.Lock()
	a, media := r.api, r.media
	r.mu.Unlock()

	st.codec = track.Codec
	if media != nil {
		st.flush = unitFlush(media, &r.viewing)
	}
	s := &session{
		id:          rand.Text(),
		etag:        `"` + rand.Text()[:16] + `"`,
		camera:      camera,
		userID:      p.UserID,
		username:    p.Username,
		started:     time.Now(),
		codec:       track.Codec,
		remoteUfrag: o.iceUfrag,
		st:          st,
		stop:        make(chan struct{}),
		connected:   make(chan struct{}),
		done:        make(chan struct{}),
	}
	s.notConnectedSince.Store(s.started.UnixNano())
	s.state.Store(int32(webrtc.PeerConnectionStateNew))
	st.c = &s.c
	st.write = s.writeRTP

	pc, err := a.NewPeerConnection(webrtc.Configuration{ICEServers: r.iceServers})
	if err != nil {
		return nil, "", fmt.Errorf("new peer connection: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = pc.GracefulClose()
		}
	}()
	s.pc = pc
	if s.track, err = webrtc.NewTrackLocalStaticRTP(trackCapability(track), "video", "sharpeye-"+camera); err != nil {
		return nil, "", fmt.Errorf("new track: %w", err)
	}
	tr, err := pc.AddTransceiverFromTrack(s.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, "", fmt.Errorf("add track: %w", err)
	}
	// Answer under the payload types the viewer offered: pion keeps a
	// preference's own type when it has one, browsers number codecs as
	// they like (Chromium H.264 as 102/106/..., Firefox as 126/97), and
	// a viewer drops packets of a type it did not offer.
	prefs := videoCodecs(track.Codec, r.cfg.NACKBuffer > 0)
	if track.Codec == stream.H265 {
		prefs[0].PayloadType = 0 // the offered type
	} else if offered := h264Preferences(o, track, r.cfg.NACKBuffer > 0); len(offered) > 0 {
		prefs = offered
	}
	if err := tr.SetCodecPreferences(prefs); err != nil {
		return nil, "", fmt.Errorf("codec preferences: %w", err)
	}
	s.sender = tr.Sender()
	pc.OnConnectionStateChange(s.onState)

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(sdp)}); err != nil {
		r.m.refused.WithLabelValues("bad_sdp").Inc()
		return nil, "", api.BadRequest("", "the SDP offer was refused: %v", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		r.m.refused.WithLabelValues("bad_sdp").Inc()
		return nil, "", api.BadRequest("", "no answer is possible to this offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, "", fmt.Errorf("set local description: %w", err)
	}
	// Non-trickle: the answer carries every candidate. With the UDP mux
	// (and no STUN or TURN server) gathering completes at once.
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	if len(s.sender.GetParameters().Codecs) == 0 {
		r.m.refused.WithLabelValues("codec").Inc()
		return nil, "", api.Errorf(http.StatusNotAcceptable, codeNotAcceptable, "no codec of the offer can carry camera %q's %s video", camera, track.Codec)
	}
	ok = true
	return s, pc.LocalDescription().SDP, nil
}

// iceLinks advertises the configured STUN and TURN servers to the client
// (WHEP/WHIP "ice-server" Link headers), on authenticated answers only:
// they carry TURN credentials.
func (r *Relay) iceLinks() []string {
	var out []string
	for _, s := range r.cfg.STUNServers {
		out = append(out, "<"+s+`>; rel="ice-server"`)
	}
	for _, t := range r.cfg.TURNServers {
		out = append(out, fmt.Sprintf(`<%s>; rel="ice-server"; username=%s; credential=%s; credential-type="password"`,
			t.URL, strconv.Quote(t.Username), strconv.Quote(t.Credential.Reveal())))
	}
	return out
}

// ownSession finds a session the caller may act on: its owner's, or any
// for an admin. Others' sessions are not found.
func (r *Relay) ownSession(req *http.Request) (*session, *auth.Principal, error) {
	p, ok := auth.FromContext(req.Context())
	if !ok {
		return nil, nil, api.ErrUnauthenticated
	}
	id := req.PathValue("session")
	s, ok := r.session(id)
	if !ok || (s.userID != p.UserID && !p.Is(auth.Admin)) {
		return nil, nil, api.NotFound("no WHEP session %q", id)
	}
	return s, p, nil
}

// handleDelete ends a session: DELETE /api/v1/whep/{session}. It answers
// once the peer connection is closed.
func (r *Relay) handleDelete(w http.ResponseWriter, req *http.Request) error {
	r.corsHeaders(w, req)
	s, _, err := r.ownSession(req)
	if err != nil {
		return err
	}
	s.end(reasonDeleted)
	select {
	case <-s.done:
	case <-req.Context().Done():
		return req.Context().Err()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handlePatch takes trickled ICE candidates from the viewer (RFC 8840
// fragments): PATCH /api/v1/whep/{session}. ICE restarts are not
// supported: the viewer starts a new session instead.
func (r *Relay) handlePatch(w http.ResponseWriter, req *http.Request) error {
	r.corsHeaders(w, req)
	s, _, err := r.ownSession(req)
	if err != nil {
		return err
	}
	if err := checkContentType(req, sdpFragType, "an SDP fragment"); err != nil {
		return err
	}
	if m := req.Header.Get("If-Match"); m != "" && m != "*" && m != s.etag {
		return api.Errorf(http.StatusPreconditionFailed, "precondition_failed", "If-Match %s does not match the session's ICE session %s", m, s.etag)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return err // answered as 413 when over the limit
	}
	frag, err := parseSDPFrag(string(body))
	if err != nil {
		return api.BadRequest("", "malformed SDP fragment: %v", err)
	}
	if frag.ufrag != "" && frag.ufrag != s.remoteUfrag {
		return api.Errorf(http.StatusUnprocessableEntity, "unprocessable", "ICE restarts are not supported: end this session and start a new one")
	}
	for _, c := range frag.candidates {
		mid := c.mid
		init := webrtc.ICECandidateInit{Candidate: c.candidate}
		if mid != "" {
			init.SDPMid = &mid
		} else {
			var zero uint16
			init.SDPMLineIndex = &zero
		}
		if err := s.pc.AddICECandidate(init); err != nil {
			return api.BadRequest("", "candidate %q refused: %v", c.candidate, err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleList lists the caller's sessions (an admin's: all), with their
// statistics: GET /api/v1/whep.
func (r *Relay) handleList(w http.ResponseWriter, req *http.Request) error {
	r.corsHeaders(w, req)
	p, ok := auth.FromContext(req.Context())
	if !ok {
		return api.ErrUnauthenticated
	}
	admin := p.Is(auth.Admin)
	list := r.list(func(s *session) bool { return admin || s.userID == p.UserID })
	out := make([]SessionInfo, len(list))
	for i, s := range list {
		out[i] = s.info()
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
	return nil
}

// checkContentType refuses a body that is not of media type want.
func checkContentType(req *http.Request, want, what string) error {
	ct := req.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, want) {
		if ct == "" {
			ct = "none"
		}
		return api.Errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "the request body must be %s of type %s, not %s", what, want, ct)
	}
	return nil
}
