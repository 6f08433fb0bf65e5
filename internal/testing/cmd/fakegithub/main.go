// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Command fakegithub runs the GitHub emulator (internal/testing/fakegithub) as a program, for the demo,
// integration tests and benchmarks. It listens on a loopback address only.
//
//	fakegithub [-listen 127.0.0.1:0] [-fixture fixture.json] [-generate-key app.pem]
//	           [-addr-file addr.txt] [-tls -ca-file ca.pem] [-long-tokens] [-token-lifetime 1h]
//
// Without -fixture it serves a small built-in fixture (fixture.example.json in this directory):
// App 1001 (client ID Iv23liFAKEAPP0001, slug vault-demo), installed on the organization acme
// (installation 2001: api, web, infra) and on the user octocat (installation 2002: dotfiles).
// fixture.pool.example.json adds an App pool: Apps 1002 and 1003, each with its own installation on
// acme (2102 and 2103); -generate-key registers the key with all three.
//
// -generate-key writes a new 2048-bit RSA private key (PEM, mode 0600) to the path, or reuses
// the key already there, and registers its public key with every App of the fixture.
//
// It prints "fakegithub listening on URL" once it accepts connections, writes the same URL to
// -addr-file if given, logs one line per request to stderr (never credentials), and stops
// cleanly on SIGINT or SIGTERM. Faults and stats are at URL/_fake/ (see internal/testing/fakegithub).
package main

import (
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "fakegithub: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	listen        string
	fixture       string
	generateKey   string
	addrFile      string
	tls           bool
	caFile        string
	longTokens    bool
	tokenLifetime time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fakegithub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback `address` to listen on (port 0 picks a free port)")
	fs.StringVar(&o.fixture, "fixture", "", "JSON fixture `file` (apps, installations); default: the built-in demo fixture")
	fs.StringVar(&o.generateKey, "generate-key", "", "write a new App private key to `file` (or reuse the one there) and register it with every App")
	fs.StringVar(&o.addrFile, "addr-file", "", "write the listen URL to `file` once listening")
	fs.BoolVar(&o.tls, "tls", false, "serve HTTPS with a generated, self-signed CA (needs -ca-file)")
	fs.StringVar(&o.caFile, "ca-file", "", "with -tls: write the CA certificate (PEM) to `file`")
	fs.BoolVar(&o.longTokens, "long-tokens", false, "issue the long (~520 characters) installation token form (a fault: PUT /_fake/faults replaces it)")
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", time.Hour, "lifetime of issued installation tokens")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.tls != (o.caFile != "") {
		return o, errors.New("-tls and -ca-file go together: clients need the CA to trust the emulator")
	}
	return o, nil
}

// run is main without the process: it serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if err := checkLoopback(o.listen); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	fixture := fakegithub.DemoFixture()
	if o.fixture != "" {
		if fixture, err = fakegithub.LoadFixture(o.fixture); err != nil {
			return err
		}
	}
	srv, err := fakegithub.New(fixture)
	if err != nil {
		return err
	}
	srv.SetTokenLifetime(o.tokenLifetime)
	if o.longTokens {
		srv.SetFaults(fakegithub.Faults{LongTokens: true})
	}
	if o.generateKey != "" {
		if err := registerKey(srv, fixture, o.generateKey, logger); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if o.tls {
		ln, err = listenTLS(ln, o.caFile)
		if err != nil {
			return err
		}
		scheme = "https"
	}
	url := scheme + "://" + ln.Addr().String()

	hs := &http.Server{
		Handler:           logRequests(logger, srv),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	fmt.Fprintf(stdout, "fakegithub listening on %s\n", url)
	if o.addrFile != "" {
		if err := writeFileAtomic(o.addrFile, []byte(url+"\n"), 0o644); err != nil {
			hs.Close()
			return fmt.Errorf("write -addr-file: %w", err)
		}
		defer os.Remove(o.addrFile) // a stale address would send scripts to a dead port
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		// Calls held by injected latency may outlive the grace period; cut them off.
		hs.Close()
	}
	return nil
}

// checkLoopback refuses addresses other machines could reach: the emulator hands out tokens
// to anyone and has an unauthenticated admin API.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-listen %q: only loopback addresses (127.0.0.1, ::1, localhost) are allowed", addr)
}

// registerKey loads the App key at path, or generates one there, and registers it with every App.
func registerKey(srv *fakegithub.Server, f fakegithub.Fixture, path string, logger *slog.Logger) error {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := fakegithub.ParsePrivateKey(data)
		if err != nil {
			return fmt.Errorf("-generate-key %s exists but is no RSA private key: %w", path, err)
		}
		logger.Info("reusing App private key", "path", path)
		return registerWithApps(srv, f, &key.PublicKey)
	case errors.Is(err, fs.ErrNotExist):
		key, err := fakegithub.GenerateKey(2048)
		if err != nil {
			return err
		}
		if err := writeNewFile(path, fakegithub.EncodePKCS1(key), 0o600); err != nil {
			return fmt.Errorf("-generate-key: %w", err)
		}
		logger.Info("wrote new App private key", "path", path)
		return registerWithApps(srv, f, &key.PublicKey)
	default:
		return fmt.Errorf("-generate-key: %w", err)
	}
}

func registerWithApps(srv *fakegithub.Server, f fakegithub.Fixture, pub *rsa.PublicKey) error {
	for _, a := range f.Apps {
		if err := srv.AddPublicKey(a.ID, pub); err != nil {
			return err
		}
	}
	return nil
}

// writeNewFile creates path with perm, refusing to replace a file that appeared meanwhile.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// writeFileAtomic writes through a temporary file and a rename, so that a script polling for
// the file never reads half of it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fakegithub-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// statusRecorder remembers the status a handler answered with, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (the emulator hijacks it to simulate outages).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs method, path, status and duration. Never headers or bodies: they carry
// JWTs and installation tokens.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			status := "dropped" // no answer: an outage, or the client went away
			if rec.status != 0 {
				status = fmt.Sprint(rec.status)
			}
			logger.Info("request", "method", r.Method, "path", r.URL.Path, "status", status,
				"duration", time.Since(start).Round(time.Microsecond))
		}()
		next.ServeHTTP(rec, r)
	})
}
