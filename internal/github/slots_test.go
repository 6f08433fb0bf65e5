// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSlotsTakeTurns: with one slot, waiting revocations and App calls are served in arrival order within their
// class, the classes taking turns, so a queue of revocations does not starve App calls nor the other way round.
func TestSlotsTakeTurns(t *testing.T) {
	var s slots
	s.setCapacity(1)
	if _, err := s.acquire(t.Context(), classApp); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for _, w := range []struct {
		name string
		c    class
	}{{"r1", classRevoke}, {"r2", classRevoke}, {"r3", classRevoke}, {"r4", classRevoke}, {"a1", classApp}, {"a2", classApp}} {
		s.mu.Lock()
		queued := len(s.waiting[w.c])
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.acquire(t.Context(), w.c); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, w.name)
			mu.Unlock()
			s.release()
		}()
		// Arrival order is what the test is about: each waiter joins the line before the next starts.
		for {
			s.mu.Lock()
			joined := len(s.waiting[w.c]) > queued
			s.mu.Unlock()
			if joined {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	s.release()
	wg.Wait()
	if want := []string{"r1", "a1", "r2", "a2", "r3", "r4"}; !slices.Equal(order, want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	if inUse, _ := s.usage(); inUse != 0 {
		t.Fatalf("%d slots still in use", inUse)
	}
}

// TestSlotsDeadline: a waiter whose context ends leaves the line, and a slot handed to it as it gave up passes on.
func TestSlotsDeadline(t *testing.T) {
	var s slots
	s.setCapacity(1)
	if _, err := s.acquire(t.Context(), classApp); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.acquire(ctx, classApp); err == nil {
		t.Fatal("acquired a slot that was taken")
	}
	s.mu.Lock()
	left := len(s.waiting[classApp])
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiters left in line after their deadline", left)
	}
	s.release()
	if _, err := s.acquire(t.Context(), classRevoke); err != nil {
		t.Fatal(err)
	}
	s.release()
}
