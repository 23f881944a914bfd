package verify

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rs/zerolog"
	"go.mau.fi/util/exhttp"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// ErrCodeNumberTaken is the provisioning API's error code for a number held by someone else.
const ErrCodeNumberTaken = "COM.GITHUB.MATRIX_META_INTEROP.NUMBER_TAKEN"

// ReqAssignNumber is the body of POST /v3/interop/numbers.
type ReqAssignNumber struct {
	Network string    `json:"network"`
	Number  string    `json:"number"`
	UserID  id.UserID `json:"user_id"`
}

// RespNumber is one assignment in provisioning API answers.
type RespNumber struct {
	Network    string    `json:"network"`
	Number     string    `json:"number"` // E.164 digits without "+"
	UserID     id.UserID `json:"user_id"`
	AssignedBy id.UserID `json:"assigned_by,omitempty"`
	AssignedAt int64     `json:"assigned_at,omitempty"` // Unix milliseconds
}

// RespUnassignNumber is the answer of DELETE /v3/interop/numbers/{network}/{number}.
type RespUnassignNumber struct {
	Unassigned bool      `json:"unassigned"`
	UserID     id.UserID `json:"user_id,omitempty"`
}

// RegisterProvisioning adds the assignment endpoints to bridgev2's provisioning
// router, under /_matrix/provision:
//
//	POST   /v3/interop/numbers                    {"network", "number", "user_id"}
//	DELETE /v3/interop/numbers/{network}/{number}
//	GET    /v3/interop/numbers[?for=@user:server]  (default: the caller)
//
// bridgev2 authenticates every request (shared secret or the user's Matrix token)
// and only demands the login permission, so each endpoint here also demands admin.
func (a *Admin) RegisterProvisioning(prov bridgev2.IProvisioningAPI) {
	a.RegisterRoutes(prov.GetRouter(), prov.GetUser)
}

// RegisterRoutes is RegisterProvisioning for any mux that sits behind an
// authentication layer which getUser reads the caller from.
func (a *Admin) RegisterRoutes(mux *http.ServeMux, getUser func(*http.Request) *bridgev2.User) {
	adminOnly := func(next func(http.ResponseWriter, *http.Request, id.UserID)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			user := getUser(r)
			if user == nil || !user.Permissions.Admin {
				mautrix.MForbidden.WithMessage("Only bridge admins can manage number assignments").Write(w)
				return
			}
			next(w, r, user.MXID)
		}
	}
	mux.HandleFunc("POST /v3/interop/numbers", adminOnly(a.postNumber))
	mux.HandleFunc("DELETE /v3/interop/numbers/{network}/{number}", adminOnly(a.deleteNumber))
	mux.HandleFunc("GET /v3/interop/numbers", adminOnly(a.getNumbers))
}

func (a *Admin) postNumber(w http.ResponseWriter, r *http.Request, caller id.UserID) {
	var req ReqAssignNumber
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		mautrix.MNotJSON.WithMessage("Request body is not valid JSON").Write(w)
		return
	}
	network, number, mxid, err := a.parseAssign([]string{req.Network, req.Number, string(req.UserID)})
	if err == nil {
		err = a.Assign(r.Context(), network, number, mxid, caller)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	exhttp.WriteJSONResponse(w, http.StatusOK, &RespNumber{Network: network, Number: number, UserID: mxid, AssignedBy: caller})
}

func (a *Admin) deleteNumber(w http.ResponseWriter, r *http.Request, caller id.UserID) {
	network, err := a.ParseNetwork(r.PathValue("network"))
	var number string
	if err == nil {
		number, err = parseAnyNumber(r.PathValue("number"))
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	holder, removed, err := a.Unassign(r.Context(), network, number, caller)
	if err != nil {
		writeError(w, r, err)
		return
	}
	exhttp.WriteJSONResponse(w, http.StatusOK, &RespUnassignNumber{Unassigned: removed, UserID: holder})
}

func (a *Admin) getNumbers(w http.ResponseWriter, r *http.Request, caller id.UserID) {
	mxid := caller
	if q := r.URL.Query().Get("for"); q != "" {
		var err error
		if mxid, err = ParseUser(q); err != nil {
			writeError(w, r, err)
			return
		}
	}
	numbers, err := a.DB.NumbersOf(r.Context(), mxid)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := make([]RespNumber, 0, len(numbers))
	for _, n := range numbers {
		out = append(out, respNumber(n))
	}
	exhttp.WriteJSONResponse(w, http.StatusOK, map[string]any{"numbers": out})
}

func respNumber(n database.Assignment) RespNumber {
	return RespNumber{Network: n.Network, Number: n.Number, UserID: n.MXID, AssignedBy: n.AssignedBy,
		AssignedAt: n.AssignedAt.UnixMilli()}
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ue *UsageError
	var te *TakenError
	switch {
	case errors.As(err, &ue):
		mautrix.MInvalidParam.WithMessage("%s", ue.msg).Write(w)
	case errors.As(err, &te):
		mautrix.RespError{
			ErrCode:    ErrCodeNumberTaken,
			Err:        te.Error(),
			StatusCode: http.StatusConflict,
			ExtraData:  map[string]any{"user_id": te.Holder},
		}.Write(w)
	default:
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to handle a number assignment request")
		mautrix.MUnknown.WithMessage("Database error").Write(w)
	}
}
