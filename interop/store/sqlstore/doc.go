// Package sqlstore keeps the Signal state of local accounts (store.Store) in SQLite or
// PostgreSQL through dbutil, inside the bridge's database or its own.
//
// Every table is prefixed interop_ and every row is keyed by the account JID, so one
// database holds many accounts; deleting an account cascades to all of its rows. The
// schema has its own version table (VersionTable).
//
// Decoded sessions and identity keys are cached per account, because libsignal loads
// and stores the session and checks and saves the identity on every encrypt and
// decrypt. The cache follows transactions (see txnCache): a rolled back Store.DoTxn
// leaves neither rows nor cached records behind.
//
// Conventions shared with libsignal: LoadSession returns a fresh record when there is
// no session, LoadSenderKey an empty record, LoadPreKey and LoadSignedPreKey nil.
//
// This package must not import the Signal layer or anything above it, nor SQL
// drivers (the program that opens the database registers them).
package sqlstore
