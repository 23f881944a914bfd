package connector

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Safety tools of PROTOCOL.md section 8: blocking a Meta contact and reporting its
// messages as spam, both as bridgev2's block-user event and as bridge commands in
// a 1:1 portal.

var (
	_ bridgev2.UserBlockingNetworkAPI = (*InteropClient)(nil)
)

// reportedMessages is how many of the contact's latest messages a report names:
// enough context for Meta's review without sending the whole history.
const reportedMessages = 5

// reportScanLimit bounds how far back a report looks for the contact's messages,
// since our own messages are interleaved with them in the portal.
const reportScanLimit = 100

var (
	errNotDirectChat = errors.New("this is not a 1:1 chat with a Meta contact")
	errNotConnected  = errors.New("the login of this chat is not connected right now; try again later")
	errNothingToSend = errors.New("there are no messages from this contact to report")
)

// HandleMatrixBlockUser blocks or unblocks the portal's contact, and reports its
// recent messages when the Matrix client asks for a spam report along with the block.
func (ic *InteropClient) HandleMatrixBlockUser(ctx context.Context, msg *bridgev2.MatrixBlockUser) error {
	if msg.Content.Block {
		if err := ic.BlockContact(ctx, msg.Portal); err != nil {
			return err
		}
		if msg.Content.ReportSpam {
			// The block stands even with nothing to report.
			if _, err := ic.ReportContact(ctx, msg.Portal); err != nil && !errors.Is(err, errNothingToSend) {
				return err
			}
		}
		return nil
	}
	return ic.UnblockContact(ctx, msg.Portal)
}

// contact returns the Meta user a 1:1 portal of this login chats with.
func (ic *InteropClient) contact(portal *bridgev2.Portal) (jid.JID, error) {
	if portal == nil || portal.Receiver != ic.UserLogin.ID {
		return jid.JID{}, errNotDirectChat
	}
	chat, err := ids.ParsePortalID(portal.ID)
	if err != nil || chat.IsGroup() {
		return jid.JID{}, errNotDirectChat
	}
	return chat.ToUser(), nil
}

// client returns the connection the requests go through, or errNotConnected.
func (ic *InteropClient) client() (*interop.Client, error) {
	acc := ic.account()
	if acc == nil || !ic.IsConnected() {
		return nil, errNotConnected
	}
	return acc.Client(), nil
}

// BlockContact blocks the portal's contact: the gateway stops delivering its
// messages to this account.
func (ic *InteropClient) BlockContact(ctx context.Context, portal *bridgev2.Portal) error {
	return ic.setBlocked(ctx, portal, true)
}

// UnblockContact lets the portal's contact reach this account again.
func (ic *InteropClient) UnblockContact(ctx context.Context, portal *bridgev2.Portal) error {
	return ic.setBlocked(ctx, portal, false)
}

func (ic *InteropClient) setBlocked(ctx context.Context, portal *bridgev2.Portal, block bool) error {
	contact, err := ic.contact(portal)
	if err != nil {
		return err
	}
	cli, err := ic.client()
	if err != nil {
		return err
	}
	if block {
		err = cli.Block(ctx, contact)
	} else {
		err = cli.Unblock(ctx, contact)
	}
	if err != nil {
		return fmt.Errorf("failed to change block of contact: %w", err)
	}
	zerolog.Ctx(ctx).Info().Stringer("contact", contact).Bool("blocked", block).Msg("Changed contact block")
	return nil
}

// ReportContact reports the contact's latest messages in the portal as spam and
// returns how many it named.
func (ic *InteropClient) ReportContact(ctx context.Context, portal *bridgev2.Portal) (int, error) {
	contact, err := ic.contact(portal)
	if err != nil {
		return 0, err
	}
	msgs, err := ic.contactMessages(ctx, portal, contact)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, errNothingToSend
	}
	cli, err := ic.client()
	if err != nil {
		return 0, err
	}
	if err := cli.ReportSpam(ctx, msgs); err != nil {
		return 0, fmt.Errorf("failed to report messages: %w", err)
	}
	zerolog.Ctx(ctx).Info().Stringer("contact", contact).Int("messages", len(msgs)).Msg("Reported contact as spam")
	return len(msgs), nil
}

// contactMessages lists the contact's latest messages, newest first, from
// bridgev2's message table. A message bridged in several parts is named once.
func (ic *InteropClient) contactMessages(ctx context.Context, portal *bridgev2.Portal, contact jid.JID) ([]interop.SpamMessage, error) {
	rows, err := ic.Main.Bridge.DB.Message.GetLastNInPortal(ctx, portal.PortalKey, reportScanLimit)
	if err != nil {
		return nil, fmt.Errorf("failed to load messages: %w", err)
	}
	seen := make(map[string]bool)
	var out []interop.SpamMessage
	for _, row := range rows {
		key, err := ids.ParseMessageID(row.ID)
		if err != nil || key.Sender != contact || seen[key.StanzaID] {
			continue
		}
		seen[key.StanzaID] = true
		out = append(out, interop.SpamMessage{ID: key.StanzaID, From: contact, T: row.Timestamp})
		if len(out) == reportedMessages {
			break
		}
	}
	return out, nil
}

// SafetyCommands are the block, unblock and report commands, for
// bridge.Commands.(*commands.Processor).AddHandlers(c.SafetyCommands()...).
func (c *InteropConnector) SafetyCommands() []commands.CommandHandler {
	return []commands.CommandHandler{
		&commands.FullHandler{
			Name:           "block",
			Func:           c.cmdBlock,
			RequiresPortal: true,
			RequiresLogin:  true,
			Help: commands.HelpMeta{
				Section:     commands.HelpSectionChats,
				Description: "Block the Meta contact of this chat: its messages stop reaching you",
			},
		},
		&commands.FullHandler{
			Name:           "unblock",
			Func:           c.cmdUnblock,
			RequiresPortal: true,
			RequiresLogin:  true,
			Help: commands.HelpMeta{
				Section:     commands.HelpSectionChats,
				Description: "Unblock the Meta contact of this chat",
			},
		},
		&commands.FullHandler{
			Name:           "report",
			Func:           c.cmdReport,
			RequiresPortal: true,
			RequiresLogin:  true,
			Help: commands.HelpMeta{
				Section:     commands.HelpSectionChats,
				Description: fmt.Sprintf("Report the last %d messages of this chat's Meta contact as spam", reportedMessages),
			},
		},
	}
}

// registerSafetyCommands adds SafetyCommands to the bridge's command processor.
func (c *InteropConnector) registerSafetyCommands(bridge *bridgev2.Bridge) {
	if proc, ok := bridge.Commands.(*commands.Processor); ok {
		proc.AddHandlers(c.SafetyCommands()...)
	}
}

// portalClient returns the client of the login owning the command's portal, if
// the user running the command owns it.
func (c *InteropConnector) portalClient(ctx context.Context, ce *commands.Event) (*InteropClient, error) {
	if ce.Portal == nil || ce.Portal.Receiver == "" {
		return nil, errNotDirectChat
	}
	login, err := c.Bridge.GetExistingUserLoginByID(ctx, ce.Portal.Receiver)
	if err != nil {
		return nil, fmt.Errorf("failed to load login: %w", err)
	}
	if login == nil || ce.User == nil || login.UserMXID != ce.User.MXID {
		return nil, errors.New("this chat belongs to a login that is not yours")
	}
	ic, ok := login.Client.(*InteropClient)
	if !ok {
		return nil, errNotConnected
	}
	return ic, nil
}

// runSafety runs one safety action for a command and returns the reply text.
func (c *InteropConnector) runSafety(ce *commands.Event, do func(context.Context, *InteropClient) (string, error)) string {
	ic, err := c.portalClient(ce.Ctx, ce)
	if err == nil {
		var reply string
		if reply, err = do(ce.Ctx, ic); err == nil {
			return reply
		}
	}
	zerolog.Ctx(ce.Ctx).Warn().Err(err).Str("command", ce.Command).Msg("Safety command failed")
	return "Failed: " + userFacing(err)
}

// userFacing strips the wrapping of our own plain errors; others are reported as is.
func userFacing(err error) string {
	for _, plain := range []error{errNotDirectChat, errNotConnected, errNothingToSend} {
		if errors.Is(err, plain) {
			return plain.Error()
		}
	}
	return err.Error()
}

func (c *InteropConnector) cmdBlock(ce *commands.Event) {
	ce.Reply(c.runSafety(ce, func(ctx context.Context, ic *InteropClient) (string, error) {
		if err := ic.BlockContact(ctx, ce.Portal); err != nil {
			return "", err
		}
		markBlocked(ctx, ce.Portal, true)
		return "Blocked this contact.", nil
	}))
}

func (c *InteropConnector) cmdUnblock(ce *commands.Event) {
	ce.Reply(c.runSafety(ce, func(ctx context.Context, ic *InteropClient) (string, error) {
		if err := ic.UnblockContact(ctx, ce.Portal); err != nil {
			return "", err
		}
		markBlocked(ctx, ce.Portal, false)
		return "Unblocked this contact.", nil
	}))
}

// markBlocked keeps bridgev2's record of the block (portal.UserBlocked, which Matrix
// clients see in the room's bridge info) in step with a block or unblock done by
// command. bridgev2 keeps it itself for its block-user event (HandleMatrixBlockUser).
func markBlocked(ctx context.Context, portal *bridgev2.Portal, blocked bool) {
	if portal.UserBlocked == blocked {
		return
	}
	portal.UserBlocked = blocked
	portal.UpdateBridgeInfo(ctx)
	if err := portal.Save(ctx); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to save the portal's block state")
	}
}

func (c *InteropConnector) cmdReport(ce *commands.Event) {
	ce.Reply(c.runSafety(ce, func(ctx context.Context, ic *InteropClient) (string, error) {
		n, err := ic.ReportContact(ctx, ce.Portal)
		return fmt.Sprintf("Reported %d message(s) of this contact as spam.", n), err
	}))
}
