package simcam

import (
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
)

// readerErrorLogPeriod is the least time between two logs of reader write
// errors of one camera; the errors are counted in between.
const readerErrorLogPeriod = 10 * time.Second

// handler answers gortsplib's server callbacks for a Server. It is a separate
// type so that the callbacks stay out of Server's API.
type handler struct {
	s *Server
}

// reader is the user data of a session that set up a camera. Its fields are
// only touched from the session's goroutine, which runs OnSetup, OnPlay,
// OnPause and OnSessionClose.
type reader struct {
	cam     *camera
	playing bool
}

func (h *handler) authorize(conn *gortsplib.ServerConn, req *base.Request) bool {
	if h.s.cfg.Username == "" {
		return true
	}
	return conn.VerifyCredentials(req, h.s.cfg.Username, h.s.cfg.Password)
}

// OnConnOpen implements gortsplib.ServerHandlerOnConnOpen.
func (h *handler) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	h.s.log.Debug("connection opened", "remote", ctx.Conn.NetConn().RemoteAddr().String())
}

// OnConnClose implements gortsplib.ServerHandlerOnConnClose.
func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	h.s.log.Debug("connection closed", "remote", ctx.Conn.NetConn().RemoteAddr().String(), "error", ctx.Error)
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	// Without credentials this answers 401 with WWW-Authenticate and keeps
	// the connection; with wrong ones gortsplib answers 401 and closes it.
	if !h.authorize(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	c := h.s.lookup(ctx.Path)
	if c == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !h.authorize(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	c := h.s.lookup(ctx.Path)
	if c == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	if h.s.cfg.RefuseTCP != 0 && ctx.Transport == gortsplib.TransportTCP {
		h.s.refusedTCP.Add(1)
		return &base.Response{StatusCode: h.s.cfg.RefuseTCP}, nil, nil
	}
	if r, ok := ctx.Session.UserData().(*reader); !ok || r.cam != c {
		ctx.Session.SetUserData(&reader{cam: c})
	}
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	if r, ok := ctx.Session.UserData().(*reader); ok && !r.playing {
		r.playing = true
		r.cam.readers.Add(1)
		h.s.log.Debug("reader playing", "path", r.cam.path,
			"remote", ctx.Conn.NetConn().RemoteAddr().String(), "transport", transportName(ctx.Session))
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnPause implements gortsplib.ServerHandlerOnPause.
func (h *handler) OnPause(ctx *gortsplib.ServerHandlerOnPauseCtx) (*base.Response, error) {
	h.stopped(ctx.Session)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	if r, ok := ctx.Session.UserData().(*reader); ok {
		h.s.log.Debug("session closed", "path", r.cam.path, "error", ctx.Error)
	}
	h.stopped(ctx.Session)
}

func (h *handler) stopped(ss *gortsplib.ServerSession) {
	if r, ok := ss.UserData().(*reader); ok && r.playing {
		r.playing = false
		r.cam.readers.Add(-1)
	}
}

// OnStreamWriteError implements gortsplib.ServerHandlerOnStreamWriteError:
// a reader's write queue is full. Without it gortsplib logs every packet.
func (h *handler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	r, ok := ctx.Session.UserData().(*reader)
	if !ok {
		return
	}
	n := r.cam.readerErrors.Add(1)
	now := time.Now().UnixNano()
	last := r.cam.loggedAt.Load()
	if now-last >= int64(readerErrorLogPeriod) && r.cam.loggedAt.CompareAndSwap(last, now) {
		h.s.log.Warn("reader too slow, packets dropped", "path", r.cam.path, "dropped_total", n, "error", ctx.Error)
	}
}

// OnDecodeError implements gortsplib.ServerHandlerOnDecodeError: a reader
// sent a bad RTCP packet. Without it gortsplib logs each one.
func (h *handler) OnDecodeError(*gortsplib.ServerHandlerOnDecodeErrorCtx) {}

// OnPacketsLost implements gortsplib.ServerHandlerOnPacketsLost, which only
// concerns publishers. Without it gortsplib logs each loss.
func (h *handler) OnPacketsLost(*gortsplib.ServerHandlerOnPacketsLostCtx) {}

// Interface guards.
var (
	_ gortsplib.ServerHandlerOnConnOpen         = (*handler)(nil)
	_ gortsplib.ServerHandlerOnConnClose        = (*handler)(nil)
	_ gortsplib.ServerHandlerOnDescribe         = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSetup            = (*handler)(nil)
	_ gortsplib.ServerHandlerOnPlay             = (*handler)(nil)
	_ gortsplib.ServerHandlerOnPause            = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSessionClose     = (*handler)(nil)
	_ gortsplib.ServerHandlerOnStreamWriteError = (*handler)(nil)
	_ gortsplib.ServerHandlerOnDecodeError      = (*handler)(nil)
	_ gortsplib.ServerHandlerOnPacketsLost      = (*handler)(nil)
)

func transportName(ss *gortsplib.ServerSession) string {
	if t := ss.SetuppedTransport(); t != nil {
		return t.String()
	}
	return ""
}
