// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// The JWT benchmarks show why the App JWT is cached: a cached get is a lock and a clock read, a fresh one an RSA
// signature. They live inside the package to reach jwtSource; internal/testing/fakegithub imports this package, so
// the emulator is not available here (bench_test.go at the root measures the whole mint against it).
//
//	go test -run '^$' -bench JWT -benchmem ./internal/github

var (
	benchKeyOnce sync.Once
	benchRSAKey  *rsa.PrivateKey
)

// benchKey is a 2048-bit key, the size GitHub generates for Apps, made once for all benchmarks.
func benchKey(b *testing.B) *rsa.PrivateKey {
	b.Helper()
	benchKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		benchRSAKey = k
	})
	return benchRSAKey
}

// benchSigner signs with benchKey in the process.
func benchSigner(b *testing.B) signer.Signer {
	b.Helper()
	s, err := signer.NewKey(benchKey(b))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkJWTCached is the hot path of every App-authenticated call: the cached JWT is still good.
func BenchmarkJWTCached(b *testing.B) {
	s := newJWTSource(benchSigner(b), 1001, "", time.Now, func() {})
	if _, err := s.get(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.get(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := s.signatures.Load(); n != 1 {
		b.Fatalf("%d signatures, want the first one only", n)
	}
}

// BenchmarkJWTCachedParallel is the same from 16 goroutines on two cores: the cost of the source's mutex when
// many mints run at once.
func BenchmarkJWTCachedParallel(b *testing.B) {
	s := newJWTSource(benchSigner(b), 1001, "", time.Now, func() {})
	if _, err := s.get(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.get(b.Context()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkJWTSign is what every App-authenticated call would cost without the cache: the clock moves past the
// renewal point before each get, so each one signs.
func BenchmarkJWTSign(b *testing.B) {
	now := time.Now()
	s := newJWTSource(benchSigner(b), 1001, "", func() time.Time { return now }, func() {})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		now = now.Add(jwtLifetime)
		if _, err := s.get(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := s.signatures.Load(); n != int64(b.N) {
		b.Fatalf("%d signatures for %d gets, want one each", n, b.N)
	}
}
