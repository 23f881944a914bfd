// Package docker holds what the container image (../Dockerfile) runs: build.sh, which
// builds the bridge and metasim as static binaries in the build stage, and
// docker-run.sh, the entrypoint that writes the config and the registration on the
// first starts and then runs the bridge. Its tests run both scripts on this machine,
// since the image itself can only be built where a Docker daemon is available.
//
// It has no Go code of its own and must not be imported.
package docker
