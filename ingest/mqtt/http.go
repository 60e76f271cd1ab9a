package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
)

// maxDetectionsBody bounds the body of POST /api/v1/detections.
const maxDetectionsBody = 2 << 20

// Routes registers POST /api/v1/detections, for analysers that speak HTTP
// rather than MQTT (service accounts with API tokens).
func (in *Intake) Routes(rt *api.Router) {
	rt.Handle("POST", "/api/v1/detections", auth.Require(in.handleDetections, auth.ServiceAccount), api.MaxBody(maxDetectionsBody))
}

// DetectionsRequest is the body of POST /api/v1/detections.
type DetectionsRequest struct {
	// Analyser is the analyser's device id; empty means the caller's
	// username.
	Analyser string `json:"analyser,omitempty"`
	// Detections are 1 to MaxDetections detections, each as over MQTT.
	Detections []json.RawMessage `json:"detections"`
}

// DetectionsResponse answers POST /api/v1/detections: how many
// detections were accepted and refused, and one result per detection.
type DetectionsResponse struct {
	Accepted int               `json:"accepted"`
	Rejected int               `json:"rejected"`
	Results  []DetectionResult `json:"results"`
}

// DetectionResult is the outcome of one detection: the id of its event, or
// why it was refused (it is dead-lettered).
type DetectionResult struct {
	Index int    `json:"index"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

// handleDetections checks each detection apart: the accepted ones are
// published as events and the refused ones dead-lettered, all durably,
// before the answer (200, with a result per detection). The analyser must
// be a registered, enabled analyser in the caller's region.
func (in *Intake) handleDetections(w http.ResponseWriter, r *http.Request) error {
	received := time.Now()
	p, _ := auth.FromContext(r.Context())
	var req DetectionsRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	id := req.Analyser
	if id == "" {
		id = p.Username
	}
	dev, ok := in.devices.Get(id)
	switch {
	case !ok || !p.Scope().AllowsRegion(dev.Region):
		return api.NotFound("no analyser %q in your region (name it in \"analyser\", or use an account named after it)", id)
	case dev.Kind != device.KindAnalyser:
		return api.BadRequest("analyser", "device %s is a %s, not an analyser", id, dev.Kind)
	case dev.Disabled:
		return api.Conflict("analyser %s is disabled", id)
	case len(req.Detections) == 0:
		return api.BadRequest("detections", "empty; send 1 to %d detections", MaxDetections)
	case len(req.Detections) > MaxDetections:
		return api.BadRequest("detections", "%d detections; the limit is %d a request", len(req.Detections), MaxDetections)
	}
	in.m.received.WithLabelValues("http", MsgDetections).Add(float64(len(req.Detections)))

	resp := DetectionsResponse{Results: make([]DetectionResult, len(req.Detections))}
	j := &job{received: received}
	accepted := false
	for i, raw := range req.Detections {
		res := &resp.Results[i]
		res.Index = i
		path := "detections[" + strconv.Itoa(i) + "]"
		d, rej := DecodeDetection(raw, path)
		var msg bus.Message
		if rej == nil {
			ev := in.detectionEvent(dev, d, received)
			var err error
			if msg, err = encode(ev, received); err != nil {
				rej = reject(ClassSchema, path, "%v", err)
			} else {
				res.ID = ev.ID.String()
			}
		}
		if rej != nil {
			res.Error = rej.Error()
			resp.Rejected++
			in.live.rejected(dev.ID, rej.Error())
			src := fmt.Sprintf("http POST /api/v1/detections analyser=%s user=%s index=%d", dev.ID, p.Username, i)
			msg = in.deadLetter(dev.ID, raw, rej, src, received)
		} else {
			resp.Accepted++
			accepted = true
		}
		j.msgs = append(j.msgs, msg)
	}
	if accepted {
		if to, changed := in.live.seen(dev.ID, received, ""); changed {
			if m, err := encode(in.stateEvent(dev, to, "message", received), received); err == nil {
				j.msgs = append([]bus.Message{m}, j.msgs...)
			}
		}
	}
	if err := in.pipe.publish(r.Context(), j); err != nil {
		if errors.Is(err, errStopped) {
			return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the intake is stopping; nothing was stored, send the detections again")
		}
		return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the bus did not take the detections in time; nothing is confirmed, send them again")
	}
	api.WriteJSON(w, http.StatusOK, resp)
	return nil
}
