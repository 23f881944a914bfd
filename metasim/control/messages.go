package control

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// maxWait caps the inbox long-poll; a client that wants longer polls again.
const maxWait = 120 * time.Second

// sendRequest is a message to send: to, and the content fields of simuser.Content
// at the top level.
type sendRequest struct {
	To string `json:"to"`
	simuser.Content
}

// sendMessage makes a simulated user (or one of its devices) send any content to a
// user, a third-party account or a group, and answers once the gateway accepted it.
func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request) error {
	from, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	var req sendRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	to, err := parseJID("to", req.To)
	if err != nil {
		return err
	}
	if to.ToUser() == from.ToUser() {
		return errBadRequest("a user cannot send to itself over interop")
	}
	if req.Kind == "" {
		return errBadRequest("kind is missing (text, image, video, audio, voice, document, location, reaction, edit, revoke)")
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	sent, err := m.Send(ctx, from, to, req.Content)
	if err != nil {
		return err
	}
	return ok(w, sent)
}

type typingRequest struct {
	To    string `json:"to"`
	State string `json:"state"`
}

func (s *Server) sendTyping(w http.ResponseWriter, r *http.Request) error {
	from, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	var req typingRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	to, err := parseJID("to", req.To)
	if err != nil {
		return err
	}
	state := interop.ChatStateKind(req.State)
	switch state {
	case interop.ChatComposing, interop.ChatRecording, interop.ChatPaused:
	case "":
		state = interop.ChatComposing
	default:
		return errBadRequest("state must be composing, recording or paused")
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.SendChatState(ctx, from, to, state); err != nil {
		return err
	}
	return ok(w, map[string]any{"from": from, "to": to, "state": state})
}

type receiptRequest struct {
	Chat   string   `json:"chat"`
	Sender string   `json:"sender"`
	Type   string   `json:"type"`
	IDs    []string `json:"ids"`
}

// sendReceipts sends read, played or delivered receipts for received messages.
func (s *Server) sendReceipts(w http.ResponseWriter, r *http.Request) error {
	from, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	var req receiptRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	chat, err := parseJID("chat", req.Chat)
	if err != nil {
		return err
	}
	var sender jid.JID
	if req.Sender != "" {
		if sender, err = parseJID("sender", req.Sender); err != nil {
			return err
		}
	} else if chat.IsGroup() {
		return errBadRequest("sender is required for a group's messages")
	}
	var typ interop.ReceiptType
	switch req.Type {
	case "read", "":
		typ, req.Type = interop.ReceiptRead, "read"
	case "played":
		typ = interop.ReceiptPlayed
	case "delivered":
		typ = interop.ReceiptDelivered
	default:
		return errBadRequest("type must be read, played or delivered")
	}
	if len(req.IDs) == 0 || len(req.IDs) > 1000 {
		return errBadRequest("ids must list 1-1000 message ids")
	}
	for _, id := range req.IDs {
		if id == "" || len(id) > 128 {
			return errBadRequest("message ids must be 1-128 characters")
		}
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.SendReceipt(ctx, from, chat, sender, typ, req.IDs...); err != nil {
		return err
	}
	return ok(w, map[string]any{"from": from, "chat": chat, "type": req.Type, "ids": req.IDs})
}

// inboxAnswer is GET /v1/users/{jid}/inbox.
type inboxAnswer struct {
	Items []simuser.Item `json:"items"`
	// Next is the since to poll with next: the last item's seq, but never past a
	// media item still being fetched, so that its final state is seen.
	Next int64 `json:"next"`
}

// getInbox reads what a user's devices received, decrypted, oldest first. With
// wait it long-polls: it answers as soon as something new is there, or with an empty
// list when wait ran out.
func (s *Server) getInbox(w http.ResponseWriter, r *http.Request) error {
	user, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	f, err := inboxFilter(r)
	if err != nil {
		return err
	}
	wait, err := queryDuration(r, "wait", maxWait)
	if err != nil {
		return err
	}
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		stop := context.AfterFunc(s.ctx, cancel) // Close ends long-polls
		_, err := m.WaitFor(ctx, user.ToUser(), f, nil)
		stop()
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return err
		}
		if r.Context().Err() != nil {
			return r.Context().Err()
		}
	}
	items, err := m.Inbox(r.Context(), user.ToUser(), f)
	if err != nil {
		return err
	}
	ans := inboxAnswer{Items: nonNil(items), Next: f.After}
	for _, it := range items {
		if it.Data.Media != nil && it.Data.Media.Status == simuser.MediaPending {
			break
		}
		ans.Next = it.Seq
	}
	return ok(w, ans)
}

// inboxKinds are the kinds an inbox filter may name.
var inboxKinds = []simuser.Kind{simuser.KindText, simuser.KindLocation, simuser.KindMedia, simuser.KindReaction,
	simuser.KindEdit, simuser.KindRevoke, simuser.KindUnknown, simuser.KindError, simuser.KindReceipt,
	simuser.KindChatState, simuser.KindIdentity, simuser.KindGroup, simuser.KindRestriction}

// inboxFilter reads since, limit, kind, chat, device and id.
func inboxFilter(r *http.Request) (simuser.Filter, error) {
	q := r.URL.Query()
	var f simuser.Filter
	var err error
	if f.After, err = queryInt(r, "since", 0, 1<<62); err != nil {
		return f, err
	}
	limit, err := queryInt(r, "limit", 1000, 10000)
	if err != nil {
		return f, err
	}
	f.Limit = int(limit)
	if k := q.Get("kind"); k != "" {
		for _, kind := range strings.Split(k, ",") {
			kind := simuser.Kind(strings.TrimSpace(kind))
			if !slices.Contains(inboxKinds, kind) {
				return f, errBadRequest("kind %q is not one of %v", kind, inboxKinds)
			}
			f.Kinds = append(f.Kinds, kind)
		}
	}
	if c := q.Get("chat"); c != "" {
		if f.Chat, err = parseJID("chat", c); err != nil {
			return f, err
		}
	}
	if d := q.Get("device"); d != "" {
		if f.Device, err = parseJID("device", d); err != nil {
			return f, err
		}
	}
	f.ID = q.Get("id")
	return f, nil
}

func (s *Server) clearInbox(w http.ResponseWriter, r *http.Request) error {
	user, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	if err := m.ClearInbox(r.Context(), user.ToUser()); err != nil {
		return err
	}
	return ok(w, map[string]any{"user": user.ToUser(), "cleared": true})
}

type reportRequest struct {
	Messages []reportedMessage `json:"messages"`
}

type reportedMessage struct {
	ID          string    `json:"id"`
	From        string    `json:"from"`
	Participant string    `json:"participant"`
	T           time.Time `json:"t"`
}

// report reports received messages as spam through the user's spam iq.
func (s *Server) report(w http.ResponseWriter, r *http.Request) error {
	from, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	var req reportRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Messages) == 0 || len(req.Messages) > 100 {
		return errBadRequest("messages must list 1-100 messages")
	}
	msgs := make([]interop.SpamMessage, 0, len(req.Messages))
	for i, rm := range req.Messages {
		if rm.ID == "" || len(rm.ID) > 128 {
			return errBadRequest("messages[%d].id must be 1-128 characters", i)
		}
		chat, err := parseJID("from", rm.From)
		if err != nil {
			return err
		}
		sm := interop.SpamMessage{ID: rm.ID, From: chat, T: rm.T}
		if rm.Participant != "" {
			if sm.Participant, err = parseJID("participant", rm.Participant); err != nil {
				return err
			}
		}
		if sm.T.IsZero() {
			sm.T = time.Now()
		}
		msgs = append(msgs, sm)
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.ReportSpam(ctx, from, msgs); err != nil {
		return err
	}
	return ok(w, map[string]any{"user": from.ToUser(), "reported": len(msgs)})
}
