package control

import "net/http"

// userRoutes registers the endpoints backed by the simulated users.
func (s *Server) userRoutes(func(string, func(http.ResponseWriter, *http.Request) error)) {}

// extraStatus maps errors of the simulated users and media hosts.
func extraStatus(error) int { return 0 }

// createUser, addDevice and removeDevice go through the simulated users.
func (s *Server) createUser(http.ResponseWriter, *http.Request) error   { return errNotFound("todo") }
func (s *Server) addDevice(http.ResponseWriter, *http.Request) error    { return errNotFound("todo") }
func (s *Server) removeDevice(http.ResponseWriter, *http.Request) error { return errNotFound("todo") }
